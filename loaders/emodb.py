"""EMO-DB (Berlin Database of Emotional Speech): 535 German utterances of 10 actors, 10 texts, 7 emotions.

Layout: `wav/<speaker><text><emotion><version>.wav`, e.g. `wav/03a01Wa.wav`: speaker 03, text a01, emotion
W (Wut = anger), version a. "Angst" (A) is kept as `anxiety`, never merged into fear by default.
"""

from __future__ import annotations

import re

from .builder import EmotionCorpusBuilder
from .discovery import CorpusFile, FileInfo, UnknownCodeError, file_stem, lookup_code

SPEAKER_GENDER = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}  # fmt: skip
TEXTS = frozenset("a01 a02 a04 a05 a07 b01 b02 b03 b09 b10".split())
EMOTIONS = {
    "W": "anger",  # Wut
    "L": "bored",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "anxiety",  # Angst
    "F": "happy",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
VERSIONS = frozenset("abcdef")

NAME_PATTERN = re.compile(r"(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Z])(?P<version>[a-z])")


class EmoDB(EmotionCorpusBuilder):
    """EMO-DB, the Berlin Database of Emotional Speech."""

    NAME = "emodb"
    LANGUAGE = "de"
    LICENSE = "cc-by-4.0"
    REDISTRIBUTABLE = True
    KAGGLE_SLUG = "piyushagni5/berlin-database-of-emotional-speech-emodb"
    EXPECTED_FILES = 535
    HOMEPAGE = "http://emodb.bilderbar.info/"
    DESCRIPTION = (
        "EMO-DB: 10 German actors, 10 texts, 7 emotions (anger anxiety bored disgust happy neutral sadness)."
    )
    CITATION = """@inproceedings{burkhardt2005emodb,
  title={A Database of {German} Emotional Speech},
  author={Burkhardt, Felix and Paeschke, Astrid and Rolfes, Miriam and Sendlmeier, Walter F.
          and Weiss, Benjamin},
  booktitle={Proc. Interspeech}, pages={1517--1520}, year={2005}
}"""

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        match = NAME_PATTERN.fullmatch(file_stem(relpath))
        if match is None:
            return None
        gender = lookup_code(SPEAKER_GENDER, match["speaker"], relpath, "speaker")
        if match["text"] not in TEXTS:
            raise UnknownCodeError(relpath, f"unknown text {match['text']!r} (valid: {sorted(TEXTS)})")
        emotion = lookup_code(EMOTIONS, match["emotion"], relpath, "emotion letter")
        if match["version"] not in VERSIONS:
            raise UnknownCodeError(relpath, f"unknown version {match['version']!r} (valid: a-f)")
        return FileInfo(
            emotion=emotion,
            speaker=match["speaker"],
            gender=gender,
            utterance=file_stem(relpath),
            text=match["text"],
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # `version`: the take letter at the end of the name (`03a01Wa` -> "a").
        return {**super().legacy_columns(corpus_file), "version": file_stem(corpus_file.file)[6]}
