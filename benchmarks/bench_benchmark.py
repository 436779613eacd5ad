"""Wall time of the evaluation suite: a 5-fold speaker-cv of the default CNN on RAVDESS's full-size layout.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_benchmark.py [--epochs N] [--folds 5] [--workdir DIR]

Builds the RAVDESS download layout of `loaders.fixtures` at full length (1,440 clips of 24 actors, their real
durations; synthetic signal, so the figures are about time, not accuracy), then times, through
`run_benchmark.main`: the folds alone (`--dry_run`), the whole benchmark (corpus preparation, then every
fold trained and tested with the CNN recipe), each run, and a re-run of the finished benchmark (which must
train nothing). `--epochs` defaults to the CNN recipe's; give fewer where the full run would take too long,
the output says so. `--max_train_samples` limits each fold's training files (a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import run_benchmark  # noqa: E402
from evaluation.train_runs import train_run  # noqa: E402
from loaders import fixtures  # noqa: E402
from training import load_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=None, help="Epochs per run (default: the recipe's).")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--workdir", default=None, help="Fixture and outputs (default: a temp dir).")
    args = parser.parse_args()
    recipe_epochs = float(load_recipe("cnn")["num_train_epochs"])
    epochs = args.epochs if args.epochs is not None else recipe_epochs
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_benchmark_"))
    data, out = work / "data", work / "out"

    start = time.perf_counter()
    if not (data / "ravdess").is_dir():
        fixtures.build_download("ravdess", data, full_length=True, quirks=False)
    fixture_s = time.perf_counter() - start
    clips = len(list((data / "ravdess").glob("Actor_*/*.wav")))

    argv = [
        "--models", "cnn", "--corpora", "ravdess", "--data_root", str(data), "--protocol", "speaker-cv",
        "--folds", str(args.folds), "--output_dir", str(out), "--dataset_cache_dir", str(work / "cache"),
        "--num_train_epochs", str(epochs), "--report_to", "none",
    ]  # fmt: skip
    if args.max_train_samples:
        argv += ["--max_train_samples", str(args.max_train_samples)]

    start = time.perf_counter()
    run_benchmark.main([*argv, "--dry_run"])
    folds_s = time.perf_counter() - start

    run_times: list[tuple[str, float]] = []

    def timed(model, dataset_dict, run_dir, extra_args):
        begin = time.perf_counter()
        metrics = train_run(model, dataset_dict, run_dir, extra_args)
        run_times.append(("/".join(Path(run_dir).parts[-2:]), time.perf_counter() - begin))
        return metrics

    timed.MODELS = train_run.MODELS  # type: ignore[attr-defined]
    start = time.perf_counter()
    result = run_benchmark.main(argv, train_fn=timed)
    total_s = time.perf_counter() - start
    start = time.perf_counter()
    run_benchmark.main(argv, train_fn=timed)
    rerun_s = time.perf_counter() - start
    trained_again = len(run_times) - args.folds

    print()
    print(f"RAVDESS full-size fixture: {clips} clips ({fixture_s:.0f} s to write, skipped when present)")
    note = "" if epochs == recipe_epochs else f" (REDUCED from the recipe's {recipe_epochs:g} epochs)"
    print(f"CNN, {epochs:g} epochs{note}, {args.folds}-fold speaker-cv, in {work}")
    if args.max_train_samples:
        print(f"REDUCED: at most {args.max_train_samples} training files per fold")
    print(f"folds (--dry_run): {folds_s:8.1f} s")
    for name, seconds in run_times[: args.folds]:
        print(f"run {name:>10}: {seconds:8.1f} s")
    print(f"benchmark total:   {total_s:8.1f} s (corpus preparation + runs + reports)")
    print(f"re-run (finished): {rerun_s:8.1f} s, runs trained again: {trained_again}")
    board = result["leaderboard"]
    print(f"UAR {board['uar_mean'].iloc[0]:.3f} ± {board['uar_std'].iloc[0]:.3f} (synthetic signal)")


if __name__ == "__main__":
    main()
