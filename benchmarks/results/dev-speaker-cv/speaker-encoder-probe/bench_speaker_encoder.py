"""Time per 3 s clip on one thread: Resemblyzer's GE2E speaker encoder against the S4's and the CNN's
defaults, in the same run (`benchmarks/bench_models.py`'s timing of the models).

    python benchmarks/results/dev-speaker-cv/speaker-encoder-probe/bench_speaker_encoder.py [--repeats 100]

Needs Resemblyzer beside the project (see speaker_encoder_probe.py). The encoder is timed as the probe calls
it: `embed_utterance` on the clip (its mel spectrogram and the LSTM over its 1.6 s partials).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "benchmarks"))

from bench_models import SR, build, inference_ms  # noqa: E402


def encoder_ms(repeats: int) -> tuple[float, float]:
    from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder("cpu", verbose=False)
    clip = (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)
    times = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        encoder.embed_utterance(clip)
        if i >= 3:  # warm-up calls excluded
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [("ge2e speaker encoder (Resemblyzer 0.1.4)", *encoder_ms(args.repeats))]
    for name in ("s4", "cnn"):
        median, best, _ = inference_ms(build(name, Path(".")), args.repeats)
        rows.append((f"{name} (defaults)", median, best))
    print("| model | ms per 3 s clip (median) | best | median vs the S4 |")
    print("|---|---|---|---|")
    for name, median, best in rows:
        print(f"| {name} | {median:.2f} | {best:.2f} | {median / rows[1][1]:.2f}x |")


if __name__ == "__main__":
    main()
