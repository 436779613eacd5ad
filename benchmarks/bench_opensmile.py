"""Cost of the openSMILE baseline's features: extraction against the cached call, and the baseline's scores.

    .venv/bin/python benchmarks/bench_opensmile.py [--clips 48] [--num_proc 1] [--baseline]

Speed: renders `--clips` synthetic utterances (1.5-3 s each, the four default emotions) into an in-memory
dataset, then times `extract_functionals` for eGeMAPSv02 and ComParE_2016 into a fresh cache (extraction,
as x real time: seconds of audio per second of wall clock) and again (the cached call: hashing each clip's
audio and reading the stored rows); the ratio is what the cache saves on every later run.

`--baseline` also trains both baselines (LinearSVC) on the full synthetic corpus (960 utterances, speaker
split, seed 42) and prints test UAR, the chosen C and the wall time: the figures a neural model should beat
on that corpus. Measured (2 shared cores, num_proc 2): eGeMAPSv02 test UAR 0.988 (C 0.01), ComParE_2016
1.000 (C 1e-4), about 160 s each, nearly all of it extraction; above the CNN (0.925) and S4 (0.944) of
tests/test_train_learning.py on the same split. Needs the optional extra:
pip install 'ser-toolkit[opensmile]' (research / education licence).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.opensmile_baseline import FEATURE_SETS, extract_functionals, train_baseline  # noqa: E402
from loaders.builder import encode_wav  # noqa: E402
from loaders.emotions import DEFAULT_EMOTIONS  # noqa: E402
from loaders.schema import SAMPLING_RATE  # noqa: E402
from loaders.synthesis import SPEAKERS, render_utterance  # noqa: E402


def synthetic_clips(n: int) -> tuple[datasets.Dataset, float]:
    """`n` synthetic utterances in the loaders' schema (audio, corpus, file), and their total seconds."""
    rows = {"audio": [], "corpus": [], "file": []}
    seconds = 0.0
    for i in range(n):
        speaker = SPEAKERS[i % len(SPEAKERS)]
        emotion = DEFAULT_EMOTIONS[(i // len(SPEAKERS)) % len(DEFAULT_EMOTIONS)]
        samples = render_utterance(speaker, emotion, i % 10, seed=i)
        seconds += len(samples) / SAMPLING_RATE
        rows["audio"].append({"bytes": encode_wav(samples, SAMPLING_RATE), "path": None})
        rows["corpus"].append("synthetic")
        rows["file"].append(f"{speaker.code}/{emotion}_{i}.wav")
    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=SAMPLING_RATE),
            "corpus": datasets.Value("string"),
            "file": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features), seconds


def bench_speed(clips: int, num_proc: int) -> None:
    dataset, seconds = synthetic_clips(clips)
    print(f"{clips} synthetic clips, {seconds:.1f} s of audio, num_proc={num_proc}")
    header = ("feature set", "width", "extract s", "x real time", "cached s", "saving")
    print("{:<14} {:>6} {:>10} {:>12} {:>9} {:>8}".format(*header))
    with tempfile.TemporaryDirectory() as cache:
        for name, (long_name, _) in FEATURE_SETS.items():
            start = time.perf_counter()
            features = extract_functionals(dataset, name, cache, num_proc=num_proc)
            extract = time.perf_counter() - start
            start = time.perf_counter()
            again = extract_functionals(dataset, name, cache, num_proc=num_proc)
            cached = time.perf_counter() - start
            assert np.array_equal(features, again, equal_nan=True)
            print(
                f"{long_name:<14} {features.shape[1]:>6} {extract:>10.2f} {seconds / extract:>11.0f}x "
                f"{cached:>9.3f} {extract / cached:>7.0f}x"
            )


def bench_baseline(num_proc: int) -> None:
    from loaders import load_corpora

    with tempfile.TemporaryDirectory() as cache:
        dsd = load_corpora(["synthetic"], None, split="speaker", seed=42, cache_dir=cache, num_proc=num_proc)
        names = dsd["train"].features["label"].names
        print(f"synthetic corpus, speaker split: {', '.join(f'{k} {len(v)}' for k, v in dsd.items())}")
        for name in FEATURE_SETS:
            start = time.perf_counter()
            result = train_baseline(
                dsd["train"], dsd["validation"], dsd["test"], names, feature_set=name, cache_dir=cache,
                num_proc=num_proc,
            )  # fmt: skip
            print(
                f"opensmile-{name:<8} test UAR {result['uar']:.3f}  accuracy {result['accuracy']:.3f}  "
                f"validation UAR {result['validation_uar']:.3f}  C {result['chosen_C']:g}  "
                f"{time.perf_counter() - start:.0f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48, help="synthetic clips for the speed rows")
    parser.add_argument("--num_proc", type=int, default=1, help="extraction processes")
    parser.add_argument("--baseline", action="store_true", help="also train both baselines on synthetic")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    bench_speed(args.clips, args.num_proc)
    if args.baseline:
        bench_baseline(args.num_proc)


if __name__ == "__main__":
    main()
