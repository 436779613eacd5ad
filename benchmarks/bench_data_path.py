"""Training's data path: the corpus cache read directly, against the old second float32 cache.

    .venv/bin/python benchmarks/bench_data_path.py [--corpus synthetic] [--data_root DIR] [--batch_size 32]

Both paths start from the same prepared corpus cache (16 kHz PCM-16 WAV bytes in Arrow, `loaders`):

* baseline, the old path: every clip decoded once by `datasets.map` into a float32 `input_values` Arrow cache
  beside the corpus cache, then batches read from it;
* `training.data.prepare_model_inputs` now: only each clip's length, from its WAV header; the collator
  decodes each batch's bytes.

Printed: the disk written by the preparation (bytes of new cache files), its time, the time to the first
collated training batch, and the mean collate time over one epoch of batches (what decoding per batch costs
in every step), with the ratios new / baseline. Every line says what machine it ran on (CPU threads).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from loaders.audio import decode_clip  # noqa: E402
from loaders.loading import load_corpora  # noqa: E402
from modeling.feature_extraction import SERFeatureExtractor  # noqa: E402
from training.data import AudioCollator, prepare_model_inputs  # noqa: E402


def folder_bytes(folder: str | os.PathLike) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _decode_batch(batch: dict) -> dict:
    clips = [decode_clip(audio) for audio in batch["audio"]]
    return {"input_values": clips, "length": [len(c) for c in clips]}


def old_path(split: datasets.Dataset, cache_dir: Path) -> datasets.Dataset:
    """The removed second cache: all clips decoded into float32 Arrow rows (written to `cache_dir`)."""
    undecoded = split.cast_column("audio", datasets.Audio(sampling_rate=None, decode=False))
    return undecoded.select_columns(["audio", "label", "corpus"]).map(
        _decode_batch,
        batched=True,
        batch_size=32,
        writer_batch_size=64,
        remove_columns=["audio"],
        cache_file_name=str(cache_dir / "decoded.arrow"),
        features=datasets.Features(
            {
                "input_values": datasets.List(datasets.Value("float32")),
                "length": datasets.Value("int64"),
                "label": split.features["label"],
                "corpus": datasets.Value("string"),
            }
        ),
    )


def collate_epoch(dataset: datasets.Dataset, collate: AudioCollator, batch_size: int) -> tuple[float, float]:
    """(seconds to the first batch, mean seconds per batch over the epoch)."""
    times = []
    for start in range(0, len(dataset), batch_size):
        began = time.perf_counter()
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        collate([rows[i] for i in range(len(rows))])
        times.append(time.perf_counter() - began)
    return times[0], float(np.mean(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--data_root", default=None, help="folder holding the corpus (not for synthetic)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_duration_seconds", type=float, default=4.0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    split = load_corpora([args.corpus], args.data_root, split=None)
    seconds_of_audio = float(np.sum(split["duration"]))
    extractor = SERFeatureExtractor()
    max_samples = int(args.max_duration_seconds * 16000)
    collate = AudioCollator(extractor, max_samples=max_samples, random_crop=True)
    hours = seconds_of_audio / 3600
    print(f"{args.corpus}: {len(split)} clips, {hours:.2f} h; 1 CPU thread, batch {args.batch_size}")

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        decoded = old_path(split, Path(tmp))
        old_prepare = time.perf_counter() - began
        old_bytes = folder_bytes(tmp)
        old_first, old_step = collate_epoch(
            decoded.with_format("numpy", columns=["input_values"], output_all_columns=True),
            collate,
            args.batch_size,
        )

    began = time.perf_counter()
    prepared, _ = prepare_model_inputs(
        datasets.DatasetDict({"train": split}), max_duration_seconds=args.max_duration_seconds
    )
    new_prepare = time.perf_counter() - began
    new_bytes = sum(os.path.getsize(f["filename"]) for f in prepared["train"].cache_files) - sum(
        os.path.getsize(f["filename"]) for f in split.cache_files
    )
    new_first, new_step = collate_epoch(prepared["train"], collate, args.batch_size)

    corpus_bytes = sum(os.path.getsize(f["filename"]) for f in split.cache_files)
    print(f"corpus cache (both paths read it): {corpus_bytes / 1e6:.1f} MB")
    rows = [
        ("disk written by preparation (MB)", old_bytes / 1e6, new_bytes / 1e6),
        ("preparation (s)", old_prepare, new_prepare),
        ("to the first batch, preparation included (s)", old_prepare + old_first, new_prepare + new_first),
        ("collate per batch (ms)", 1000 * old_step, 1000 * new_step),
    ]
    print(f"{'':48s} {'old: float32 cache':>20s} {'now: corpus cache':>20s} {'now / old':>10s}")
    for name, old, new in rows:
        ratio = new / old if old else float("nan")
        print(f"{name:48s} {old:20.3f} {new:20.3f} {ratio:10.3f}")


if __name__ == "__main__":
    main()
