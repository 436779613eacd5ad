"""Pairs the speaker encoder probe's folds with each other and with the runs of the same test speakers.

    python benchmarks/results/dev-speaker-cv/speaker-encoder-probe/pair_probe.py > paired.txt

Reads `probe-<corpus>.csv` beside this script (the probe's JSON lines as CSV). For each model and corpus, over
the leaderboard's partition (42), the five partitions the plan tested (7-11), partition 12 (run after, speech
corpora only) and all of them: the mean test UAR of each probe variant, its difference from the heads alone
fold by fold (folds above / below, a fold level at 4 decimals counting in neither), and the difference from
ComParE + logistic regression and ComParE + SVM on the same folds, beside that of the trained model (today's
defaults) on them where every fold of the group has its run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
CORPORA = ("espeak", "festival", "synthetic")
GROUPS = {
    "partition 42": [42],
    "partitions 7-11": [7, 8, 9, 10, 11],
    "partition 12": [12],
    "all": [42, 7, 8, 9, 10, 11, 12],
}
VARIANTS = (
    "heads",
    "heads_gated",
    "heads_without_energy_peaks",
    "emb",
    "heads+emb",
    "emb_stats",
    "heads+emb_stats",
)


def runs_of(corpus: str, partition: int) -> pd.Series:
    """The committed runs of the partition's folds, (model, fold) -> test UAR: the two ComParE baselines and
    the CNN's and the S4's runs of today's defaults (on partitions 7-9 from `today-defaults/` only:
    `split-seeds/` holds runs of earlier defaults)."""
    if partition == 42:
        baselines = models = [RESULTS / corpus]
    elif partition in (10, 11, 12):
        baselines = models = [RESULTS / "fresh-partitions" / f"{corpus}-{partition}"]
    else:
        baselines = [
            RESULTS / "compare-logreg" / f"{corpus}-{partition}",
            RESULTS / "split-seeds" / f"{corpus}-{partition}",
        ]
        models = [RESULTS / "today-defaults" / f"{corpus}-{partition}"]
    kinds = {"baseline": ("opensmile-compare-logreg", "opensmile-compare"), "model": ("cnn", "s4")}
    tables = [
        table[table.model.isin(kinds[kind])]
        for kind, folders in (("baseline", baselines), ("model", models))
        for table in (pd.read_csv(folder / "runs.csv") for folder in folders)
    ]
    runs = pd.concat(tables)
    if runs.duplicated(["model", "fold"]).any():
        raise SystemExit(f"{corpus} partition {partition}: two runs of one model's fold")
    return runs.set_index(["model", "fold"])["test_uar"]


def paired(differences: list[float]) -> str:
    above = sum(round(d, 4) > 0 for d in differences)
    below = sum(round(d, 4) < 0 for d in differences)
    return f"{statistics.mean(differences):+.3f} ({above} / {below})"


def table(probe: pd.DataFrame, runs: dict[int, pd.Series], model: str) -> list[str]:
    """Markdown rows of one model's probe on one corpus, per group of partitions."""
    lines = []
    for label, partitions in GROUPS.items():
        rows = probe[(probe.model == model) & probe.partition.isin(partitions)]
        if rows.empty:
            continue
        keys = list(zip(rows.partition, rows.fold, strict=True))
        baselines = {
            name: [runs[p][(name, f)] for p, f in keys]
            for name in ("opensmile-compare-logreg", "opensmile-compare")
        }
        series = {
            variant: rows[variant].tolist()
            for variant in VARIANTS
            if variant in rows and rows[variant].notna().all()
        }
        trained = [runs[p].get((model, f)) for p, f in keys]
        if all(value is not None for value in trained):
            series[f"{model} trained (today's defaults)"] = trained
        for variant, values in series.items():
            versus_heads = ""
            if variant in VARIANTS and variant != "heads":
                versus_heads = paired([v - h for v, h in zip(values, series["heads"], strict=True)])
            versus = [
                paired([v - b for v, b in zip(values, baseline, strict=True)])
                for baseline in baselines.values()
            ]
            lines.append(
                f"| {label}, {len(values)} | {variant} | {statistics.mean(values):.3f} | {versus_heads} | "
                + " | ".join(versus)
                + " |"
            )
    return lines


def main() -> None:
    for corpus in CORPORA:
        probe = pd.read_csv(HERE / f"probe-{corpus}.csv")
        probe["partition"] = [
            42 if name == corpus else int(name.rsplit("-", 1)[1]) for name in probe["results"]
        ]
        runs = {p: runs_of(corpus, p) for p in sorted(set(probe.partition))}
        for model in sorted(set(probe.model)):
            print(f"## {corpus}, the {model.upper()}'s heads\n")
            print("| folds | variant | mean UAR | vs heads | vs ComParE + LR | vs ComParE + SVM |")
            print("|---|---|---|---|---|---|")
            print("\n".join(table(probe, runs, model)) + "\n")


if __name__ == "__main__":
    main()
