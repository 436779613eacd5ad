"""Pair runs of a changed S4 with the defaults they change, where those defaults exist as a replay: the
fifty-third round's class prior correction, replayed on the committed runs of partitions 13-14
(`../energy-peaks-prior/replay-<corpus>.jsonl`), is what today's defaults give on those folds.

    python pair_with_replay.py --defaults ../fresh-partitions/espeak-13 ../fresh-partitions/espeak-14 \
        --replay ../energy-peaks-prior/replay-espeak.jsonl --field corrected \
        --variants attention=attention-prior-espeak-13 attention=attention-prior-espeak-14

Each default run's test UAR is replaced by the replay's `--field` of the same partition and fold, after
checking that the replay is of that run (its `run_uar` equals the run's); then `evaluation.reports`
pairs the variants with the defaults as `run_benchmark.py compare --variants ... --baseline s4` does.
Without `--replay` the defaults' runs are taken as they are (the synthetic corpus, where the correction
is zero); so are those of `--trained` outputs (defaults trained with the correction, on other partitions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "energy-peaks-refit"))
from summarise import partition as split_seed  # noqa: E402  `espeak-13`, `def-espeak-13s42` -> `13`

from evaluation.reports import (  # noqa: E402
    TIE_TOLERANCE,
    paired_with_baseline,
    partition_id,
    pooled_runs,
    render_paired_markdown,
    variant_name,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--defaults", nargs="+", required=True, help="benchmark outputs of the defaults")
    parser.add_argument("--trained", nargs="*", default=[], help="outputs of the defaults, taken as they are")
    parser.add_argument("--variants", nargs="+", required=True, help="LABEL=OUTPUT, as `compare` takes them")
    parser.add_argument("--replay", type=Path, help="the replay of the defaults' runs (JSON lines)")
    parser.add_argument("--field", default="corrected", help="the replay's UAR to take for the defaults")
    parser.add_argument("--model", default="s4")
    args = parser.parse_args()
    labels, outputs = zip(*(variant.split("=", 1) for variant in args.variants), strict=True)
    defaults = [*args.defaults, *args.trained]
    runs, notes = pooled_runs([*defaults, *outputs], [None] * len(defaults) + list(labels))
    if args.replay is not None:
        replayed = {}
        for line in args.replay.read_text().splitlines():
            row = json.loads(line)
            replayed[split_seed(row["results"]), row["fold"]] = row
        # The partition digest of each defaults output (`partition_id`) -> its split seed.
        partitions = {partition_id(output): split_seed(Path(output).name) for output in args.defaults}
        replayed_runs = (runs["model"] == args.model) & runs["partition"].isin(partitions)
        for index in runs.index[replayed_runs]:
            key = (partitions[runs.at[index, "partition"]], int(runs.at[index, "fold"]))
            if key not in replayed:
                sys.exit(f"--replay {args.replay}: no replay of partition {key[0]} fold {key[1]}")
            if abs(replayed[key]["run_uar"] - runs.at[index, "test_uar"]) > TIE_TOLERANCE:
                sys.exit(f"--replay {args.replay}: partition {key[0]} fold {key[1]} replays another run")
            runs.at[index, "test_uar"] = replayed[key][args.field]
    table, pairing_notes = paired_with_baseline(runs, baseline=args.model)
    table = table[table["model"].isin({variant_name(args.model, label) for label in labels})]
    print(render_paired_markdown(table, notes + pairing_notes), end="")


if __name__ == "__main__":
    main()
