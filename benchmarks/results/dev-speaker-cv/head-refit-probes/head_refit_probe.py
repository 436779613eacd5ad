"""The forty-sixth, forty-seventh and forty-ninth rounds' probes, replayed on saved runs: other fits of the
linear heads after training, the class prior taken out of the network's logits, and the heads refitted on the
training and validation clips.

    python benchmarks/results/dev-speaker-cv/head-refit-probes/head_refit_probe.py RESULTS_DIR DATA_ROOT \
        MODEL VARIANT[,VARIANT...] OUT.jsonl

RESULTS_DIR is a `run_benchmark.py --output_dir` of the CNN's or the S4's defaults (DATA_ROOT its
`--data_root`, or `-` for the synthetic corpus). For every fold, the saved model's branches are read clip by
clip (each clip cut to its middle `max_duration_seconds`, as the run's evaluation cut it), and every linear
head fitted after training (`training.calibration.REFITTED_HEADS`) is fitted again as VARIANT says, then gated
and weighed as `run_train.py` does (`GATED_HEADS`, `head_lowers_cross_entropy`, `fit_branch_weights` with the
model's network penalty). One JSON line per fold and variant: test UAR of the weighted sum and of the heads
alone, each head's C, the gate's decisions and the branch weights.

VARIANT:
- ``none``: `run_train.py`'s refit (C by the validation clips' cross-entropy, fitted on train): reproduces the
  runs' own test UAR, the check that the replay is faithful;
- ``speed``, ``gain``, ``speed+gain``: the training clips plus copies played 0.9x and 1.1x as fast
  (resampled: pitch, formants and tempo move together, as a new voice), or 6 dB quieter and louder;
- ``cv``, ``cvuar``: C chosen by a 5-fold GroupKFold by speaker over the training and validation clips (the
  pooled out-of-fold cross-entropy, or UAR), the head still fitted on the training clips only;
- ``svm``: the baseline's linear SVM (C by validation UAR), its decision values as the head's logits;
- ``lda``: linear discriminant analysis with a Ledoit-Wolf shrunk covariance and equal class priors (nothing
  chosen on validation), its decision values as the head's logits;
- ``union``: one logistic regression on every refitted head's inputs side by side (one C, as ComParE's one
  classifier on all its functionals), in place of the heads and their gate;
- ``prior``: the heads as ``none``, the network's logits less the training clips' class prior
  (`training.calibration.class_prior_shift`, as `correct_class_prior` does to the network's bias);
  ``prior+peaks``: the energy peaks head's logits (trained beside the network) less it too;
  ``prior+balanced``: with the prior out, the validation clips weighted to balance the classes in what is
  chosen on them (the heads' C, the gate, the branch weights), by repeating each clip max(count) / its
  class's count times, rounded (exact where the counts divide: espeak's 2:1);
- ``fused-prior``: the heads, gate and branch weights as ``none``, then the prior taken out of the weighted
  sum rather than of the network's logits (the sum, fitted on validation clips with the training clips'
  shares, is calibrated to that prior);
- ``refit``, ``prior+refit``: as ``none`` or ``prior``, then every head that the gate kept fitted again
  with its chosen C on the training and validation clips together (the gate and the branch weights stay
  those decided on the validation clips with the heads fitted on train), its test logits from that fit.
The runs must be of models without the class prior taken out (before 33e14ea) for the ``prior`` variants,
which take it out; on later runs, ``none`` and ``refit`` replay the defaults with it.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchaudio
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from transformers import AutoModelForAudioClassification

from evaluation.opensmile_baseline import make_pipeline, select_c
from loaders import load_corpora
from loaders.schema import SAMPLING_RATE
from modeling import feature_extractor_for, register_auto_classes
from training.calibration import (
    GATED_HEADS,
    REFITTED_HEADS,
    class_prior_shift,
    fit_branch_weights,
    fit_head_like_baseline,
    head_lowers_cross_entropy,
)
from training.data import centre_crop

AUGMENTATIONS = ("speed", "gain")
NETWORK_PENALTY = {"s4": 0.01, "cnn": 0.0}  # the recipes' --branch_network_penalty


def augmented(samples: np.ndarray, name: str) -> list[np.ndarray]:
    if name == "speed":
        clip = torch.as_tensor(samples)[None]
        return [
            torchaudio.functional.resample(clip, int(SAMPLING_RATE * factor), SAMPLING_RATE)[0].numpy()
            for factor in (0.9, 1.1)
        ]
    return [samples * 10 ** (db / 20) for db in (-6, 6)]


def branches(model, extractor, clips, heads):
    """(network logits, the energy peaks head's logits or zeros, {head: its standardised inputs})."""
    network, peaks, inputs = [], [], {head: [] for head in heads}
    hooks = [
        getattr(model, head).norm.register_forward_hook(
            lambda module, args, output, head=head: inputs[head].append(output[0, :, 0].double().numpy())
        )
        for head in heads
    ]
    try:
        for samples in clips:
            with torch.inference_mode():
                output = model(**extractor(samples, sampling_rate=SAMPLING_RATE, return_tensors="pt"))
            logits = [part[0].double().numpy() for part in output.branch_logits]
            network.append(logits[0])
            peaks.append(sum(logits[2:], np.zeros_like(logits[0])))
    finally:
        for hook in hooks:
            hook.remove()
    return np.stack(network), np.stack(peaks), {head: np.stack(rows) for head, rows in inputs.items()}


def make_pipeline_lda(classes: int) -> Pipeline:
    """Linear discriminant analysis with the Ledoit-Wolf shrinkage of the covariance (nothing to tune) and
    equal class priors, as the UAR weighs the classes."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "classify",
                LinearDiscriminantAnalysis(
                    solver="lsqr", shrinkage="auto", priors=np.full(classes, 1 / classes)
                ),
            ),
        ]
    )


def fit_head(variant, train_x, train_y, validation_x, validation_y, speakers, names):
    """(a function from inputs to logits, C)."""
    if variant == "lda":
        classes = len(names)
        lda = make_pipeline_lda(classes)
        lda.fit(train_x, train_y)
        return lda.decision_function, None
    if variant == "svm":
        pipeline, c, _, _ = select_c(train_x, train_y, validation_x, validation_y, names, classifier="svm")
        return pipeline.decision_function, c
    if variant in ("cv", "cvuar"):
        _, c, _, _ = select_c(
            np.concatenate([train_x, validation_x]),
            np.concatenate([train_y, validation_y]),
            validation_x[:0],
            validation_y[:0],
            names,
            classifier="logreg",
            speakers=speakers,
            criterion="uar" if variant == "cvuar" else "log_loss",
        )
        pipeline = make_pipeline("logreg", c, 42)
        pipeline.fit(train_x, train_y)
        return pipeline.decision_function, c
    fit = fit_head_like_baseline(train_x, train_y, validation_x, validation_y, names)
    return (lambda x: x @ fit.weight.T + fit.bias), fit.c


def refit_logits(c: float, x: np.ndarray, y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    pipeline = make_pipeline("logreg", c, 42)
    pipeline.fit(x, y)
    return pipeline.decision_function(test_x)


def main(results_dir: Path, data_root: str | None, kind: str, variants: list[str], out: Path) -> None:
    register_auto_classes()
    torch.set_num_threads(1)
    folds = list(csv.DictReader((results_dir / "folds.csv").open()))
    dataset = load_corpora(sorted({row["corpus"] for row in folds}), data_root, split=None)
    index = {file: i for i, file in enumerate(dataset["file"])}
    for run in sorted({row["run"] for row in folds}):
        model_dir = results_dir / "runs" / kind / run / "model"
        model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
        extractor = feature_extractor_for(model)
        mapping = json.loads((model_dir.parent / "run_args.json").read_text())["fold"]["mapping"]
        seconds = json.loads((model_dir / "run_args.json").read_text()).get("max_duration_seconds")
        max_samples = int(seconds * SAMPLING_RATE) if seconds else None
        heads = [head for head in REFITTED_HEADS if getattr(model, head, None) is not None]
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        clips, labels, speakers, outputs = {}, {}, {}, {}
        for split in ("train", "validation", "test"):
            part = dataset.select(
                [index[row["file"]] for row in folds if row["run"] == run and row["split"] == split]
            )
            clips[split] = [
                centre_crop(np.asarray(a["array"], dtype=np.float32), max_samples) for a in part["audio"]
            ]
            labels[split] = np.array([model.config.label2id[mapping.get(e, e)] for e in part["emotion"]])
            speakers[split] = list(part["speaker"])
            outputs[split] = branches(model, extractor, clips[split], heads)
        for variant in variants:
            network, peaks, test_inputs = outputs["test"]
            validation_network, validation_peaks, validation_inputs = outputs["validation"]
            validation_labels = labels["validation"]
            if variant.startswith("prior"):
                shift = class_prior_shift(labels["train"], len(names))
                network, validation_network = network - shift, validation_network - shift
                if variant == "prior+peaks" and validation_peaks.any():
                    peaks, validation_peaks = peaks - shift, validation_peaks - shift
            if variant == "prior+balanced":
                counts = np.bincount(validation_labels, minlength=len(names))
                times = np.rint(counts.max() / counts).astype(int)[validation_labels]
                repeated = np.repeat(np.arange(len(validation_labels)), times)
                validation_network = validation_network[repeated]
                validation_peaks = validation_peaks[repeated]
                validation_inputs = {head: rows[repeated] for head, rows in validation_inputs.items()}
                validation_labels = validation_labels[repeated]
            train_inputs, train_labels = outputs["train"][2], labels["train"]
            parts = [name for name in variant.split("+") if name in AUGMENTATIONS]
            if parts:
                extra = [
                    (centre_crop(copy.astype(np.float32), max_samples), label)
                    for samples, label in zip(clips["train"], labels["train"], strict=True)
                    for name in parts
                    for copy in augmented(samples, name)
                ]
                extra_inputs = branches(model, extractor, [samples for samples, _ in extra], heads)[2]
                train_inputs = {
                    head: np.concatenate([train_inputs[head], extra_inputs[head]]) for head in heads
                }
                train_labels = np.concatenate([train_labels, [label for _, label in extra]])
            if variant == "union":  # one head on every head's inputs, not gated
                fitted = {"union": heads}
                train_inputs, validation_inputs, test_inputs = (
                    {"union": np.concatenate([rows[head] for head in heads], axis=1)}
                    for rows in (train_inputs, validation_inputs, test_inputs)
                )
            else:
                fitted = {head: [head] for head in heads}
            validation_logits, test_logits, chosen = {}, {}, {}
            own_fit = variant in ("union", "fused-prior", "refit") or variant.startswith("prior")
            for head in fitted:
                logits, chosen[head] = fit_head(
                    "none" if own_fit else variant,
                    train_inputs[head],
                    train_labels,
                    validation_inputs[head],
                    validation_labels,
                    speakers["train"] + speakers["validation"],
                    names,
                )
                validation_logits[head], test_logits[head] = (
                    logits(validation_inputs[head]),
                    logits(test_inputs[head]),
                )
            validation_sum = validation_peaks + sum(
                validation_logits[h] for h in fitted if h not in GATED_HEADS
            )
            test_sum = peaks + sum(test_logits[h] for h in fitted if h not in GATED_HEADS)
            kept = {}
            for head in (h for h in fitted if h in GATED_HEADS):
                kept[head] = bool(
                    head_lowers_cross_entropy(
                        validation_network,
                        validation_sum,
                        validation_logits[head],
                        validation_labels,
                        NETWORK_PENALTY[kind],
                    )
                )
                if kept[head]:
                    validation_sum, test_sum = (
                        validation_sum + validation_logits[head],
                        test_sum + test_logits[head],
                    )
            weights = fit_branch_weights(
                validation_network,
                validation_sum,
                validation_labels,
                network_penalty=NETWORK_PENALTY[kind],
            )
            if variant.endswith("refit"):
                test_sum = peaks + sum(
                    refit_logits(
                        chosen[head],
                        np.concatenate([train_inputs[head], validation_inputs[head]]),
                        np.concatenate([train_labels, validation_labels]),
                        test_inputs[head],
                    )
                    for head in fitted
                    if head not in GATED_HEADS or kept[head]
                )
            fused = weights[0] * network + weights[1] * test_sum
            if variant == "fused-prior":
                fused = fused - class_prior_shift(labels["train"], len(names))
            result = {
                "run": f"{results_dir.name}/{run}",
                "variant": variant,
                "uar": balanced_accuracy_score(labels["test"], fused.argmax(1)),
                "uar_heads": balanced_accuracy_score(labels["test"], test_sum.argmax(1)),
                "C": chosen,
                "kept": kept,
                "branch_weights": list(weights),
            }
            print(json.dumps(result), flush=True)
            with out.open("a") as sink:
                sink.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    results, root, model_kind, names, output = sys.argv[1:]
    main(Path(results), None if root == "-" else root, model_kind, names.split(","), Path(output))
