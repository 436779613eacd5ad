"""`python -m loaders {stats,prepare,download,push} ...`: inspect, prepare, download and share corpora."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import download, hub
from .registry import CORPUS_NAMES, corpora_present, find_corpus_dir, get_builder_class, validate_corpus_names
from .schema import SAMPLING_RATE

# Modules that add their subcommand through `register_cli(subparsers)`.
PLUGIN_MODULES = (download, hub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loaders", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_stats(subparsers)
    _add_prepare(subparsers)
    for module in PLUGIN_MODULES:
        module.register_cli(subparsers)
    return parser


def _add_stats(subparsers) -> None:
    parser = subparsers.add_parser(
        "stats", help="count files per emotion and corpus (names and headers only, nothing decoded)"
    )
    parser.add_argument("data_root", type=Path, help="folder with one subfolder per corpus")
    parser.add_argument("--corpora", nargs="+", metavar="NAME", help=f"default: all of {list(CORPUS_NAMES)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--lenient", action="store_true", help="skip (and list) unknown codes, broken audio")
    parser.set_defaults(func=_stats)


def _add_prepare(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="build the 16 kHz Arrow cache ahead of training")
    parser.add_argument("data_root", type=Path, help="folder with one subfolder per corpus")
    parser.add_argument("--corpora", nargs="+", metavar="NAME", help="default: every corpus found")
    parser.add_argument(
        "--num_proc", type=_positive_int, default=None, help="worker processes (default: all cores)"
    )
    parser.add_argument("--cache_dir", type=Path, default=None, help="default: the datasets cache")
    parser.add_argument(
        "--sampling_rate", type=_positive_int, default=SAMPLING_RATE, help=f"Hz (default: {SAMPLING_RATE})"
    )
    parser.add_argument("--lenient", action="store_true", help="skip (and list) unknown codes, broken audio")
    parser.set_defaults(func=_prepare)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer; pass e.g. 16000 (Hz) or 2")
    return value


def _stats(args: argparse.Namespace) -> int:
    from .stats import collect_stats, format_stats

    stats = collect_stats(args.data_root, args.corpora, lenient=args.lenient)
    print(json.dumps(stats.to_dict(), indent=1) if args.json else format_stats(stats))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    # SIGTERM (timeout, schedulers, `docker stop`) would kill Python with the default action: the workers die
    # with it (they were forked under `children_die_with_parent`), but nothing says why. The handler ends the
    # workers and exits at once instead of unwinding through datasets' pool, whose clean-up can wait on
    # workers that are already gone. The cache of the corpus in progress stays in datasets' `.incomplete`
    # folder, which never looks complete and is replaced by the next run.
    def on_sigterm(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import multiprocess

        for child in multiprocess.active_children():
            child.terminate()
        sys.stdout.flush()
        print(
            "prepare: stopped by SIGTERM; the corpus being prepared was not cached",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return _prepare_corpora(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepare_corpora(args: argparse.Namespace) -> int:
    from .loading import check_before_preparing, prepare_builder, skip_report
    from .registry import make_builder

    names = validate_corpus_names(args.corpora) if args.corpora else corpora_present(args.data_root)
    if not names:
        print(
            f"no corpus found under {args.data_root}; download with "
            f"`python -m loaders download {args.data_root}`",
            file=sys.stderr,
        )
        return 1
    # Everything that can be checked is checked before any corpus is prepared: a missing folder, a symlink
    # loop or a broken file of the last corpus fails at once, not after the first ones took an hour.
    builders = []
    for name in names:
        needs_folder = get_builder_class(name).NEEDS_DATA_DIR
        corpus_dir = find_corpus_dir(args.data_root, name) if needs_folder else None
        builder = make_builder(
            name,
            corpus_dir,
            sampling_rate=args.sampling_rate,
            lenient=args.lenient,
            cache_dir=str(args.cache_dir) if args.cache_dir is not None else None,
        )
        check_before_preparing(builder)
        builders.append(builder)
    for builder in builders:
        name = builder.NAME
        start = time.perf_counter()
        prepare_builder(builder, num_proc=args.num_proc)
        seconds = time.perf_counter() - start
        split = builder.info.splits["train"]
        print(
            f"{name}: {split.num_examples} files at {args.sampling_rate} Hz in {seconds:.1f} s "
            f"({split.num_bytes / 1e6:.0f} MB) -> {builder.cache_dir}"
        )
        if builder.cache_rebuilt:
            print(f"  damaged cache rebuilt: {builder.cache_rebuilt}")
        if builder.scan is not None:  # a generated corpus has no files to skip
            missing = builder.missing_files() if split.num_examples < len(builder.scan.files) else []
            print("\n".join(skip_report(builder.scan, missing)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
