"""The replays' table: per corpus, each variant's mean test UAR and its difference from `as_trained` (mean ±
sample std, folds above / below, ties as `run_benchmark.py compare` counts them).

    python summarise.py replay-espeak.jsonl replay-festival.jsonl replay-synthetic.jsonl [--partitions 13 14]
        [--variants refitted chosen]

`--variants`: the replay's fields to compare with `as_trained` (the default: this folder's replay's; the
fifty-third round's replay, `../energy-peaks-prior/`, has `corrected`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from evaluation.reports import TIE_TOLERANCE  # noqa: E402

VARIANTS = ["refitted", "chosen"]


def partition(results: str) -> str:
    """`s4-espeak-13s42` -> `13`."""
    return results.rsplit("-", 1)[1].split("s")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("replays", nargs="+", type=Path)
    parser.add_argument("--partitions", nargs="+", help="only these --split_seed values")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, help="the variants to compare")
    args = parser.parse_args()
    header = ["corpus", "partitions", "folds", "run = as trained", "as trained"]
    header += [f"{variant} − as trained" for variant in args.variants]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for path in args.replays:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows = [row for row in rows if not args.partitions or partition(row["results"]) in args.partitions]
        if not rows:
            continue
        exact = sum(row["run_uar"] == row["as_trained"] for row in rows)
        cells = []
        for variant in args.variants:
            differences = [row[variant] - row["as_trained"] for row in rows]
            above = sum(d > TIE_TOLERANCE for d in differences)
            below = sum(d < -TIE_TOLERANCE for d in differences)
            spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
            cells.append(f"{statistics.mean(differences):+.4f} ± {spread:.4f} ({above} / {below})")
        partitions = " ".join(sorted({partition(row["results"]) for row in rows}, key=int))
        corpus = path.stem.removeprefix("replay-")
        mean = statistics.mean(row["as_trained"] for row in rows)
        print(f"| {corpus} | {partitions} | {len(rows)} | {exact} | {mean:.4f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
