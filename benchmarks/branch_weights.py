"""The network and the heads of a benchmark's saved runs, and how best to weigh them: a replay, no training.

    python -m benchmarks.branch_weights RESULTS_DIR [RESULTS_DIR ...] [--data_root ROOT] [--model cnn]
        [--prior 0.01] [--network_penalty L] [--refit_head [--head_criterion uar|log_loss]]
        [--checkpoint saved|last]

RESULTS_DIR is a `run_benchmark.py --output_dir` (its folds.csv and runs/<model>/<corpus>/fold-K/model/);
`--data_root` is the benchmark's. For every run of a model with a functionals head (the CNN and S4 defaults),
the validation and test clips of its fold go through the saved model once (cut to their middle
`max_duration_seconds`, as the run's evaluation cut them), and the test clips are scored with: the network's
logits alone, the heads' alone (the functionals head's, plus the energy peaks head's where the model has one:
the branch `branch_weights` weighs), their plain sum (the models before the branch weights), and the weights
fitted on the validation clips (`training.calibration.fit_branch_weights`, what `run_train.py` does after
training now). Printed per run and as mean ± std over the folds of each RESULTS_DIR: test UAR of each, the
test cross-entropy and expected calibration error (10 confidence bins) of the sum and of the fitted weights,
and the weights (`--prior`: fitted with another weight of the prior on the log-weights, for a sweep;
`--network_penalty L`: with `L * a^2` on the network's weight instead of its prior, which shrinks the sum
towards the head alone, `training.calibration.fit_branch_weights`; by default the model's recipe value, as
`run_train.py --branch_network_penalty` fits them: 0.01 for the S4 since the thirty-second round, 0 for the
CNN). Training
never sees the weights (each branch learns on its own loss), so a run trained before them replays exactly what
the same run would report now.

`--checkpoint last` replays, instead of the model the run saved (by default the checkpoint with the best
validation UAR), the newest `checkpoint-N` in its model folder: the weights at the end of training, for runs
that trained to their end and kept their checkpoints (`--early_stopping_patience 0`), to ask what choosing
a checkpoint on the validation speakers gains over keeping the last one.

`--refit_head` replays, for runs trained before `run_train.py` refitted the CNN's head (its
`--refit_functionals_head`, the default since the eighteenth round), what that refit gives: the head's linear
classifier fitted again on the fold's training clips (their functionals as the saved model standardises them,
cut as in evaluation) as the openSMILE baseline fits its own (`training.calibration.fit_head_like_baseline`:
logistic regression, balanced classes, C chosen on the validation clips; the energy peaks head's logits
stay as trained), scored alone, summed with the network and with weights fitted on validation. (Before the
eighteenth round, this flag refitted at the head's own fixed L2 penalty instead: ROUNDS.md's thirteenth
round and the earlier sections of benchmarks/results/dev-speaker-cv/branch-weights.md are that refit.)
`--head_criterion` picks what scores each C on the validation clips: `log_loss` (the cross-entropy of the
head's probabilities; `run_train.py`'s since the thirtieth round, `training.calibration.HEAD_C_CRITERION`)
or `uar` (the baseline's criterion, and the refit's before that round).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, log_loss
from transformers import AutoModelForAudioClassification
from transformers.trainer_utils import get_last_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.opensmile_baseline import SELECTION_CRITERIA  # noqa: E402
from loaders import load_corpora  # noqa: E402
from loaders.schema import SAMPLING_RATE  # noqa: E402
from modeling import feature_extractor_for, register_auto_classes  # noqa: E402
from training.arguments import load_recipe  # noqa: E402
from training.calibration import (  # noqa: E402
    HEAD_C_CRITERION,
    PRIOR,
    fit_branch_weights,
    fit_head_like_baseline,
)
from training.data import centre_crop  # noqa: E402

SCORES = ("network", "head", "sum", "fitted")
REFIT_SCORES = ("head", "sum", "fitted")


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share of clips."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    error = 0.0
    for low in np.linspace(0.0, 1.0, bins, endpoint=False):
        members = (confidence > low) & (confidence <= low + 1.0 / bins)
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64), -1).numpy()


def clip_outputs(
    model, extractor, dataset, rows: Sequence[int], max_samples: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(network logits, heads' logits, the energy peaks head's logits, the functionals head's inputs) of the
    clips at `rows`, one clip at a time, each cut to its middle `max_samples` as the run's evaluation cut it.
    The heads' logits are the sum of the functionals head's and the energy peaks head's (zero without one),
    the branch `branch_weights` weighs. The head's inputs are its functionals as the saved model
    standardises them (the output of its `norm`), what its linear classifier sees."""
    network, head, peaks, head_inputs = [], [], [], []
    hook = model.functionals_head.norm.register_forward_hook(
        lambda module, args, output: head_inputs.append(output[0, :, 0].double().numpy())
    )
    try:
        for row in rows:
            audio = dataset[row]["audio"]
            samples = centre_crop(np.asarray(audio["array"], dtype=np.float32), max_samples)
            inputs = extractor(samples, sampling_rate=audio["sampling_rate"], return_tensors="pt")
            with torch.inference_mode():
                output = model(**inputs)
            branches = [logits[0].double().numpy() for logits in output.branch_logits]
            network.append(branches[0])
            head.append(sum(branches[1:]))
            peaks.append(sum(branches[2:], np.zeros_like(branches[0])))
    finally:
        hook.remove()
    return np.stack(network), np.stack(head), np.stack(peaks), np.stack(head_inputs)


def last_checkpoint(model_dir: Path) -> Path:
    """The newest `checkpoint-N` folder of a run's model folder (the Trainer's own choice on resuming)."""
    newest = get_last_checkpoint(model_dir)
    if newest is None:
        raise SystemExit(
            f"{model_dir}: no checkpoint-N folder; --checkpoint last needs runs that kept their checkpoints"
        )
    return Path(newest)


def replay_run(
    model_dir: Path,
    fold_files: dict[str, list[str]],
    dataset,
    index: dict[str, int],
    prior: float = PRIOR,
    refit: bool = False,
    checkpoint: str = "saved",
    network_penalty: float = 0.0,
    head_criterion: str = HEAD_C_CRITERION,
) -> dict:
    weights_dir = model_dir if checkpoint == "saved" else last_checkpoint(model_dir)
    model = AutoModelForAudioClassification.from_pretrained(weights_dir).eval()
    if getattr(model, "functionals_head", None) is None:
        raise SystemExit(f"{model_dir}: this model has no functionals head; nothing to weigh")
    extractor = feature_extractor_for(model)
    run_args = json.loads((model_dir.parent / "run_args.json").read_text())
    mapping = run_args["fold"]["mapping"]
    training_args = model_dir / "run_args.json"
    max_seconds = (
        json.loads(training_args.read_text()).get("max_duration_seconds") if training_args.is_file() else None
    )
    max_samples = int(max_seconds * SAMPLING_RATE) if max_seconds else None
    label_id = model.config.label2id
    split = {}
    for name in ("train", "validation", "test") if refit else ("validation", "test"):
        rows = [index[file] for file in fold_files[name]]
        labels = np.array([label_id[mapping.get(e, e)] for e in dataset.select(rows)["emotion"]])
        split[name] = (
            *clip_outputs(model, extractor, dataset, rows, max_samples),
            labels,
        )
    network, head, peaks, _, labels = split["test"]
    validation_network, validation_head, validation_peaks, _, validation_labels = split["validation"]
    weights = fit_branch_weights(
        validation_network, validation_head, validation_labels, prior=prior, network_penalty=network_penalty
    )
    logits = {
        "network": network,
        "head": head,
        "sum": network + head,
        "fitted": weights[0] * network + weights[1] * head,
    }
    if refit:
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        try:
            fit = fit_head_like_baseline(
                *split["train"][3:], *split["validation"][3:], names, criterion=head_criterion
            )
        except ValueError as err:
            raise SystemExit(f"{model_dir}: {err} (--refit_head)") from None
        # The functionals head refitted; the energy peaks head's logits, where it has one, stay beside it.
        refitted = split["test"][3] @ fit.weight.T + fit.bias + peaks
        validation_refitted = split["validation"][3] @ fit.weight.T + fit.bias + validation_peaks
        refitted_weights = fit_branch_weights(
            validation_network, validation_refitted, validation_labels, prior, network_penalty
        )
        logits["head_refit"] = refitted
        logits["sum_refit"] = network + refitted
        logits["fitted_refit"] = refitted_weights[0] * network + refitted_weights[1] * refitted
    result = {f"uar_{name}": balanced_accuracy_score(labels, z.argmax(1)) for name, z in logits.items()}
    classes = list(range(network.shape[1]))
    for name in ("sum", "fitted"):
        probabilities = softmax(logits[name])
        result[f"nll_{name}"] = log_loss(labels, probabilities, labels=classes)
        result[f"ece_{name}"] = expected_calibration_error(probabilities, labels)
    result["weight_network"], result["weight_head"] = weights
    return result


def replay(
    results_dir: Path,
    data_root: str | None,
    model_kind: str,
    prior: float = PRIOR,
    refit: bool = False,
    checkpoint: str = "saved",
    network_penalty: float = 0.0,
    head_criterion: str = HEAD_C_CRITERION,
) -> list[dict]:
    folds = list(csv.DictReader((results_dir / "folds.csv").open()))
    if not folds:
        raise SystemExit(f"{results_dir / 'folds.csv'}: no folds; give a run_benchmark.py --output_dir")
    corpora = sorted({row["corpus"] for row in folds})
    dataset = load_corpora(corpora, data_root, split=None)
    index = {file: i for i, file in enumerate(dataset["file"])}
    results = []
    for run in sorted({row["run"] for row in folds}):
        model_dir = results_dir / "runs" / model_kind / run / "model"
        if not (model_dir / "config.json").is_file():
            print(f"skipped {run}: no saved model in {model_dir}", file=sys.stderr)
            continue
        files = {
            name: [row["file"] for row in folds if row["run"] == run and row["split"] == name]
            for name in ("train", "validation", "test")
        }
        result = {
            "run": run,
            **replay_run(
                model_dir, files, dataset, index, prior, refit, checkpoint, network_penalty, head_criterion
            ),
        }
        results.append(result)
        print(results_dir.name, format_row(result), flush=True)
    return results


def format_row(result: dict) -> str:
    uar = " ".join(f"{name} {result[f'uar_{name}']:.3f}" for name in SCORES)
    row = (
        f"{result['run']}: UAR {uar} | cross-entropy {result['nll_sum']:.3f} -> {result['nll_fitted']:.3f} | "
        f"ECE {result['ece_sum']:.3f} -> {result['ece_fitted']:.3f} | weights "
        f"{result['weight_network']:.2f}, {result['weight_head']:.2f}"
    )
    if "uar_head_refit" in result:
        refitted = " ".join(f"{name} {result[f'uar_{name}_refit']:.3f}" for name in REFIT_SCORES)
        row += f" | head refitted: UAR {refitted}"
    return row


def mean_std(values: Sequence[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results_dirs", nargs="+", type=Path, help="run_benchmark.py output folders")
    parser.add_argument("--data_root", default=None, help="the benchmark's --data_root")
    parser.add_argument("--model", default="cnn", help="model kind whose runs to replay (cnn, s4)")
    parser.add_argument(
        "--prior",
        type=float,
        default=PRIOR,
        help=f"weight of the prior on the log-weights (default {PRIOR}, as run_train.py fits them)",
    )
    parser.add_argument(
        "--network_penalty",
        type=float,
        default=None,
        help="L: fit the network's weight a with L * a^2 instead of its prior, shrinking the sum towards the "
        "head alone (default: the --model's recipe value, as run_train.py fits them: 0.01 for the S4, 0 for "
        "the CNN)",
    )
    parser.add_argument(
        "--refit_head",
        action="store_true",
        help="also score the head refitted as run_train.py refits it now (C chosen on the validation clips)",
    )
    parser.add_argument(
        "--head_criterion",
        choices=SELECTION_CRITERIA,
        default=None,
        help="with --refit_head: what scores each C on the validation clips (default "
        f"{HEAD_C_CRITERION}, as run_train.py chooses it; log_loss: the head's cross-entropy, uar: the "
        "baseline's criterion)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("saved", "last"),
        default="saved",
        help="the model each run saved (default) or the newest checkpoint-N in its model folder",
    )
    args = parser.parse_args(argv)
    if args.network_penalty is None:  # the recipe is the one home of each model's training defaults
        args.network_penalty = float(load_recipe(args.model).get("branch_network_penalty", 0.0))
    if not 0.0 <= args.network_penalty < float("inf"):
        parser.error(f"--network_penalty {args.network_penalty}: give a finite weight >= 0 (0: no penalty)")
    if args.head_criterion is not None and not args.refit_head:
        parser.error("--head_criterion: it chooses the refitted head's C; give --refit_head too")
    register_auto_classes()
    for results_dir in args.results_dirs:
        if not (results_dir / "folds.csv").is_file():
            parser.error(f"{results_dir}: no folds.csv; give a run_benchmark.py --output_dir")
        if args.checkpoint == "last":  # refused before the corpora are read
            for config in (results_dir / "runs" / args.model).glob("*/*/model/config.json"):
                last_checkpoint(config.parent)
    summaries = []
    for results_dir in args.results_dirs:
        results = replay(
            results_dir,
            args.data_root,
            args.model,
            args.prior,
            args.refit_head,
            args.checkpoint,
            args.network_penalty,
            args.head_criterion or HEAD_C_CRITERION,
        )
        if not results:
            continue
        cells = [mean_std([r[f"uar_{name}"] for r in results]) for name in SCORES]
        cells.append(
            f"{statistics.mean(r['nll_sum'] for r in results):.3f} -> "
            f"{statistics.mean(r['nll_fitted'] for r in results):.3f}"
        )
        cells.append(
            f"{statistics.mean(r['ece_sum'] for r in results):.3f} -> "
            f"{statistics.mean(r['ece_fitted'] for r in results):.3f}"
        )
        cells.append(
            f"{statistics.mean(r['weight_network'] for r in results):.2f}, "
            f"{statistics.mean(r['weight_head'] for r in results):.2f}"
        )
        if args.refit_head:
            cells += [mean_std([r[f"uar_{name}_refit"] for r in results]) for name in REFIT_SCORES]
        summaries.append(f"| {results_dir.name} | {len(results)} | " + " | ".join(cells) + " |")
    header = " | ".join(f"UAR {name}" for name in SCORES)
    columns = "cross-entropy sum -> fitted | ECE sum -> fitted | weights (network, head)"
    if args.refit_head:
        columns += " | " + " | ".join(f"UAR {name}, head refitted" for name in REFIT_SCORES)
    print(f"| results | runs | {header} | {columns} |")
    print("|---" * (len(SCORES) + 5 + (len(REFIT_SCORES) if args.refit_head else 0)) + "|")
    print("\n".join(summaries))


if __name__ == "__main__":
    main()
