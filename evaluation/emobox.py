"""EmoBox's published folds, shipped with the package: which file is tested in which fold, with which label.

EmoBox (Ma et al., 2024, arXiv:2406.07162; github.com/emo-box/EmoBox) publishes
`data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl`. `data/emobox_folds.csv` lists them as
`corpus, file, test_fold, emobox_label`: one row per file EmoBox uses, `test_fold` the fold in which the
file is a test file (empty: a training file of a single-fold corpus), `emobox_label` EmoBox's lower-cased
class name. The file names are EmoBox's, which differ from the Kaggle downloads in three places (see
`emobox_name`).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pandas as pd

FOLDS_PATH = Path(__file__).resolve().parent / "data" / "emobox_folds.csv"

# EmoBox's class names -> the project's canonical emotions (loaders.emotions.EMOTIONS).
LABELS = {
    "angry": "anger",
    "sad": "sadness",
    "happy": "happy",
    "neutral": "neutral",
    "fear": "fear",
    "disgust": "disgust",
    "surprise": "surprise",
    "calm": "calm",
    "boredom": "bored",
}
# EmoBox counts EMO-DB's Angst (the project's `anxiety`) as fear.
MERGES = {"emodb": {"anxiety": "fear"}}

# The published benchmark figures (unweighted accuracy = UAR, weighted accuracy), %, of EmoBox's best
# frozen self-supervised model on each corpus's own folds, as quoted in shared/corpora/README.md.
PUBLISHED = {
    "cremad": (76.8, 76.5),
    "emodb": (92.6, 92.7),
    "ravdess": (75.3, 75.9),
    "savee": (75.8, 78.6),
    "shemo": (80.2, 89.6),
    "tess": (None, None),  # "~100": EmoBox's two-speaker TESS folds are near ceiling
}
PUBLISHED_NOTES = {"tess": "≈1.00"}
SOURCE = (
    "EmoBox (Ma et al., Interspeech 2024, arXiv:2406.07162), best frozen self-supervised features, "
    "unweighted accuracy (UA = UAR) on EmoBox's folds"
)


def read_folds(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The fold table: corpus, file, test_fold (int, 0 = train-only file of a single-fold corpus),
    emobox_label (EmoBox's name) and emotion (its canonical name)."""
    table = pd.read_csv(path or FOLDS_PATH, dtype=str, keep_default_na=False)
    missing = {"corpus", "file", "test_fold", "emobox_label"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{path or FOLDS_PATH}: columns {sorted(missing)} missing; expected "
            "corpus, file, test_fold, emobox_label"
        )
    unknown = sorted(set(table["emobox_label"]) - set(LABELS))
    if unknown:
        raise ValueError(f"{path or FOLDS_PATH}: unknown EmoBox label(s) {unknown}; known: {sorted(LABELS)}")
    table["test_fold"] = [int(f) if f else 0 for f in table["test_fold"]]
    table["emotion"] = table["emobox_label"].map(LABELS)
    return table


def emobox_name(corpus: str, file: str, speaker: str, text: str) -> str:
    """The name EmoBox gives a file of the project's metadata (`file`, `speaker` code without the corpus
    prefix, `text`): the base name, except SAVEE `AudioData/DC/a01.wav` -> `DC_a01.wav` (EmoBox uses the
    flat copy), CREMA-D's `1040_ITH_SAD_X.wav` -> `..._XX.wav` and TESS's `OA_bite_neutral.wav` ->
    `OAF_bite_neutral.wav` (EmoBox corrected both names)."""
    name = PurePosixPath(file).name
    if corpus == "savee":
        return f"{speaker}_{text}.wav"
    if corpus == "cremad" and name.endswith("_X.wav"):
        return name[: -len("_X.wav")] + "_XX.wav"
    if corpus == "tess" and name.startswith("OA_"):
        return "OAF_" + name[len("OA_") :]
    return name
