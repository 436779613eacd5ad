"""Inference time of the S4 at the network sizes the fifty-third round tried, against its defaults measured in
the same run: median and best milliseconds per 3 s clip, batch 1, one thread, random weights, the sizes'
calls interleaved so that the machine's drift touches each alike.

    OMP_NUM_THREADS=1 python benchmarks/results/dev-speaker-cv/s4-network/time_network_sizes.py [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from modeling import S4Config, S4ForAudioClassification  # noqa: E402

SIZES = ((64, 2), (128, 2), (64, 4), (128, 4))  # (d_model, n_layers); the first is the defaults'
WARM_UP = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per size, after the warm-up")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    clip = torch.randn(1, 48000) * 0.1
    models = {
        size: S4ForAudioClassification(S4Config(d_model=size[0], n_layers=size[1], num_labels=4)).eval()
        for size in SIZES
    }
    seconds: dict[tuple[int, int], list[float]] = {size: [] for size in SIZES}
    with torch.inference_mode():
        for call in range(WARM_UP + args.calls):
            for size, model in models.items():
                start = time.perf_counter()
                model(input_values=clip)
                if call >= WARM_UP:
                    seconds[size].append(time.perf_counter() - start)
    baseline = statistics.median(seconds[SIZES[0]])
    for (width, layers), times in seconds.items():
        median = statistics.median(times)
        print(
            f"d_model {width:3} x {layers} layers: median {1e3 * median:.2f} ms, "
            f"best {1e3 * min(times):.2f} ms per 3 s clip; {median / baseline:.2f}x the defaults' median"
        )


if __name__ == "__main__":
    main()
