"""SAVEE (Surrey Audio-Visual Expressed Emotion): 480 British English utterances of 4 male speakers.

Layout: `AudioData/<speaker>/<code><NN>.wav`, speaker DC JE JK KL only in the folder name. Some copies nest
a duplicate `AudioData/AudioData/...` tree; another public copy is flat: `ALL/DC_a01.wav`. Both forms are
read and each (speaker, file) is counted once. Emotion codes: a d f h n and the two-letter sa (sadness)
su (surprise); the letter run before the number is looked up whole, so `sa01` is never read as `a`.
Neutral has 30 sentences (n01-n30), every other emotion 15.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from .builder import EmotionCorpusBuilder
from .discovery import CorpusFile, FileInfo, UnknownCodeError, lookup_code

SPEAKERS = frozenset({"DC", "JE", "JK", "KL"})
EMOTIONS = {
    "sa": "sadness",
    "su": "surprise",
    "a": "anger",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
}
SENTENCES_PER_EMOTION = {"n": 30}  # others: 15
# The original numbered the speakers in this order (its `speaker_n`).
SPEAKER_NUMBERS = {"DC": 1, "JE": 2, "JK": 3, "KL": 4}

FOLDER_NAME = re.compile(r"(?P<code>[a-z]{1,2})(?P<number>\d\d)")  # AudioData/DC/sa01.wav
FLAT_NAME = re.compile(r"(?P<speaker>[A-Z]{2})_(?P<code>[a-z]{1,2})(?P<number>\d\d)")  # ALL/DC_sa01.wav
SPEAKER_FOLDER = re.compile(r"[A-Z]{2}")


class Savee(EmotionCorpusBuilder):
    """SAVEE, audio only. Not redistributable: never push it to a public Hub repository."""

    NAME = "savee"
    LANGUAGE = "en"
    LICENSE = "other: free for research use, no redistribution"
    REDISTRIBUTABLE = False
    KAGGLE_SLUG = "barelydedicated/savee-database"
    EXPECTED_FILES = 480
    HOMEPAGE = "http://kahlan.eps.surrey.ac.uk/savee/"
    DESCRIPTION = "SAVEE: 4 male British English speakers, 7 emotions (the six basic ones and neutral)."
    CITATION = """@inproceedings{haq2009savee,
  title={Speaker-Dependent Audio-Visual Emotion Recognition},
  author={Haq, Sanaul and Jackson, Philip J. B.},
  booktitle={Proc. Int. Conf. on Auditory-Visual Speech Processing (AVSP)}, pages={53--58}, year={2009}
}"""

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        path = PurePosixPath(relpath)
        match = FLAT_NAME.fullmatch(path.stem)
        if match is not None:
            speaker = match["speaker"]
        else:
            match = FOLDER_NAME.fullmatch(path.stem)
            if match is None or not SPEAKER_FOLDER.fullmatch(path.parent.name):
                return None
            speaker = path.parent.name
        if speaker not in SPEAKERS:
            raise UnknownCodeError(relpath, f"unknown speaker {speaker!r} (valid: {sorted(SPEAKERS)})")
        code, number = match["code"], int(match["number"])
        emotion = lookup_code(EMOTIONS, code, relpath, "emotion code")
        if not 1 <= number <= SENTENCES_PER_EMOTION.get(code, 15):
            raise UnknownCodeError(relpath, f"sentence number {number} out of range for code {code!r}")
        sentence = f"{code}{match['number']}"
        return FileInfo(
            emotion=emotion, speaker=speaker, gender="male", utterance=f"{speaker}_{sentence}", text=sentence
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # `version`: the sentence number, as the name writes it (`sa01` -> "01").
        info = corpus_file.info
        return {
            **super().legacy_columns(corpus_file),
            "speaker_n": SPEAKER_NUMBERS[info.speaker],
            "version": info.text[-2:],
        }
