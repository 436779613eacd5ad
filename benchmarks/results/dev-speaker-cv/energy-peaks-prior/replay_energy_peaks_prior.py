"""The training clips' class prior taken out of the S4's energy peaks head, as out of its network: a replay of
saved runs, no training.

    python replay_energy_peaks_prior.py --data_root ROOT|- --out OUT.jsonl RESULTS_DIR [...]

Every RESULTS_DIR is a run_benchmark.py output folder of one corpus with S4 runs trained before the
fifty-third round (folds.csv, runs/s4/<corpus>/fold-K/model/; a fold without a finished run is skipped, and
said so). Such a run took the class prior out of its network's logits only (`correct_class_prior`, its
shift per class in train_results.json), so its saved model holds the corrected network and the energy peaks
head as trained. For each fold, the run's steps after that correction are done again
(`../energy-peaks-refit/replay_energy_peaks_refit.py`'s `replay`: the heads refitted, the gated heads
judged, the branch weights fitted, with the run's `branch_network_penalty`):
- `as_trained`: as the run did them; its test UAR equals the run's (`run_uar`), which checks the replay;
- `corrected`: with the run's own shift subtracted from the energy peaks head's bias first, as
  `correct_class_prior` now does (`training.calibration.PRIOR_CORRECTED_HEADS`; the functionals head, the
  other head it corrects, is refitted by the run anyway).
One JSON line per fold, with the shift.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))
sys.path.insert(0, str(HERE.parent / "energy-peaks-refit"))
sys.path.insert(0, str(HERE.parent / "speaker-encoder-probe"))
from replay_energy_peaks_refit import OTHER_HEADS, replay, replay_each_run  # noqa: E402
from speaker_encoder_probe import CLASSES  # noqa: E402


def take_prior_out(shift: list[float], model: torch.nn.Module) -> None:
    """Subtract the run's class prior shift from the energy peaks head's bias."""
    bias = model.energy_peaks_head.bias
    with torch.no_grad():
        bias -= torch.as_tensor(shift, dtype=bias.dtype)


def corrected_or_not(row: dict, model_dir: Path, splits: dict, penalty: float) -> None:
    trained = json.loads((model_dir / "train_results.json").read_text())
    # Balanced training clips: no correction in the run, and a shift of exactly zero.
    row["shift"] = [trained.get(f"class_prior_correction_{name}", 0.0) for name in CLASSES]
    for variant, prepare in (("as_trained", None), ("corrected", partial(take_prior_out, row["shift"]))):
        result = replay(model_dir, OTHER_HEADS, splits, penalty, prepare)
        row[variant] = result.pop("uar")
        row.update({f"{variant}_{key}": value for key, value in result.items()})


if __name__ == "__main__":
    replay_each_run(__doc__, corrected_or_not)
