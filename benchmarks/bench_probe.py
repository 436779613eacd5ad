"""Probing on cached features against fine-tuning: time per epoch, same encoder, same data.

    .venv/bin/python benchmarks/bench_probe.py [--size small|tiny|base] [--clips 64] [--seconds 3]
                                               [--batch_size 8] [--probe_epochs 50] [--device cuda]

One random wav2vec2 encoder (sizes: tiny = the tests' 2 x 32, small = 4 x 256, base = wav2vec2-base's
12 x 768, 95 M parameters), saved as a checkpoint, and `--clips` random tone-and-noise clips of `--seconds` s
over four classes. Measured:

* extraction, once: `extract_layer_features` (batched, all layers pooled) into a fresh cache, then the same
  call again (a cache hit: what every later run, fold and seed pays);
* a probe epoch: `train_probe_head` on the cached features (mean over `--probe_epochs` epochs);
* a fine-tuning epoch: the same encoder as `Wav2Vec2ForSequenceClassification` (feature encoder frozen, as
  run_train.py's default), AdamW, forward + backward + step over every clip in batches of `--batch_size`
  (one warm-up step not timed).

It runs on the GPU when there is one (or `--device`), else on the CPU, and says which.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import datasets
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from training.encoder_features import (  # noqa: E402
    load_or_extract_layer_features,
    train_probe_head,
)

LABELS = ["anger", "happy", "neutral", "sadness"]
SR = 16000
SIZES = {
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    ),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": {},  # Wav2Vec2Config's defaults are wav2vec2-base's sizes
}


def save_encoder(size: str, path: str) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    # LayerNorm feature encoder (as wav2vec2-large / WavLM / HuBERT-large): extraction batches clips.
    config = Wav2Vec2Config(
        **SIZES[size], feat_extract_norm="layer", do_stable_layer_norm=True, layerdrop=0.0, mask_time_prob=0.0
    )
    Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(path)


def make_clips(count: int, seconds: float) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    clips, labels = [], []
    for i in range(count):
        label = i % len(LABELS)
        pitch = 150.0 * (1 + label) * rng.uniform(0.9, 1.1)
        clip = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.05 * rng.standard_normal(t.size)
        clips.append(clip.astype(np.float32))
        labels.append(label)
    return clips, labels


def fine_tuning_epoch_seconds(
    encoder_dir: str, clips, labels, batch_size: int, device: torch.device
) -> float:
    from transformers import AutoFeatureExtractor, Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification.from_pretrained(encoder_dir, num_labels=len(LABELS)).to(device)
    model.freeze_feature_encoder()
    model.train()
    extractor = AutoFeatureExtractor.from_pretrained(encoder_dir)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batches = []
    for start in range(0, len(clips), batch_size):
        inputs = extractor(
            clips[start : start + batch_size], sampling_rate=SR, return_tensors="pt", padding=True
        )
        inputs = {k: v.to(device) for k, v in inputs.items()}
        inputs["labels"] = torch.tensor(labels[start : start + batch_size], device=device)
        batches.append(inputs)

    def step(inputs):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up: allocations, kernel choice
    synchronise(device)
    start = time.perf_counter()
    for inputs in batches:
        step(inputs)
    synchronise(device)
    return time.perf_counter() - start


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--probe_epochs", type=int, default=50)
    parser.add_argument("--device", default=None, help="default: cuda when there is a GPU, else cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(f"device: {where}; encoder: random wav2vec2 ({args.size}); {args.clips} clips of {args.seconds} s")

    clips, labels = make_clips(args.clips, args.seconds)
    data = datasets.Dataset.from_dict(
        {"input_values": clips, "label": labels, "corpus": ["bench"] * len(clips)},
        features=datasets.Features(
            {
                "input_values": datasets.Sequence(datasets.Value("float32")),
                "label": datasets.ClassLabel(names=LABELS),
                "corpus": datasets.Value("string"),
            }
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        encoder_dir = os.path.join(tmp, "encoder")
        save_encoder(args.size, encoder_dir)
        settings = dict(
            cache_dir=os.path.join(tmp, "cache"), batch_size=args.batch_size, device=device, progress=False
        )
        start = time.perf_counter()
        features, extracted = load_or_extract_layer_features(data, encoder_dir, **settings)
        extraction = time.perf_counter() - start
        start = time.perf_counter()
        _, again = load_or_extract_layer_features(data, encoder_dir, **settings)
        cache_hit = time.perf_counter() - start
        assert extracted == len(data) and again == 0
        shape = np.asarray(features[0]["features"]).shape

        start = time.perf_counter()
        head = train_probe_head(features, None, LABELS, epochs=args.probe_epochs, hidden_size=256)
        probe_epoch = (time.perf_counter() - start) / len(head.history)

        fine_tuning_epoch = fine_tuning_epoch_seconds(encoder_dir, clips, labels, args.batch_size, device)

    print(f"extraction, once:        {extraction:8.2f} s ({len(data)} clips -> features {shape}, float32)")
    print(f"extraction, cached:      {cache_hit:8.2f} s (the same call again: fingerprint and load)")
    print(f"probe epoch (head):      {probe_epoch * 1000:8.2f} ms (CPU; mean of {len(head.history)} epochs)")
    print(f"fine-tuning epoch:       {fine_tuning_epoch:8.2f} s ({device.type})")
    print(f"ratio fine-tuning / probe epoch: {fine_tuning_epoch / probe_epoch:,.0f}x")
    print(
        f"ratio fine-tuning epoch / (extraction once): {fine_tuning_epoch / extraction:.2f} "
        "(extraction costs about one forward-only pass)"
    )


if __name__ == "__main__":
    main()
