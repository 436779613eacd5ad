"""The one schema every corpus builder emits (see ARCHITECTURE.md for the meaning of each column)."""

from __future__ import annotations

from collections.abc import Sequence

import datasets

from .emotions import EMOTIONS

# The one sampling rate of the project: prepared corpora, synthetic rendering, every model's input.
SAMPLING_RATE = 16_000

# Metadata columns in schema order; `audio` and `label` come first.
METADATA_COLUMNS: tuple[str, ...] = (
    "emotion",
    "corpus",
    "speaker",
    "gender",
    "language",
    "text",
    "intensity",
    "file",
    "duration",
)


def corpus_features(
    sampling_rate: int | None = SAMPLING_RATE, label_names: Sequence[str] = EMOTIONS
) -> datasets.Features:
    """Features of a corpus dataset: audio at `sampling_rate` (None: native), label over `label_names`."""
    return datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=sampling_rate),
            "label": datasets.ClassLabel(names=list(label_names)),
            "emotion": datasets.Value("string"),
            "corpus": datasets.Value("string"),
            "speaker": datasets.Value("string"),
            "gender": datasets.Value("string"),
            "language": datasets.Value("string"),
            "text": datasets.Value("string"),
            "intensity": datasets.Value("string"),
            "file": datasets.Value("string"),
            "duration": datasets.Value("float32"),
        }
    )
