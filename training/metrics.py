"""Emotion classification metrics as an `evaluate.Metric`: accuracy, UAR, macro-F1, per-class recall,
confusion matrix, and the same per corpus.

UAR (unweighted average recall: the mean of the per-class recalls) is the field's headline figure because
the corpora are unbalanced (ShEMO: 1059 anger vs 38 fear files): a model that always answers the majority
class gets a high accuracy but a UAR of 1 / number of classes.

Conventions, for classes that leave a ratio undefined:

* a class absent from the references (no example of it in this set) is left out of UAR and macro-F1
  (its recall is undefined, not 0) and reported with recall ``None``;
* a class that is never predicted has precision 0 (by convention), so its F1 is 0 and it counts in
  macro-F1 and UAR with recall 0.

The figures come from scikit-learn (`recall_score`, `f1_score`, `confusion_matrix`); the metric is
instantiated directly, nothing is fetched from the Hub::

    metric = EmotionClassificationMetric()
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 2], label_names=["anger", "happy", "sadness"])
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np
from sklearn import metrics as sklearn_metrics

_DESCRIPTION = """Accuracy, unweighted average recall (UAR), macro-F1, per-class recall and the confusion
matrix of a single-label classifier; optionally the same per group (e.g. per corpus)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    label_names (`list[str]`, optional): class names, index = class id. Sets the number of classes (so a
        class never seen in this set still gets a row in the confusion matrix) and names the per-class keys.
    num_classes (`int`, optional): number of classes when `label_names` is not given (default: one more than
        the largest id seen).
    groups (`list[str]`, optional): a group name per example (e.g. its corpus); adds the same metrics per
        group under `per_group`.
Returns:
    accuracy, uar, macro_f1 (floats), recall (`{class: float | None}`), f1 (`{class: float}`), support
    (`{class: int}`), confusion_matrix (rows = true class, columns = predicted class, `list[list[int]]`),
    label_names, and `per_group` (`{group: {...the same...}}`) when `groups` is given.
"""


def check_class_ids(predictions: np.ndarray, references: np.ndarray, num_classes: int) -> None:
    """scikit-learn drops ids outside `labels` without a word; an id out of range is a caller's bug."""
    for name, ids in (("predictions", predictions), ("references", references)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(
                f"{name}: class ids must lie in [0, {num_classes}), got {sorted(set(ids.tolist()))}"
            )


def classification_scores(
    predictions: Sequence[int], references: Sequence[int], label_names: Sequence[str]
) -> dict:
    """accuracy, UAR, macro-F1, the per-class figures and the confusion matrix (see module docstring)."""
    predictions = np.asarray(predictions, dtype=np.int64)
    references = np.asarray(references, dtype=np.int64)
    labels = np.arange(len(label_names))
    check_class_ids(predictions, references, len(labels))
    matrix = sklearn_metrics.confusion_matrix(references, predictions, labels=labels)
    support = matrix.sum(axis=1)
    present = labels[support > 0]
    f1 = sklearn_metrics.f1_score(references, predictions, labels=labels, average=None, zero_division=0)
    recall = {}
    if present.size:
        recalls = sklearn_metrics.recall_score(
            references, predictions, labels=present, average=None, zero_division=0
        )
        recall = dict(zip(present.tolist(), recalls.tolist(), strict=True))
    total = int(support.sum())
    return {
        "accuracy": float(sklearn_metrics.accuracy_score(references, predictions)) if total else float("nan"),
        "uar": float(np.mean(list(recall.values()))) if recall else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.size else float("nan"),
        "recall": {name: recall.get(i) for i, name in enumerate(label_names)},
        "f1": {name: float(f1[i]) for i, name in enumerate(label_names)},
        "support": {name: int(support[i]) for i, name in enumerate(label_names)},
        "confusion_matrix": matrix.tolist(),
        "label_names": list(label_names),
        "num_examples": total,
    }


class EmotionClassificationMetric(evaluate.Metric):
    """`evaluate` metric for emotion classification (see the module docstring); no Hub download."""

    def __init__(self, **kwargs):
        # In memory by default: Trainer gathers predictions on every process before computing, so nothing
        # the Arrow cache files `evaluate` would otherwise write under ~/.cache.
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self,
        predictions: Sequence[int],
        references: Sequence[int],
        label_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        groups: Sequence[str] | None = None,
    ) -> dict:
        if label_names is not None:
            num_classes = len(label_names)
        elif num_classes is None:
            num_classes = int(max(max(predictions, default=-1), max(references, default=-1))) + 1
        names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
        result = classification_scores(predictions, references, names)
        if groups is not None:
            groups = np.asarray([str(g) for g in groups])
            if len(groups) != len(predictions):
                raise ValueError(f"groups: {len(groups)} group names for {len(predictions)} predictions")
            predictions, references = np.asarray(predictions), np.asarray(references)
            result["per_group"] = {
                str(group): classification_scores(
                    predictions[groups == group], references[groups == group], names
                )
                for group in sorted(set(groups.tolist()))
            }
        return result


def flatten_metrics(result: dict, *, group_key: str = "corpus") -> dict[str, float]:
    """The nested result as flat scalar keys, for Trainer logs and `*_results.json`:
    ``accuracy``, ``uar``, ``macro_f1``, ``recall_<class>``, ``f1_<class>``, and per group
    ``<group_key>_<group>_accuracy`` etc. (the confusion matrices are left out: they are not scalars)."""
    flat: dict[str, float] = {}

    def add(prefix: str, scores: dict) -> None:
        for key in ("accuracy", "uar", "macro_f1"):
            flat[f"{prefix}{key}"] = scores[key]
        for name, value in scores["recall"].items():
            if value is not None:  # undefined (class absent here): not logged rather than logged as 0
                flat[f"{prefix}recall_{name}"] = value
        for name, value in scores["f1"].items():
            if scores["support"][name] > 0:
                flat[f"{prefix}f1_{name}"] = value

    add("", result)
    for group, scores in result.get("per_group", {}).items():
        add(f"{group_key}_{group}_", scores)
    return flat
