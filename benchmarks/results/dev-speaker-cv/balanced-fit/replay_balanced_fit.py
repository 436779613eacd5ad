"""The S4's branch weights and gates fitted by a class-balanced cross-entropy on the validation clips, against
the plain cross-entropy a run uses: a replay of saved runs, no training.

    python replay_balanced_fit.py --data_root ROOT|- --out OUT.jsonl RESULTS_DIR [...]

Every RESULTS_DIR is a run_benchmark.py output folder of one corpus with S4 runs of today's defaults
(folds.csv, runs/s4/<corpus>/fold-K/model/; a fold without a finished run is skipped, and said so). After
training a run refits its heads with balanced class weights, then gates the MFCC and spectrum heads and fits
the branch weights by the mean cross-entropy over the validation clips (`training.calibration`): on espeak,
where neutral has half the clips of each other emotion, that mean weighs neutral half as much as UAR does.
For each fold, the run's steps after training are done again
(`../energy-peaks-refit/replay_energy_peaks_refit.py`'s `replay`, every head the run refits):
- `as_trained`: as the run did them; its test UAR equals the run's (`run_uar`), which checks the replay;
- `balanced`: the gates and the branch weights fitted by the cross-entropy with each clip weighted by the
  inverse of its class's count on the validation clips (each class counts as much, as in UAR). On balanced
  validation clips it is the plain mean: the synthetic corpus is unchanged.
One JSON line per fold.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
sys.path.insert(0, str(HERE.parent / "energy-peaks-refit"))
from replay_energy_peaks_refit import replay, replay_each_run  # noqa: E402

from training import calibration  # noqa: E402
from training.calibration import REFITTED_HEADS  # noqa: E402
from training.data import class_weights  # noqa: E402


def balanced_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, **kwargs) -> torch.Tensor:
    """The mean over classes of each class's mean cross-entropy (`training.data.class_weights`, the
    "balanced" weights a run trains with under --class_weighting)."""
    weight = class_weights(targets.tolist(), logits.shape[-1]).to(logits.dtype)
    return F.cross_entropy(logits, targets, weight=weight, **kwargs)


def plain_or_balanced(row: dict, model_dir: Path, splits: dict, penalty: float) -> None:
    row["as_trained"] = replay(model_dir, REFITTED_HEADS, splits, penalty)
    # `calibration` calls the cross-entropy through its module's `F` only: in the branch weights' fit and in
    # the gates' judgement (`_cross_entropy`).
    balanced_functional = SimpleNamespace(cross_entropy=balanced_cross_entropy)
    with mock.patch.object(calibration, "F", balanced_functional):
        row["balanced"] = replay(model_dir, REFITTED_HEADS, splits, penalty)
    for variant in ("as_trained", "balanced"):
        result = row.pop(variant)
        row[variant] = result.pop("uar")
        row.update({f"{variant}_{key}": value for key, value in result.items()})


if __name__ == "__main__":
    replay_each_run(__doc__, plain_or_balanced)
