"""Streaming S4 cost: milliseconds per 20 ms chunk and real-time factor, on one CPU thread, against
offline (convolutional) processing of the same clip in the same run.

    python benchmarks/bench_streaming.py [--seconds 10] [--chunk_ms 20] [--d_model 128] [--n_layers 4]
        [--pooling attention|mean|mean_std]

The model is the S4 that `run_train.py --streaming` trains (`training.run_config.streaming_overrides`:
causal layers and mel normalisation, no functionals heads), at the sizes given, with random weights: cost
does not depend on the weights. Real-time factor = compute time / audio time (below 1 keeps up with a live
stream).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.streaming import StreamingClassifier  # noqa: E402
from modeling import S4Config, S4ForAudioClassification  # noqa: E402
from training.run_config import streaming_overrides  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--chunk_ms", type=float, default=20.0)
    parser.add_argument("--d_model", type=int, default=128)
    parser.add_argument("--n_layers", type=int, default=4)
    parser.add_argument("--d_state", type=int, default=64)
    parser.add_argument("--kernel", default="s4d", choices=["s4d", "s4"])
    parser.add_argument("--pooling", default=S4Config().pooling, choices=["attention", "mean", "mean_std"])
    parser.add_argument("--repeats", type=int, default=3, help="offline runs (best of)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sizes = {
        "d_model": args.d_model,
        "n_layers": args.n_layers,
        "d_state": args.d_state,
        "kernel": args.kernel,
    }
    config = S4Config(**streaming_overrides({**sizes, "pooling": args.pooling}, None), num_labels=4)
    model = S4ForAudioClassification(config).eval()
    rate = config.sampling_rate
    clip = (0.1 * np.random.default_rng(0).standard_normal(round(args.seconds * rate))).astype(np.float32)
    chunk = round(args.chunk_ms / 1000 * rate)

    streamer = StreamingClassifier(model)
    streamer.push(clip[: 4 * chunk])  # warm-up
    streamer.reset()
    per_chunk = []
    for start in range(0, clip.size, chunk):
        began = time.perf_counter()
        streamer.push(clip[start : start + chunk])
        per_chunk.append(time.perf_counter() - began)
    stream_total = sum(per_chunk)

    inputs = torch.from_numpy(clip)[None]
    with torch.inference_mode():
        offline_logits = model(inputs).logits[0]
        offline = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            model(inputs)
            offline.append(time.perf_counter() - began)
    offline_best = min(offline)
    agreement = float(np.abs(streamer.logits() - offline_logits.numpy()).max())

    per_chunk_ms = np.array(per_chunk) * 1000
    print(
        f"S4 ({args.kernel}, d_model={args.d_model}, n_layers={args.n_layers}, d_state={args.d_state}), "
        f"{args.seconds:g} s clip, {args.chunk_ms:g} ms chunks, 1 thread"
    )
    print(
        f"streaming: {statistics.mean(per_chunk_ms):.3f} ms per chunk (median {np.median(per_chunk_ms):.3f}, "
        f"p95 {np.percentile(per_chunk_ms, 95):.3f}, max {per_chunk_ms.max():.3f}); "
        f"real-time factor {stream_total / args.seconds:.4f}"
    )
    print(
        f"offline:   {offline_best * 1000:.1f} ms for the clip; "
        f"real-time factor {offline_best / args.seconds:.4f}"
    )
    print(
        f"streaming total / offline: {stream_total / offline_best:.1f}x "
        f"(streaming pays per frame, but answers every {args.chunk_ms:g} ms)"
    )
    print(f"final streamed vs offline logits: max |difference| {agreement:.2e}")


if __name__ == "__main__":
    main()
