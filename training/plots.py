"""Figures of a training run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]],
    label_names: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "Confusion matrix",
) -> str:
    """Save a confusion matrix (rows = true class, normalised per row, counts written in the cells) as PNG.

    Row-normalised colours show each class's recall whatever the class sizes; the counts stay readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 1.2 + 0.7 * len(label_names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = draw_confusion_matrix(ax, matrix, label_names, title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def draw_confusion_matrix(ax, matrix, label_names: Sequence[str], *, title: str, small: bool = False):
    """Draw a confusion matrix on `ax`: colours = share of the true class (each class's recall whatever the
    class sizes), counts written in the cells. Returns the image (for a colour bar)."""
    counts = np.asarray(matrix, dtype=np.int64)
    support = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = {"fontsize": "x-small"} if small else {}
    ax.set_xticks(range(len(label_names)), labels=label_names, rotation=45, ha="right", **ticks)
    ax.set_yticks(range(len(label_names)), labels=label_names, **ticks)
    ax.set_title(title, fontsize="small" if small else None)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize="xx-small" if small else 9,
            )
    return image
