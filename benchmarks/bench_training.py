"""Training throughput (samples/s) of the three models on this machine's CPU.

    .venv/bin/python benchmarks/bench_training.py [--steps 3] [--batch_size 16] [--seconds 4]

Each model takes optimisation steps (forward, backward, AdamW with the project's parameter groups) on a batch
of random 4 s clips at 16 kHz with default model sizes; the first step is a warm-up and is not timed. The
collator's cost (crop, normalise, pad a batch; and with speed perturbation, which resamples every clip) is
measured too, to show that the data path is not the limit.

Baseline of the original project: its Wav2Vec2 notebook fine-tuned wav2vec2-base at batch size 1 and reached
about 5 samples/s on an NVIDIA A40. The same model (random weights, same size) is measured here at batch 1 and
at batch 16 in the same run, so the ratio says what batching alone buys on this hardware.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from modeling.auto import feature_extractor_for  # noqa: E402
from modeling.optimization import ssm_parameter_groups  # noqa: E402
from training.data import AudioCollator  # noqa: E402
from training.run_config import build_model  # noqa: E402

LABELS = ["anger", "happy", "neutral", "sadness"]


def make_model(kind: str):
    if kind == "wav2vec2-base":
        from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

        config = Wav2Vec2Config(num_labels=len(LABELS))  # the defaults are wav2vec2-base's sizes (95 M)
        model = Wav2Vec2ForSequenceClassification(config)
        model.freeze_feature_encoder()  # as the original recipe and run_train.py's default
        return model
    model, _ = build_model(kind, None, LABELS, {})
    return model


def samples_per_second(model, batch_size: int, seconds: float, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(ssm_parameter_groups(model, weight_decay=0.01), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch_size, int(seconds * 16000), generator=generator) * 0.1
    mask = torch.ones_like(inputs, dtype=torch.long)
    labels = torch.randint(0, len(LABELS), (batch_size,), generator=generator)

    def step():
        loss = model(input_values=inputs, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocations, kernel choice
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch_size * steps / (time.perf_counter() - start)


def collator_samples_per_second(
    batch_size: int, seconds: float, repeats: int = 20, speed_factors: list[float] | None = None
) -> float:
    model = make_model("cnn")
    collator = AudioCollator(
        feature_extractor_for(model), max_samples=int(seconds * 16000), speed_factors=speed_factors
    )
    rng = np.random.default_rng(0)
    features = [
        {
            "input_values": rng.standard_normal(int(rng.uniform(2, 6) * 16000)).astype(np.float32) * 0.1,
            "label": 0,
        }
        for _ in range(batch_size)
    ]
    collator(features)
    start = time.perf_counter()
    for _ in range(repeats):
        collator(features)
    return batch_size * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"CPU training throughput, batch {args.batch_size} x {args.seconds:g} s clips, {args.steps} timed "
        f"steps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'model':<16}{'params':>12}{'batch':>7}{'samples/s':>12}")
    results = {}
    for kind in ("cnn", "s4", "wav2vec2-base"):
        model = make_model(kind)
        params = sum(p.numel() for p in model.parameters())
        batches = (1, args.batch_size) if kind == "wav2vec2-base" else (args.batch_size,)
        for batch in batches:
            # wav2vec2-base is ~100x the CNN's compute: fewer timed steps keep the run to minutes on a laptop.
            steps = args.steps if kind != "wav2vec2-base" else (1 if batch > 1 else 3)
            rate = samples_per_second(model, batch, args.seconds, steps)
            results[kind, batch] = rate
            print(f"{kind:<16}{params:>12,}{batch:>7}{rate:>12.2f}", flush=True)
    collate = collator_samples_per_second(args.batch_size, args.seconds)
    print(
        f"{'collator':<16}{'':>12}{args.batch_size:>7}{collate:>12.0f}   (crop + normalise + pad, no model)"
    )
    # Factors 0.9 and 1.1 only, so every clip is resampled (with 1.0 in the set a third would not be).
    perturbed = collator_samples_per_second(args.batch_size, args.seconds, speed_factors=[0.9, 1.1])
    print(
        f"{'collator+speed':<16}{'':>12}{args.batch_size:>7}{perturbed:>12.0f}   (speed perturbation too: "
        f"{perturbed / collate:.2f}x the plain collator's samples/s)"
    )
    w1, w16 = results["wav2vec2-base", 1], results["wav2vec2-base", args.batch_size]
    print()
    print(
        f"wav2vec2-base: batch {args.batch_size} trains {w16 / w1:.2f}x the samples/s of batch 1 on this CPU."
    )
    print("Original project's recipe: batch 1, about 5 samples/s on an A40 GPU (not measurable here).")
    print(
        f"CNN vs wav2vec2-base at batch {args.batch_size}: {results['cnn', args.batch_size] / w16:.1f}x, "
        f"S4 vs wav2vec2-base: {results['s4', args.batch_size] / w16:.1f}x the samples/s."
    )


if __name__ == "__main__":
    main()
