"""The S4's energy peaks head refitted after training, as the other heads are, against it kept as trained: a
replay of saved runs, no training.

    python replay_energy_peaks_refit.py --data_root ROOT|- --out OUT.jsonl RESULTS_DIR [...]

Every RESULTS_DIR is a run_benchmark.py output folder of one corpus with S4 runs (folds.csv,
runs/s4/<corpus>/fold-K/model/; a fold without a finished run is skipped, and said so). After training a
run takes the class prior out of the network's logits, refits the linear heads (`training.calibration`),
gates some of them and fits the branch weights on the validation clips; none of that changes what training
did. Runs trained before the fifty-second round kept the energy peaks head as trained, so their saved model
holds the trained energy peaks head and the corrected network, and from it, for each variant:
- `as_trained`: the run's steps after the class prior again (`refit_functionals_head`, `predict_branches`,
  `gate_fitted_heads`, `calibrate_branch_weights`, with the run's `branch_network_penalty`), every refitted
  head but the energy peaks head; for such a run its test UAR equals the run's (`run_uar`, from its
  test_results.json), which checks the replay;
- `refitted`: the same with the energy peaks head refitted too (its own C);
- `chosen`: whichever of the two gives the lower cross-entropy of the weighted sum on the validation clips
  (`<variant>_validation_cross_entropy`), as the gated heads are judged.
Each clip is cut to its middle 4 s, as the run's refit and evaluation cut it. One JSON line per fold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import datasets
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from torch.nn import functional as F
from transformers import AutoModelForAudioClassification, Trainer, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speaker-encoder-probe"))
from speaker_encoder_probe import BATCH_SIZE, CLASSES, MAX_SAMPLES, corpus_clips, fold_split  # noqa: E402

from modeling import feature_extractor_for, register_auto_classes  # noqa: E402
from training.calibration import (  # noqa: E402
    REFITTED_HEADS,
    calibrate_branch_weights,
    gate_fitted_heads,
    predict_branches,
    refit_functionals_head,
)
from training.data import AudioCollator  # noqa: E402

PEAKS = "energy_peaks_head"
OTHER_HEADS = tuple(head for head in REFITTED_HEADS if head != PEAKS)
VARIANTS = {"as_trained": OTHER_HEADS, "refitted": (*OTHER_HEADS, PEAKS)}
# Every output field but the fused logits.
NOT_LOGITS = ["branch_logits", "penalty", "hidden_states", "attentions"]


def replay(
    model_dir: Path,
    heads: tuple[str, ...],
    splits: dict[str, datasets.Dataset],
    penalty: float,
    prepare: Callable[[torch.nn.Module], None] | None = None,
) -> dict:
    """The saved model's steps after training done again with `heads` refitted (`prepare`: a change made to
    the loaded model first): its test UAR, the weighted sum's cross-entropy on the validation clips, each
    head's C, the gates and the branch weights."""
    model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    if prepare is not None:
        prepare(model)
    collator = AudioCollator(feature_extractor_for(model), max_samples=MAX_SAMPLES, random_crop=False)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(scratch, per_device_eval_batch_size=BATCH_SIZE, report_to=[], use_cpu=True)
        trainer = Trainer(model=model, args=args, data_collator=collator)
        refit = refit_functionals_head(trainer, splits["train"], splits["validation"], CLASSES, heads=heads)
        if refit is None:  # not two branches, or a class without training clips: the run refitted nothing
            raise SystemExit(f"{model_dir}: its heads cannot be refitted (the warning above says why)")
        branches = predict_branches(trainer, splits["validation"])
        branches, kept = gate_fitted_heads(model, branches, refit.validation_logits, network_penalty=penalty)
        weights = calibrate_branch_weights(trainer, splits["validation"], branches, network_penalty=penalty)
        output = trainer.predict(splits["test"], ignore_keys=NOT_LOGITS)
    validation_logits = torch.as_tensor(weights[0] * branches.network + weights[1] * branches.head)
    return {
        "uar": balanced_accuracy_score(output.label_ids, output.predictions.argmax(1)),
        "validation_cross_entropy": float(
            F.cross_entropy(validation_logits.double(), torch.as_tensor(branches.labels).long())
        ),
        "c": refit.c,
        "kept": kept,
        "branch_weights": list(weights),
    }


def saved_runs(
    results_dirs: list[Path], data_root: str
) -> Iterator[tuple[dict, Path, dict[str, datasets.Dataset], float]]:
    """Each finished S4 run of the benchmark outputs: (its row's first fields, its model folder, its fold's
    clips by split, its `branch_network_penalty`); a fold without a finished run is skipped, and said so."""
    tables = {path: pd.read_csv(path / "folds.csv") for path in results_dirs}
    position, clips = corpus_clips(list(tables.values()), data_root)
    for path, table in tables.items():
        corpus = table.corpus.iloc[0]
        for fold in sorted(set(table.fold)):
            model_dir = path / "runs" / "s4" / corpus / f"fold-{fold}" / "model"
            if not (model_dir / "test_results.json").is_file():
                print(f"{model_dir}: no finished run, fold skipped", file=sys.stderr)
                continue
            splits = {
                name: datasets.Dataset.from_list([clips[i] for i in members])
                for name, members in fold_split(table, fold, position).items()
            }
            penalty = float(json.loads((model_dir / "run_args.json").read_text())["branch_network_penalty"])
            run_uar = json.loads((model_dir / "test_results.json").read_text())["test_uar"]
            yield {"results": path.name, "fold": int(fold), "run_uar": run_uar}, model_dir, splits, penalty


def replay_each_run(
    docstring: str, fill_row: Callable[[dict, Path, dict[str, datasets.Dataset], float], None]
) -> None:
    """A replay script's command line (RESULTS_DIR ..., --data_root, --out): for each saved run, `fill_row`
    adds the variants' fields to its row (given its model folder, clips and penalty); each row is printed
    and appended to --out as a JSON line, so that a stopped replay keeps the folds it finished."""
    parser = argparse.ArgumentParser(description=docstring.split("\n")[0])
    parser.add_argument("results_dirs", nargs="+", type=Path)
    parser.add_argument("--data_root", required=True, help="the benchmark's --data_root; - for none")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    register_auto_classes()
    for row, model_dir, splits, penalty in saved_runs(args.results_dirs, args.data_root):
        fill_row(row, model_dir, splits, penalty)
        print(json.dumps(row), flush=True)
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")


def refit_or_not(row: dict, model_dir: Path, splits: dict[str, datasets.Dataset], penalty: float) -> None:
    for variant, heads in VARIANTS.items():
        result = replay(model_dir, heads, splits, penalty)
        row[variant] = result.pop("uar")
        row.update({f"{variant}_{key}": value for key, value in result.items()})
    chosen = min(VARIANTS, key=lambda variant: row[f"{variant}_validation_cross_entropy"])
    row["chosen"], row["chosen_variant"] = row[chosen], chosen


if __name__ == "__main__":
    replay_each_run(__doc__, refit_or_not)
