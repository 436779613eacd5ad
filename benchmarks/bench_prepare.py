"""How fast the six corpora become the 16 kHz cache, against the original project's per-item loading.

    .venv/bin/python benchmarks/bench_prepare.py [--data_root DIR] [--num_proc N] [--baseline_files 300]

Builds full-size fake downloads of the six corpora from the manifest (every file name, real lengths and
native rates: 15,697 files, ~12 h of audio) in DIR (reused when already complete; a temporary folder by
default), then times `loaders.prepare_corpus` on all cores into a fresh cache, and the original project's
baseline, `librosa.load(path, sr=16000)` one file at a time, on an evenly spread sample of the same files.
Both are reported as x real time (seconds of audio per second of wall clock). librosa is not a dependency
of the project: `pip install librosa` to get the baseline row (it is skipped otherwise).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loaders import fixtures  # noqa: E402
from loaders.loading import prepare_corpus  # noqa: E402
from loaders.registry import CORPUS_NAMES  # noqa: E402

COMPLETE_MARKER = ".bench_complete"


def build_downloads(data_root: Path) -> float:
    """Write the six full-size downloads unless a previous run completed them; returns seconds spent."""
    if (data_root / COMPLETE_MARKER).exists():
        return 0.0
    start = time.perf_counter()
    shutil.rmtree(data_root, ignore_errors=True)
    manifest = fixtures.read_manifest()
    for name in CORPUS_NAMES:
        fixtures.build_download(name, data_root, manifest=manifest, full_length=True)
    (data_root / COMPLETE_MARKER).touch()
    return time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the preparation workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_prepare(data_root: Path, cache_dir: Path, num_proc: int) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, audio seconds, files) for preparing all six corpora at 16 kHz."""
    audio_seconds, files = 0.0, 0
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for name in CORPUS_NAMES:
        builder = prepare_corpus(name, data_root / name, cache_dir=cache_dir, num_proc=num_proc)
        dataset = builder.as_dataset(split="train")
        audio_seconds += float(sum(dataset["duration"]))
        files += len(dataset)
    return time.perf_counter() - start, cpu_seconds() - start_cpu, audio_seconds, files


def sample_files(data_root: Path, count: int) -> list[str]:
    """`count` files spread evenly over the sorted list of all six corpora's files."""
    paths = []
    for name in CORPUS_NAMES:
        from loaders.registry import get_builder_class

        paths += [f.path for f in get_builder_class(name).scan_corpus(data_root / name).files]
    step = max(1, len(paths) // count)
    return paths[::step][:count]


def time_librosa(paths: list[str]) -> tuple[float, float, float] | None:
    """(wall s, CPU s, audio s) of `librosa.load(path, sr=16000)` on each path; None without librosa."""
    try:
        import librosa
    except ImportError:
        return None
    librosa.load(paths[0], sr=16000)  # first call compiles numba code: not part of the per-item cost
    start, start_cpu = time.perf_counter(), cpu_seconds()
    audio_seconds = 0.0
    for path in paths:
        samples, rate = librosa.load(path, sr=16000)
        audio_seconds += len(samples) / rate
    return time.perf_counter() - start, cpu_seconds() - start_cpu, audio_seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data_root", type=Path, default=None, help="reused if complete (default: temporary)"
    )
    parser.add_argument("--num_proc", type=int, default=os.cpu_count())
    parser.add_argument("--baseline_files", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        data_root = args.data_root or Path(tmp) / "data"
        data_root.mkdir(parents=True, exist_ok=True)
        built = build_downloads(data_root)
        print(f"fake downloads: {data_root} ({f'built in {built:.1f} s' if built else 'reused'})")

        cache_dir = Path(tmp) / "cache"
        load = os.getloadavg()[0]
        wall, cpu, audio, files = time_prepare(data_root, cache_dir, args.num_proc)
        print(f"cores: {os.cpu_count()}, num_proc: {args.num_proc}, load average before: {load:.1f}")
        print("x real time = audio s / wall s; per CPU s = audio s / CPU s (all processes)")
        header = f"{'method':<44} {'files':>6} {'audio h':>8} {'wall s':>7} {'CPU s':>7} {'x real time':>11}"
        print(header + f" {'per CPU s':>10}")
        row = "{:<44} {:>6} {:>8.2f} {:>7.1f} {:>7.1f} {:>11.0f} {:>10.0f}"
        print(
            row.format(
                "loaders.prepare_corpus (16 kHz Arrow cache)",
                files,
                audio / 3600,
                wall,
                cpu,
                audio / wall,
                audio / cpu,
            )
        )

        baseline = time_librosa(sample_files(data_root, args.baseline_files))
        if baseline is None:
            print("librosa.load(sr=16000) baseline skipped: `pip install librosa` to measure it")
            return
        base_wall, base_cpu, base_audio = baseline
        print(
            row.format(
                "librosa.load(path, sr=16000), one at a time",
                args.baseline_files,
                base_audio / 3600,
                base_wall,
                base_cpu,
                base_audio / base_wall,
                base_audio / base_cpu,
            )
        )
        print(
            f"speed-up, wall clock: {(audio / wall) / (base_audio / base_wall):.1f}x; "
            f"per CPU second: {(audio / cpu) / (base_audio / base_cpu):.1f}x"
        )


if __name__ == "__main__":
    main()
