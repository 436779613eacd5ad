"""RAVDESS speech (audio only): 1,440 clips of 24 actors (odd male, even female), 2 statements, 8 emotions.

Layout: `Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`; the Kaggle download holds the same files twice, also under
`audio_speech_actors_01-24/Actor_XX/` (discovery keeps one copy). Fields: modality (03 audio-only), vocal
channel (01 speech; 02 song is another corpus), emotion, intensity (01 normal, 02 strong; neutral has no
strong), statement, repetition, actor. Files carry an extra `FLLR` chunk before `data`; soundfile reads it.
"""

from __future__ import annotations

import re

from .builder import EmotionCorpusBuilder
from .discovery import CorpusFile, FileInfo, UnknownCodeError, file_stem, lookup_code

EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sadness",
    "05": "anger",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = frozenset({"01", "02"})
# The original's words for the vocal channel, in its `version` column.
CHANNEL_NAMES = {"01": "speech", "02": "song"}

NAME_PATTERN = re.compile(
    r"(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)"
    r"-(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)"
)


class Ravdess(EmotionCorpusBuilder):
    """RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song), speech audio only."""

    NAME = "ravdess"
    LANGUAGE = "en"
    LICENSE = "cc-by-nc-sa-4.0"
    REDISTRIBUTABLE = True
    KAGGLE_SLUG = "uwrfkaggler/ravdess-emotional-speech-audio"
    EXPECTED_FILES = 1440
    HOMEPAGE = "https://zenodo.org/records/1188976"
    DESCRIPTION = "RAVDESS speech: 24 actors, 2 statements, 8 emotions at 2 intensities."
    CITATION = """@article{livingstone2018ravdess,
  title={The {Ryerson} Audio-Visual Database of Emotional Speech and Song ({RAVDESS})},
  author={Livingstone, Steven R. and Russo, Frank A.},
  journal={PLoS ONE}, volume={13}, number={5}, pages={e0196391}, year={2018}
}"""

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        match = NAME_PATTERN.fullmatch(file_stem(relpath))
        if match is None:
            return None
        if match["modality"] != "03":
            raise UnknownCodeError(relpath, f"modality {match['modality']} is not 03 (audio-only)")
        if match["channel"] != "01":
            raise UnknownCodeError(
                relpath, f"vocal channel {match['channel']} is not 01 (speech; 02 is song)"
            )
        emotion = lookup_code(EMOTIONS, match["emotion"], relpath, "emotion")
        intensity = lookup_code(INTENSITIES, match["intensity"], relpath, "intensity")
        text = lookup_code(STATEMENTS, match["statement"], relpath, "statement")
        if match["repetition"] not in REPETITIONS:
            raise UnknownCodeError(relpath, f"unknown repetition {match['repetition']} (valid: 01, 02)")
        actor = int(match["actor"])
        if not 1 <= actor <= 24:
            raise UnknownCodeError(relpath, f"unknown actor {match['actor']} (RAVDESS actors are 01-24)")
        return FileInfo(
            emotion=emotion,
            speaker=match["actor"],
            gender="male" if actor % 2 else "female",
            utterance=file_stem(relpath),
            text=text,
            intensity=intensity,
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # `version`: vocal channel and repetition, `speech_01`.
        fields = file_stem(corpus_file.file).split("-")
        version = f"{CHANNEL_NAMES[fields[1]]}_{fields[5]}"
        return {**super().legacy_columns(corpus_file), "version": version}
