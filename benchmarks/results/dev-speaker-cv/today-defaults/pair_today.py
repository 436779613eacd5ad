"""The forty-eighth round's pairing: today's defaults (trained, not replayed) against the best openSMILE
baselines and against the defaults before the forty-seventh round's class prior correction, fold by fold.

    python benchmarks/results/dev-speaker-cv/today-defaults/pair_today.py

Run from the repository root; it reads committed files only. Each model run is paired with the run of the same
corpus, speaker partition (`--split_seed`) and fold:

- today's runs: `../<corpus>/runs.csv` (partition 42, seed 42: the leaderboard's rows) and
  `<corpus>-<S>/runs.csv` (partition S, seed 42), `<corpus>-split42-seed<M>/runs.csv` (partition 42, seed M);
- ComParE + logistic regression: `../<corpus>/runs.csv`, `../compare-logreg/<corpus>-<S>/runs.csv`;
- ComParE + SVM: `../<corpus>/runs.csv`, `../split-seeds/<corpus>-<S>/runs.csv`;
- the defaults before the correction, replayed on the same partitions and seeds (forty-fourth round): the S4
  `../mfcc-head/spectrum-head.csv` (`spectrum_head_gated`), the CNN
  `../spectrum-head-default/cnn-replay-runs.csv` (`spectrum_head_gated`; a spectrum head of 512 points, where
  the CNN's default since the forty-fifth round has 400, so these are close to the CNN's defaults before the
  correction, not them bit for bit).

A fold level with the reference at 4 decimals counts neither above nor below.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent
CORPORA = ("espeak", "festival", "synthetic")  # the result folders' names
PARTITIONS = (42, 7, 8, 9)
SEEDS = (1, 2)
TIE = 5e-5

Key = tuple  # (corpus name, split seed, model seed, fold)


def read(path: Path) -> list[dict]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def runs_of(path: Path, model: str, split: int, seed: int, corpus: str) -> dict[Key, float]:
    if not path.exists():
        return {}
    rows = [row for row in read(path) if row["model"] == model]
    return {(corpus, split, seed, int(row["fold"])): float(row["test_uar"]) for row in rows}


def baseline(model: str, corpus: str) -> dict[tuple, float]:
    """{(corpus, split, fold): UAR}; the baseline has no model seed."""
    found = {}
    for split in PARTITIONS:
        if split == 42:
            path = RESULTS / corpus / "runs.csv"
        elif model == "opensmile-compare-logreg":
            path = RESULTS / "compare-logreg" / f"{corpus}-{split}" / "runs.csv"
        else:
            path = RESULTS / "split-seeds" / f"{corpus}-{split}" / "runs.csv"
        for (name, s, _, fold), uar in runs_of(path, model, split, 42, corpus).items():
            found[(name, s, fold)] = uar
    return found


def today(model: str, corpus: str) -> dict[Key, float]:
    found = runs_of(RESULTS / corpus / "runs.csv", model, 42, 42, corpus)
    for split in PARTITIONS[1:]:
        found |= runs_of(HERE / f"{corpus}-{split}" / "runs.csv", model, split, 42, corpus)
    for seed in SEEDS:
        found |= runs_of(HERE / f"{corpus}-split42-seed{seed}" / "runs.csv", model, 42, seed, corpus)
    return found


def before(model: str) -> dict[Key, float]:
    name = "mfcc-head/spectrum-head.csv" if model == "s4" else "spectrum-head-default/cnn-replay-runs.csv"
    path = RESULTS / name
    return {
        (row["corpus_name"], int(row["split_seed"]), int(row["seed"]), int(row["fold"])): float(
            row["spectrum_head_gated"]
        )
        for row in read(path)
    }


def paired(ours: dict[Key, float], reference: dict, key_of) -> str:
    differences = [uar - reference[key_of(key)] for key, uar in ours.items() if key_of(key) in reference]
    if not differences:
        return "n/a"
    above = sum(d > TIE for d in differences)
    below = sum(d < -TIE for d in differences)
    return f"{statistics.mean(differences):+.4f} ({above} / {below})"


def unseeded(key: Key) -> tuple:
    return key[0], key[1], key[3]


def same(key: Key) -> Key:
    return key


def main() -> None:
    for model in ("cnn", "s4"):
        replayed = before(model)
        for corpus in CORPORA:
            runs = today(model, corpus)
            seed_42 = {key: uar for key, uar in runs.items() if key[2] == 42}
            groups = {"seed 42, four partitions": seed_42}
            if len(runs) > len(seed_42):  # seeds 1 and 2, on the leaderboard's partition only
                groups["24 runs (+ seeds 1, 2 on 42)"] = runs
            for label, group in groups.items():
                uars = list(group.values())
                if len(uars) < 2:
                    continue
                logreg = paired(group, baseline("opensmile-compare-logreg", corpus), unseeded)
                svm = paired(group, baseline("opensmile-compare", corpus), unseeded)
                earlier = paired(group, replayed, same)
                print(
                    f"{model.upper():3} {corpus:9} {label:28} n={len(uars):2} "
                    f"{statistics.mean(uars):.3f} ± {statistics.stdev(uars):.3f} | vs ComParE + LR {logreg}"
                    f" | vs ComParE + SVM {svm} | vs the replayed defaults before {earlier}"
                )


if __name__ == "__main__":
    main()
