"""TESS (Toronto Emotional Speech Set): 2,800 words of 2 actresses (OAF 64 y, YAF 26 y) in 7 emotions.

Layout: `TESS Toronto emotional speech set data/<14 folders>/<speaker>_<word>_<emotion>.wav`; the Kaggle
download holds the same files twice, also under `tess toronto emotional speech set data/TESS Toronto emotional
speech set data/` (merged into one tree on case-insensitive file systems; discovery keeps one copy). The
folder names are inconsistent (`OAF_Fear`, `YAF_pleasant_surprised`, ...), so the emotion is taken from the
file name. One file is misnamed `OA_bite_neutral.wav` (speaker OAF). Files are 24,414 Hz except
`OAF_food_fear.wav` at 96 kHz.
"""

from __future__ import annotations

import re

from .builder import EmotionCorpusBuilder
from .discovery import CorpusFile, FileInfo, file_stem, lookup_code

SPEAKERS = {"OAF": "OAF", "YAF": "YAF", "OA": "OAF"}  # "OA" is the misnamed OA_bite_neutral.wav
EMOTIONS = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprise",  # pleasant surprise
    "sad": "sadness",
}
# The original numbered the two speakers (its `speaker_n`).
SPEAKER_NUMBERS = {"OAF": 1, "YAF": 2}

NAME_PATTERN = re.compile(r"(?P<speaker>[A-Z]{2,3})_(?P<word>[A-Za-z]+)_(?P<emotion>[A-Za-z]+)")


class Tess(EmotionCorpusBuilder):
    """TESS, the Toronto Emotional Speech Set."""

    NAME = "tess"
    LANGUAGE = "en"
    LICENSE = "cc-by-nc-nd-4.0"
    REDISTRIBUTABLE = True
    KAGGLE_SLUG = "ejlok1/toronto-emotional-speech-set-tess"
    EXPECTED_FILES = 2800
    HOMEPAGE = "https://doi.org/10.5683/SP2/E8H2MF"
    DESCRIPTION = "TESS: 2 female speakers, 200 target words, 7 emotions (pleasant surprise as surprise)."
    CITATION = """@misc{pichorafuller2020tess,
  title={{Toronto} emotional speech set ({TESS})},
  author={Pichora-Fuller, M. Kathleen and Dupuis, Kate},
  publisher={Borealis}, doi={10.5683/SP2/E8H2MF}, year={2020}
}"""

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        match = NAME_PATTERN.fullmatch(file_stem(relpath))
        if match is None:
            return None
        speaker = lookup_code(SPEAKERS, match["speaker"], relpath, "speaker")
        emotion = lookup_code(EMOTIONS, match["emotion"].lower(), relpath, "emotion")
        word = match["word"].lower()
        return FileInfo(
            emotion=emotion,
            speaker=speaker,
            gender="female",
            utterance=f"{speaker}_{word}_{match['emotion'].lower()}",
            text=word,
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # `version`: the spoken word.
        info = corpus_file.info
        return {
            **super().legacy_columns(corpus_file),
            "speaker_n": SPEAKER_NUMBERS[info.speaker],
            "version": info.text,
        }
