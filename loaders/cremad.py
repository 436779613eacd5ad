"""CREMA-D: 7,442 clips of 91 actors (43 female) saying 12 sentences in six emotions at up to four levels.

Layout: `AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`, e.g. `AudioWAV/1001_DFA_ANG_XX.wav`.
Quirks kept as the corpus has them:
- `1040_ITH_SAD_X.wav` still carries the old one-letter level `X` (same as `XX`, unspecified).
- `1076_MTI_SAD_XX.wav` holds no signal (documented by the corpus). It is a corpus file, so it is kept and
  counted; drop it yourself if your model cannot take silence.
- A GitHub clone without git-lfs holds text pointers instead of audio: discovery stops with a clear error.
"""

from __future__ import annotations

import re

from .builder import EmotionCorpusBuilder
from .discovery import CorpusFile, FileInfo, UnknownCodeError, file_stem, lookup_code

ACTORS = range(1001, 1092)
FEMALE_ACTORS = frozenset(
    "1002 1003 1004 1006 1007 1008 1009 1010 1012 1013 1018 1020 1021 1024 1025 1028 1029 1030 1037 1043 "
    "1046 1047 1049 1052 1053 1054 1055 1056 1058 1060 1061 1063 1072 1073 1074 1075 1076 1078 1079 1082 "
    "1084 1089 1091".split()
)
SENTENCES = frozenset("IEO TIE IOM IWW TAI MTI IWL ITH DFA ITS TSI WSI".split())
EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sadness",
}
# "X" is the old spelling of "XX" (unspecified), left in one Kaggle file.
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "", "X": ""}

NAME_PATTERN = re.compile(
    r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{1,2})"
)


class CremaD(EmotionCorpusBuilder):
    """CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset), audio only."""

    NAME = "cremad"
    LANGUAGE = "en"
    LICENSE = "odbl-1.0"
    REDISTRIBUTABLE = True
    KAGGLE_SLUG = "ejlok1/cremad"
    EXPECTED_FILES = 7442
    HOMEPAGE = "https://github.com/CheyneyComputerScience/CREMA-D"
    DESCRIPTION = "CREMA-D: 91 actors, 12 sentences, 6 emotions (anger disgust fear happy neutral sadness)."
    CITATION = """@article{cao2014cremad,
  title={{CREMA-D}: Crowd-sourced Emotional Multimodal Actors Dataset},
  author={Cao, Houwei and Cooper, David G. and Keutmann, Michael K. and Gur, Ruben C.
          and Nenkova, Ani and Verma, Ragini},
  journal={IEEE Transactions on Affective Computing},
  volume={5}, number={4}, pages={377--390}, year={2014}
}"""

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        match = NAME_PATTERN.fullmatch(file_stem(relpath))
        if match is None:
            return None
        actor = match["actor"]
        if int(actor) not in ACTORS:
            raise UnknownCodeError(relpath, f"unknown actor {actor} (CREMA-D actors are 1001-1091)")
        if match["sentence"] not in SENTENCES:
            raise UnknownCodeError(
                relpath, f"unknown sentence {match['sentence']!r} (valid: {sorted(SENTENCES)})"
            )
        emotion = lookup_code(EMOTIONS, match["emotion"], relpath, "emotion")
        intensity = lookup_code(LEVELS, match["level"], relpath, "level")
        level = "XX" if match["level"] == "X" else match["level"]
        return FileInfo(
            emotion=emotion,
            speaker=actor,
            gender="female" if actor in FEMALE_ACTORS else "male",
            utterance=f"{actor}_{match['sentence']}_{match['emotion']}_{level}",
            text=match["sentence"],
            intensity=intensity,
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # The original called the unspecified level ("XX") "unknown", where other corpora have "NA".
        return {**super().legacy_columns(corpus_file), "intensity": corpus_file.info.intensity or "unknown"}
