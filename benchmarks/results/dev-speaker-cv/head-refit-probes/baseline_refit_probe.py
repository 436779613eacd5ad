"""The forty-ninth round's baseline side: the openSMILE baselines refitted on train + validation.

    python benchmarks/results/dev-speaker-cv/head-refit-probes/baseline_refit_probe.py FOLDS_CSV DATA_ROOT \
        OUT.jsonl

FOLDS_CSV is a `run_benchmark.py --output_dir`'s ``folds.csv`` (DATA_ROOT its `--data_root`, or `-` for the
synthetic corpus). For every fold and every baseline of the leaderboard (`BASELINE_MODELS`: ComParE and
eGeMAPS, linear SVM with C by validation UAR, logistic regression with C by validation cross-entropy), C is
chosen as
`evaluation.opensmile_baseline.train_baseline` chooses it, and the test UAR is given twice: of the fit on
train with that C (the baseline as it is: reproduces the leaderboard's runs) and of a second fit with that C
on the training and validation clips together (as the challenges refit on train + devel). The functionals
come from the suite's feature cache, read once per fold and feature set. One JSON line per fold and baseline
(`refit-baselines.csv` holds them, one row each).
"""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score

from evaluation.opensmile_baseline import BASELINE_MODELS, extract_functionals, make_pipeline, select_c
from loaders import load_corpora


def main(folds_csv: Path, data_root: str | None, out: Path) -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)  # as the baseline, which records it per C
    folds = list(csv.DictReader(folds_csv.open()))
    dataset = load_corpora(sorted({row["corpus"] for row in folds}), data_root, split=None)
    index = {file: i for i, file in enumerate(dataset["file"])}
    for run in sorted({row["run"] for row in folds}):
        parts = {
            split: dataset.select(
                [index[row["file"]] for row in folds if row["run"] == run and row["split"] == split]
            )
            for split in ("train", "validation", "test")
        }
        names = sorted(set(parts["train"]["emotion"]))
        labels = {split: np.array([names.index(e) for e in part["emotion"]]) for split, part in parts.items()}
        features = {
            feature_set: {split: extract_functionals(part, feature_set) for split, part in parts.items()}
            for feature_set in sorted({recipe.feature_set for recipe in BASELINE_MODELS.values()})
        }
        for name, recipe in sorted(BASELINE_MODELS.items()):
            x, classifier = features[recipe.feature_set], recipe.classifier
            pipeline, c, _, _ = select_c(
                x["train"],
                labels["train"],
                x["validation"],
                labels["validation"],
                names,
                classifier=classifier,
                criterion=recipe.criterion,
            )
            refit = make_pipeline(classifier, c, 42).fit(
                np.concatenate([x["train"], x["validation"]]),
                np.concatenate([labels["train"], labels["validation"]]),
            )
            result = {
                "run": f"{folds_csv.parent.name}/{run}",
                "baseline": name,
                "C": c,
                "uar": balanced_accuracy_score(labels["test"], pipeline.predict(x["test"])),
                "uar_refit": balanced_accuracy_score(labels["test"], refit.predict(x["test"])),
            }
            print(json.dumps(result), flush=True)
            with out.open("a") as sink:
                sink.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    folds_path, root, output = sys.argv[1:]
    main(Path(folds_path), None if root == "-" else root, Path(output))
