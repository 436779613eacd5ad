"""ShEMO (Sharif Emotional Speech Database), Kaggle release: 3,000 Persian utterances of 87 speakers.

Layout: `female/<name>.wav`, `male/<name>.wav`; name `GNNENN`: gender F/M, speaker number within the
gender, emotion letter, utterance number, e.g. `F01A01.wav`. The speaker is the first three characters (F01
and M01 are different people). Careful: F at position 1 means female, at position 4 fear. About 5% of the
files (male speakers) are 22.05 kHz, the rest 44.1 kHz. The GitHub release has other labels and names: do
not mix the two.
"""

from __future__ import annotations

import re

from .builder import EmotionCorpusBuilder
from .discovery import CorpusFile, FileInfo, file_stem, lookup_code

GENDERS = {"F": "female", "M": "male"}
EMOTIONS = {"A": "anger", "H": "happy", "N": "neutral", "S": "sadness", "W": "surprise", "F": "fear"}

NAME_PATTERN = re.compile(r"(?P<gender>[A-Z])(?P<number>\d\d)(?P<emotion>[A-Z])(?P<utterance>\d\d)")


class Shemo(EmotionCorpusBuilder):
    """ShEMO, Kaggle release. Academic use only: never push it to a public Hub repository."""

    NAME = "shemo"
    LANGUAGE = "fa"
    LICENSE = "other: academic use only"
    REDISTRIBUTABLE = False
    KAGGLE_SLUG = "mansourehk/shemo-persian-speech-emotion-detection-database"
    EXPECTED_FILES = 3000
    HOMEPAGE = "https://github.com/mansourehk/ShEMO"
    DESCRIPTION = "ShEMO: 87 Persian speakers (31 female, 56 male), 6 emotions, radio plays."
    CITATION = """@article{nezami2019shemo,
  title={{ShEMO}: a large-scale validated database for {Persian} speech emotion detection},
  author={Mohamad Nezami, Omid and Jamshid Lou, Paria and Karami, Mansoureh},
  journal={Language Resources and Evaluation}, volume={53}, number={1}, pages={1--16}, year={2019}
}"""

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        stem = file_stem(relpath)
        match = NAME_PATTERN.fullmatch(stem)
        if match is None:
            return None
        gender = lookup_code(GENDERS, match["gender"], relpath, "gender letter (position 1)")
        emotion = lookup_code(EMOTIONS, match["emotion"], relpath, "emotion letter (position 4)")
        return FileInfo(emotion=emotion, speaker=stem[:3], gender=gender, utterance=stem)

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # The original kept the speaker number as the string it cut from the name (`F01` -> "01");
        # `version` is the utterance number (`F01A07` -> 7).
        stem = file_stem(corpus_file.file)
        return {**super().legacy_columns(corpus_file), "speaker_n": stem[1:3], "version": int(stem[4:6])}
