#!/usr/bin/env python
"""Benchmark models on the corpora under a fold protocol: every (model, corpus, fold) trained and tested.

    python run_benchmark.py --models cnn s4 --corpora emodb ravdess --data_root ./datasets \\
        --protocol speaker-cv --output_dir benchmarks/results/speaker-cv
    python run_benchmark.py --protocol emobox --corpora savee --dry_run        # folds.csv only
    python run_benchmark.py ... --fold 3                                       # one fold (a shard)
    python run_benchmark.py collect --output_dir OUT [--shards OTHER_OUT ...]  # merge shards, reports
    python run_benchmark.py compare --outputs OUT_SEED7 OUT_SEED8 ...          # paired with the baseline
    python run_benchmark.py compare --outputs OUT --variants wide=OUT_WIDE --baseline s4   # a change, paired
    python run_benchmark.py ... --split_seeds 42 7 8 9                         # repeated speaker-cv

Options this script does not know (`--num_train_epochs 3`, `--learning_rate 1e-3`, model options) pass
through unchanged to every run's training function. `--output_dir` receives:

- `folds.csv` (`corpus, fold, split, file, run`), written first and alone with `--dry_run`;
- `runs/<model>/<corpus>/fold-<k>/`: one folder per run (`run_args.json`, `results.json`,
  `confusion_matrix.json` and what the training writes);
- `runs.csv` (one row per run; `runs-fold-<K>.csv` for a `--fold K` shard);
- `leaderboard.csv`, `leaderboard.md` and `leaderboard.png` (not for a shard: run `collect`).

A finished run (its folder holds `results.json`) is never run again: re-running the command continues
where it stopped, and a finished benchmark re-run only rewrites the reports. Protocols: see
`evaluation/folds.py`.

`compare` pools benchmark outputs (typically one per `--split_seed`: repeated speaker cross-validation; or
one per model seed) and pairs every model's runs with the baseline's of the same partition of the speakers
(the same folds.csv) and fold (`evaluation.reports.pooled_runs`, `paired_with_baseline`): a model's lead or
gap over one partition of the speakers can be the partition's. `--variants LABEL=OUTPUT` adds outputs of a
changed model trained on the same folds: their models are named `MODEL (LABEL)`, so that with `--baseline
MODEL` the change is paired fold by fold with the runs it changed (given as plain outputs, the two would pool
as model seeds of one model).
`--split_seeds S1 S2 ...` does both in one command: the whole benchmark once per seed, each into
`--output_dir`/split-seed-<S>/ (a benchmark output of its own, with its folds, runs and leaderboard), then
the paired table of all of them (`paired.csv`, `paired.md`) in `--output_dir`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from evaluation.folds import EMOBOX_VALIDATION, PROTOCOLS, FoldError, FoldPlan, load_metadata, make_folds
from evaluation.reports import (
    ReportError,
    merge_runs,
    paired_with_baseline,
    pooled_runs,
    render_paired_markdown,
    runs_file_name,
    runs_files,
    write_csv_atomic,
    write_reports,
    write_runs,
)
from evaluation.runner import (
    LoadFn,
    Run,
    RunError,
    TrainFn,
    corpus_loader,
    execute,
    finished_result,
    plan_runs,
    resolve_train_fn,
    train_not_available,
)
from evaluation.train_runs import accepts_models, known_models
from loaders.registry import CORPORA
from training.files import write_json_atomic, write_text_atomic

logger = logging.getLogger("run_benchmark")

# The models of the default training function (the training library's kinds and the openSMILE baselines);
# a plug-in --train_fn may declare its own (`MODELS`).
KNOWN_MODELS: tuple[str, ...] = known_models()
DEFAULT_TRAIN_FN = "evaluation.train_runs:train_run"


class UsageError(ValueError):
    """A bad argument: one line on stderr, exit status 2, before any data is read or anything trained."""


@dataclass
class BenchmarkArguments:
    """What to benchmark, on which folds, and where the results go."""

    models: list[str] = field(
        default_factory=lambda: ["cnn"], metadata={"help": f"Models to benchmark: {', '.join(KNOWN_MODELS)}."}
    )
    corpora: list[str] | None = field(
        default=None,
        metadata={"help": f"Corpora: any of {', '.join(CORPORA)} (default: those found under --data_root)."},
    )
    data_root: str = field(default="./datasets", metadata={"help": "Folder holding <corpus>/ folders."})
    protocol: str = field(
        default="speaker-cv",
        metadata={"help": "Fold protocol (see evaluation/folds.py).", "choices": list(PROTOCOLS)},
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where folds, runs and reports go (default benchmarks/results/<protocol>)."},
    )
    folds: int = field(
        default=5,
        metadata={
            "help": "speaker-cv: folds of a corpus with more than 6 speakers (fewer: one per speaker)."
        },
    )
    fold: int | None = field(
        default=None,
        metadata={
            "help": "Run fold K alone (1-based: fold K of every corpus; loco: the K-th corpus held out; "
            "cross-corpus: training on the K-th corpus). Merge the shards with `collect`."
        },
    )
    split_seed: int = field(default=42, metadata={"help": "Seed of the folds and validation sets."})
    split_seeds: list[int] | None = field(
        default=None,
        metadata={
            "help": "Repeated cross-validation: the benchmark once per seed (two or more), each into "
            "OUTPUT_DIR/split-seed-<S>/, then every model paired with the baseline fold by fold over all "
            "of them (OUTPUT_DIR/paired.csv, paired.md). Instead of --split_seed."
        },
    )
    validation_fraction: float = field(
        default=0.2, metadata={"help": "Share of the training part held out for validation."}
    )
    emobox_validation: str = field(
        default="random",
        metadata={
            "help": "emobox: validation as a random share of the training files (EmoBox's recipe) or whole "
            "training speakers.",
            "choices": list(EMOBOX_VALIDATION),
        },
    )
    emotions: list[str] | None = field(
        default=None,
        metadata={
            "help": "Classes (speaker-cv, loco: default the four all corpora share; cross-corpus: "
            "default every emotion both corpora have; emobox: EmoBox's, not settable)."
        },
    )
    dry_run: bool = field(default=False, metadata={"help": "Write folds.csv, print the folds and stop."})
    train_fn: str = field(
        default=DEFAULT_TRAIN_FN,
        metadata={
            "help": "Training function, module:function; called as f(model, dataset_dict, run_dir, "
            "extra_args) -> metrics (see evaluation/runner.py)."
        },
    )
    lenient: bool = field(default=False, metadata={"help": "Skip (and report) files with unknown codes."})
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache of prepared corpora."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for preparing corpora (default: cores)."}
    )


@dataclass
class CollectArguments:
    """`collect`: merge the runs files of shards and write the reports."""

    output_dir: str = field(metadata={"help": "The benchmark output folder the reports are written to."})
    shards: list[str] | None = field(
        default=None,
        metadata={"help": "More output folders or runs files to merge (shards run on other machines)."},
    )


@dataclass
class CompareArguments:
    """`compare`: every model against a baseline, fold by fold within each partition of the speakers, pooled
    over outputs."""

    outputs: list[str] = field(
        metadata={
            "help": "Benchmark output folders, e.g. one per --split_seed or per model seed; outputs with the "
            "same folds.csv are one partition, whose baseline runs pair with every model run of its folds."
        }
    )
    baseline: str | None = field(
        default=None,
        metadata={"help": "The baseline model (default: the openSMILE one with the best UAR per corpus)."},
    )
    variants: list[str] | None = field(
        default=None,
        metadata={
            "help": "LABEL=OUTPUT ...: benchmark outputs of a variant of the models (another configuration "
            "trained on the same folds); their models are named 'MODEL (LABEL)', so that '--baseline s4' "
            "pairs 's4 (LABEL)' with the defaults' runs of --outputs fold by fold."
        },
    )
    output_csv: str | None = field(default=None, metadata={"help": "Also write the table to this CSV file."})


def setup_logging() -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=logging.INFO,
    )


def parser_for(*dataclass_types) -> HfArgumentParser:
    parser = HfArgumentParser(dataclass_types)
    # Options pass through to the training: an abbreviation must never be taken for one of ours.
    parser.allow_abbrev = False
    return parser


def collect(argv: list[str]) -> dict:
    (args,) = parser_for(CollectArguments).parse_args_into_dataclasses(args=argv)
    if not os.path.isdir(args.output_dir):
        raise UsageError(f"--output_dir {args.output_dir} does not exist; give the benchmark's output folder")
    try:
        own = [args.output_dir] if runs_files(args.output_dir) else []
        runs, duplicates = merge_runs([*own, *(args.shards or [])], args.output_dir)
    except ReportError as err:
        raise UsageError(str(err)) from err
    if runs.empty:
        raise UsageError(
            f"no finished runs in {args.output_dir} {' '.join(args.shards or [])}; run the folds first"
        )
    write_csv_atomic(runs, Path(args.output_dir) / "runs.csv")
    folds_json = Path(args.output_dir) / "folds.json"
    notes = json.loads(folds_json.read_text())["notes"] if folds_json.is_file() else []
    board = write_reports(args.output_dir, runs, notes=notes)
    print(
        f"{len(runs)} runs merged ({duplicates} duplicate rows dropped) into {args.output_dir}/runs.csv; "
        f"leaderboard of {len(board)} rows: {args.output_dir}/leaderboard.md"
    )
    return {"runs": runs, "leaderboard": board}


def compare(argv: list[str]) -> dict:
    (args,) = parser_for(CompareArguments).parse_args_into_dataclasses(args=argv)
    outputs, labels = list(args.outputs), [None] * len(args.outputs)
    flags = ["--outputs"] * len(outputs)  # where each output was given, for the errors
    for variant in args.variants or []:
        label, _, output = variant.partition("=")
        if not label or not output:
            raise UsageError(f"--variants {variant}: give LABEL=OUTPUT, e.g. width128=results/s4-width128")
        outputs.append(output)
        labels.append(label)
        flags.append("--variants")
    seen = [os.path.realpath(output) for output in outputs]
    repeated = next((path for path in seen if seen.count(path) > 1), None)
    if repeated is not None:
        given = [
            f"{flag} {output}"
            for flag, output, path in zip(flags, outputs, seen, strict=True)
            if path == repeated
        ]
        raise UsageError(f"{' and '.join(given)} name one output twice; give each benchmark output once")
    for flag, output in zip(flags, outputs, strict=True):
        if not os.path.isdir(output):
            raise UsageError(f"{flag} {output}: not a folder; give benchmark output folders")
    try:
        runs, pooling_notes = pooled_runs(outputs, labels)
    except ReportError as err:
        raise UsageError(str(err)) from err
    if args.baseline is not None and args.baseline not in set(runs["model"]):
        raise UsageError(
            f"--baseline {args.baseline}: no run of it in {' '.join(outputs)}; the models there are "
            f"{', '.join(sorted(set(runs['model'])))}"
        )
    table, notes = paired_with_baseline(runs, args.baseline)
    notes = pooling_notes + notes
    if args.output_csv:
        write_csv_atomic(table, args.output_csv)
    print(render_paired_markdown(table, notes), end="")
    return {"paired": table, "notes": notes}


def main(argv: list[str] | None = None, *, train_fn=None, load=None) -> dict:
    """Run the benchmark (`train_fn` / `load` override --train_fn and the corpus loader: tests, notebooks)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if argv[:1] == ["collect"]:
        return collect(argv[1:])
    if argv[:1] == ["compare"]:
        return compare(argv[1:])
    args, extra_args = parser_for(BenchmarkArguments).parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True
    )

    # ---- everything is checked before any data is read or anything written ----
    if train_fn is None and not args.dry_run:
        try:
            train_fn = resolve_train_fn(args.train_fn)
        except RunError as err:
            raise UsageError(str(err)) from err
    known = tuple(getattr(train_fn, "MODELS", KNOWN_MODELS))
    unknown = [m for m in args.models if m not in known]
    if unknown:
        raise UsageError(f"--models: unknown model(s) {unknown}; choose from {', '.join(known)}")
    if len(set(args.models)) != len(args.models):
        raise UsageError(f"--models {' '.join(args.models)} names a model twice")
    corpora = args.corpora or corpora_under(args.data_root)
    unknown = [c for c in corpora if c not in CORPORA]
    if unknown:
        raise UsageError(f"--corpora: unknown corpus name(s) {unknown}; choose from {', '.join(CORPORA)}")
    if len(set(corpora)) != len(corpora):
        raise UsageError(f"--corpora {' '.join(corpora)} names a corpus twice")
    if any(CORPORA[c].NEEDS_DATA_DIR for c in corpora) and not os.path.isdir(args.data_root):
        raise UsageError(
            f"--data_root {args.data_root} does not exist; download corpora into it with "
            f"`python -m loaders download {args.data_root}`"
        )
    if args.folds < 2:
        raise UsageError(f"--folds {args.folds}: cross-validation needs at least 2 folds")
    if args.fold is not None and args.fold < 1:
        raise UsageError(f"--fold {args.fold}: folds are numbered from 1")
    if not 0 < args.validation_fraction < 1:
        raise UsageError(f"--validation_fraction {args.validation_fraction}: give a share between 0 and 1")
    if args.emotions:
        from loaders.emotions import resolve_emotions

        try:
            resolve_emotions(args.emotions)
        except ValueError as err:
            raise UsageError(f"--{err}") from err
    if extra_args and hasattr(train_fn, "validate_args"):
        try:
            if accepts_models(train_fn.validate_args):
                train_fn.validate_args(list(extra_args), models=list(args.models))
            else:
                train_fn.validate_args(list(extra_args))
        except ValueError as err:
            raise UsageError(str(err)) from err
    if args.split_seeds is not None:
        if any(arg == "--split_seed" or arg.startswith("--split_seed=") for arg in argv):
            raise UsageError(
                "--split_seed and --split_seeds: give one of them (--split_seeds runs every seed)"
            )
        if len(args.split_seeds) < 2 or len(set(args.split_seeds)) != len(args.split_seeds):
            raise UsageError(
                f"--split_seeds {' '.join(map(str, args.split_seeds))}: give two or more different seeds "
                "(one partition of the speakers: --split_seed)"
            )
    output_dir = Path(args.output_dir or os.path.join("benchmarks", "results", args.protocol))
    # One benchmark output per partition of the speakers: the output folder itself, or one per seed.
    if args.split_seeds:
        partitions = {seed: output_dir / f"split-seed-{seed}" for seed in args.split_seeds}
    else:
        partitions = {args.split_seed: output_dir}

    # ---- folds: from the file names (no audio is read) ----
    try:
        meta, scan_notes = load_metadata(corpora, args.data_root, lenient=args.lenient)
        plans = {
            seed: make_folds(
                args.protocol,
                meta,
                n_folds=args.folds,
                seed=seed,
                validation_fraction=args.validation_fraction,
                emotions=args.emotions,
                emobox_validation=args.emobox_validation,
            )
            for seed in partitions
        }
    except (FoldError, FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from err
    numbers = sorted({f.fold for plan in plans.values() for f in plan.folds})
    if args.fold is not None and args.fold not in numbers:
        raise UsageError(
            f"--fold {args.fold}: the {args.protocol} folds of {' '.join(corpora)} are {numbers}"
        )
    for seed, plan in plans.items():
        write_folds(plan, partitions[seed], args.protocol, notes=scan_notes + plan.notes)
    if args.dry_run:
        for seed, plan in plans.items():
            folds_csv = partitions[seed] / "folds.csv"
            print(f"{len(plan.folds)} folds written to {folds_csv} (dry run: nothing trained)")
        return {"plans": plans} if args.split_seeds else {"plan": plans[args.split_seed]}

    # ---- runs: each finished run is kept; only the missing ones train ----
    runs = {seed: plan_runs(args.models, plan, args.fold) for seed, plan in plans.items()}
    try:
        pending = [
            run
            for seed in runs
            for run in runs[seed]
            if finished_result(run, partitions[seed], extra_args) is None
        ]
    except RunError as err:
        raise UsageError(str(err)) from err
    if pending and train_fn is train_not_available:
        raise UsageError(
            f"{len(pending)} runs to train, but --train_fn {args.train_fn} trains nothing: pass a training "
            f"function (default {DEFAULT_TRAIN_FN}), or --dry_run for the folds alone"
        )
    load = load or corpus_loader(
        args.data_root,
        lenient=args.lenient,
        cache_dir=args.dataset_cache_dir,
        num_proc=args.preprocessing_num_workers,
    )
    settings = {k: v for k, v in vars(args).items() if k not in ("dry_run", "split_seeds")}
    results = {}
    for seed, partition_dir in partitions.items():
        results[seed] = run_partition(
            runs[seed],
            partition_dir,
            train_fn,
            load,
            extra_args=extra_args,
            settings={**settings, "split_seed": seed},
            fold=args.fold,
            notes=scan_notes + plans[seed].notes,
            # With --split_seeds the whole command, run again without --fold, collects every partition.
            collect_hint=not args.split_seeds,
        )
    if not args.split_seeds:
        return results[args.split_seed]
    if args.fold is not None:
        print(
            f"Fold {args.fold} of every seed done. When every fold is, run the same command without --fold."
        )
        return {"partitions": results}
    runs, pooling_notes = pooled_runs(list(partitions.values()))
    table, notes = paired_with_baseline(runs)
    notes = pooling_notes + notes
    write_csv_atomic(table, output_dir / "paired.csv")
    text = render_paired_markdown(table, notes)
    write_text_atomic(text, output_dir / "paired.md")
    print(text, end="")
    print(f"Paired over {len(partitions)} partitions: {output_dir / 'paired.md'}")
    return {"partitions": results, "paired": table, "notes": notes}


def write_folds(plan: FoldPlan, output_dir: Path, protocol: str, *, notes: list[str]) -> None:
    """folds.csv and folds.json of one partition, and the folds in the log."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(plan.table(), output_dir / "folds.csv")
    write_json_atomic(output_dir / "folds.json", {"notes": notes, "folds": [f.to_dict() for f in plan.folds]})
    for note in notes:
        logger.info("note: %s", note)
    for fold in plan.folds:
        logger.info(
            "%s %s: %s; test speakers %s; validation: %s%s",
            protocol,
            fold.run,
            fold.counts(),
            " ".join(fold.test_speakers),
            fold.validation,
            "" if fold.speaker_independent else " (NOT speaker-independent)",
        )


def run_partition(
    runs: list[Run],
    output_dir: Path,
    train_fn: TrainFn,
    load: LoadFn,
    *,
    extra_args: list[str],
    settings: dict,
    fold: int | None,
    notes: list[str],
    collect_hint: bool = True,
) -> dict:
    """Train the runs of one partition that are not finished, write its runs file and (unless a `--fold`
    shard) its leaderboard; returns {"runs": frame[, "leaderboard": board]}. `collect_hint`: after a shard,
    say how to merge the partition's shards."""
    runs_path = output_dir / runs_file_name(fold)
    try:
        rows, trained = execute(
            runs,
            output_dir,
            train_fn,
            load,
            extra_args=extra_args,
            settings=settings,
            on_finished=lambda done: write_runs(done, runs_path),
        )
    except RunError as err:
        raise UsageError(str(err)) from err
    frame = write_runs(rows, runs_path)
    print(f"{trained} runs trained, {len(rows) - trained} already finished; {runs_path}")
    if fold is not None:
        if collect_hint:
            print(
                f"Fold {fold} done. When every fold is: python run_benchmark.py collect --output_dir "
                f"{output_dir}"
            )
        return {"runs": frame}
    board = write_reports(output_dir, frame, notes=notes)
    print(f"Leaderboard: {output_dir / 'leaderboard.md'}")
    return {"runs": frame, "leaderboard": board}


def corpora_under(data_root: str) -> list[str]:
    """The corpora with a folder under `data_root`."""
    from loaders.discovery import find_corpus_dir
    from loaders.registry import CORPUS_NAMES

    found = []
    for name in CORPUS_NAMES:
        try:
            find_corpus_dir(data_root, name, CORPORA[name].KAGGLE_SLUG)
        except FileNotFoundError:
            continue
        found.append(name)
    if not found:
        raise UsageError(
            f"--corpora not given and --data_root {data_root} holds none of {', '.join(CORPUS_NAMES)}: "
            "name the corpora (e.g. --corpora synthetic for the demo corpus)"
        )
    return found


if __name__ == "__main__":
    try:
        main()
    except UsageError as err:
        print(f"run_benchmark.py: error: {err}", file=sys.stderr)
        sys.exit(2)
