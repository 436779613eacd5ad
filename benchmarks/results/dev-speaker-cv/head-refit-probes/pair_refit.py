"""The forty-ninth round's pairing: the models' heads and the openSMILE baselines refitted on train +
validation, each against the same system fitted on train, and each model against the best baseline fitted
the same way as its heads.

    python benchmarks/results/dev-speaker-cv/head-refit-probes/pair_refit.py > refit-paired.txt

Reads `refit-runs.csv` (`head_refit_probe.py`: ``defaults``, the models as `run_train.py` fits them, and
``refit``) and `refit-baselines.csv` (`baseline_refit_probe.py`). Differences are paired by fold (folds above
/ below; a fold level at 4 decimals counts in neither). The best baseline is the one of the highest mean over
the same folds, chosen separately for each way of fitting.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
KEY = ["corpus", "split_seed", "fold"]


def paired(ours: pd.Series, theirs: pd.Series) -> str:
    difference = (ours - theirs).round(4)
    return f"{difference.mean():+.4f} ({(difference > 0).sum()} / {(difference < 0).sum()})"


def main() -> None:
    runs = pd.read_csv(HERE / "refit-runs.csv")
    baselines = pd.read_csv(HERE / "refit-baselines.csv")
    for (model, corpus), rows in runs.groupby(["model", "corpus"], sort=False):
        table = rows.pivot_table(index=KEY, columns="variant", values="test_uar")
        for label, folds in (
            ("leaderboard partition", table.xs(42, level="split_seed", drop_level=False)),
            ("all partitions", table),
        ):
            if label == "all partitions" and len(folds) == 4:
                continue
            theirs = baselines.set_index(KEY).loc[folds.index]
            means = theirs.groupby("baseline")[["test_uar", "test_uar_refit"]].mean()
            best, best_refit = means["test_uar"].idxmax(), means["test_uar_refit"].idxmax()
            as_is = theirs[theirs["baseline"] == best]["test_uar"]
            refit = theirs[theirs["baseline"] == best_refit]["test_uar_refit"]
            print(f"{model} {corpus}, {label} ({len(folds)} folds)")
            print(
                f"  defaults {folds['defaults'].mean():.4f}, refit {folds['refit'].mean():.4f}: "
                f"refit - defaults {paired(folds['refit'], folds['defaults'])}"
            )
            print(f"  best baseline as is: {best} {as_is.mean():.4f}; refit: {best_refit} {refit.mean():.4f}")
            print(
                f"  defaults - best baseline as is {paired(folds['defaults'], as_is)}; "
                f"refit - best baseline refit {paired(folds['refit'], refit)}"
            )
    print("baselines, refit - as is, by corpus and partitions")
    for (corpus, name), rows in baselines.groupby(["corpus", "baseline"]):
        for label, part in (("42", rows[rows["split_seed"] == 42]), ("all", rows)):
            print(
                f"  {corpus} {name} {label} ({len(part)} folds): {part['test_uar'].mean():.4f} -> "
                f"{part['test_uar_refit'].mean():.4f}, {paired(part['test_uar_refit'], part['test_uar'])}"
            )


if __name__ == "__main__":
    main()
