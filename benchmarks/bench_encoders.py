"""Fine-tuning a speech encoder: the project's data path against transformers' example, and what gradient
checkpointing saves.

    .venv/bin/python benchmarks/bench_encoders.py [--clips 64] [--epochs 2] [--skip_memory]

(a) Whisper's window: one forward of a whisper-base-sized random encoder (6 layers of 512) on a 4 s clip,
    as transformers builds it (padded to 30 s) and as `modeling.encoders` builds it for
    ``max_duration_seconds=4`` (positional table cut to 4 s); the ratio of the times.
(b) Throughput. The same tiny random encoder (HuBERT-shaped, 2 layers of 32), the same clips (random 3-6 s
    WAV files at 16 kHz), batch size and 2 s random crops, trained for the same epochs in this one run, two
    ways:
    * transformers' `examples/pytorch/audio-classification/run_audio_classification.py` data path: a
      `datasets` `Audio(sampling_rate=16000)` column, decoded (and resampled) in a `set_transform` at every
      step, randomly cropped there (its `random_subsample`), the feature extractor applied per batch, and
      the Trainer's default `DataCollatorWithPadding`;
    * the project's: `training.data.prepare_model_inputs` decodes every clip once into Arrow (its time is
      reported separately, and it is cached across runs), then `AudioCollator` crops and pads.
    Both run the same plain loop (forward, backward, AdamW), data loading in the main process as
    run_train.py's default. The ratio is of samples per second, end to end.
(c) Peak memory of wav2vec2-base (random weights of its size, 95 M, no download) for one training step at
    batch 8 x 6 s, feature encoder frozen, with and without gradient checkpointing: each in a fresh
    process, the peak resident memory (ru_maxrss) minus the memory after building the model and batch.
    On the CPU here; GPU figures (torch.cuda.max_memory_allocated) differ in size, not in direction.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = ["anger", "sadness"]
SR = 16000
CROP_SECONDS = 2.0


def tiny_checkpoint(path: Path) -> Path:
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        layerdrop=0.0,
        mask_time_prob=0.0,
        classifier_proj_size=16,
    )
    HubertModel(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(path)
    return path


def write_clips(folder: Path, count: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(count):
        label = i % 2
        n = int(rng.uniform(3.0, 6.0) * SR)
        t = np.arange(n) / SR
        clip = 0.3 * np.sin(2 * np.pi * (220 if label == 0 else 880) * t) + 0.05 * rng.standard_normal(n)
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, clip.astype(np.float32), SR)
        paths.append(str(path))
        labels.append(label)
    return paths, labels


def train_loop(model, loader, epochs: int) -> tuple[float, int]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(batch["labels"])
    return time.perf_counter() - start, seen


def hf_example_loader(paths, labels, feature_extractor, batch_size: int):
    """run_audio_classification.py's data path (its train_transforms and random_subsample)."""
    import datasets
    from transformers import DataCollatorWithPadding

    ds = datasets.Dataset.from_dict({"audio": paths, "label": labels}).cast_column(
        "audio", datasets.Audio(sampling_rate=feature_extractor.sampling_rate)
    )

    def random_subsample(wav, max_length, sample_rate=16000):
        sample_length = int(round(sample_rate * max_length))
        if len(wav) <= sample_length:
            return wav
        random_offset = np.random.randint(0, len(wav) - sample_length - 1)
        return wav[random_offset : random_offset + sample_length]

    def train_transforms(batch):
        subsampled = [
            random_subsample(
                audio["array"], max_length=CROP_SECONDS, sample_rate=feature_extractor.sampling_rate
            )
            for audio in batch["audio"]
        ]
        inputs = feature_extractor(subsampled, sampling_rate=feature_extractor.sampling_rate)
        return {"input_values": inputs["input_values"], "labels": list(batch["label"])}

    ds.set_transform(train_transforms, output_all_columns=False)
    collator = DataCollatorWithPadding(feature_extractor)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, collate_fn=collator)


def project_loader(paths, labels, feature_extractor, batch_size: int):
    import datasets

    from training.data import AudioCollator, prepare_model_inputs

    ds = datasets.Dataset.from_dict(
        {"audio": paths, "label": labels, "corpus": ["bench"] * len(paths)},
        features=datasets.Features(
            {
                "audio": datasets.Audio(),
                "label": datasets.ClassLabel(names=LABELS),
                "corpus": datasets.Value("string"),
            }
        ),
    )
    start = time.perf_counter()
    prepared, _ = prepare_model_inputs(datasets.DatasetDict({"train": ds}), max_duration_seconds=CROP_SECONDS)
    decode_seconds = time.perf_counter() - start
    collator = AudioCollator(feature_extractor, max_samples=int(CROP_SECONDS * SR), random_crop=True)
    loader = torch.utils.data.DataLoader(
        prepared["train"], batch_size=batch_size, shuffle=True, collate_fn=collator
    )
    return loader, decode_seconds


def data_only(loader, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        for _batch in loader:
            pass
    return time.perf_counter() - start


def bench_throughput(clips: int, epochs: int, batch_size: int) -> dict:
    from modeling.encoders import build_encoder_classifier

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = tiny_checkpoint(tmp / "ckpt")
        (tmp / "wav").mkdir()
        paths, labels = write_clips(tmp / "wav", clips)
        result = {}
        for name in ("hf_example", "project"):
            torch.manual_seed(0)
            np.random.seed(0)
            model, feature_extractor = build_encoder_classifier(checkpoint, LABELS)
            if name == "hf_example":
                loader, decode = hf_example_loader(paths, labels, feature_extractor, batch_size), 0.0
            else:
                loader, decode = project_loader(paths, labels, feature_extractor, batch_size)
            seconds, seen = train_loop(model, loader, epochs)
            result[name] = {
                "train_samples_per_s": round(seen / seconds, 1),
                "data_only_samples_per_s": round(epochs * clips / data_only(loader, epochs), 1),
                "one_time_decode_s": round(decode, 2),
                "train_samples_per_s_with_decode": round(seen / (seconds + decode), 1),
            }
        result["ratio_train"] = round(
            result["project"]["train_samples_per_s"] / result["hf_example"]["train_samples_per_s"], 2
        )
        result["ratio_train_with_decode"] = round(
            result["project"]["train_samples_per_s_with_decode"]
            / result["hf_example"]["train_samples_per_s"],
            2,
        )
        result["ratio_data_only"] = round(
            result["project"]["data_only_samples_per_s"] / result["hf_example"]["data_only_samples_per_s"], 2
        )
        return result


def bench_whisper_window(seconds: int = 4, repeats: int = 3) -> dict:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForAudioClassification

    from modeling.encoders import crop_whisper_positions

    config = WhisperConfig(
        d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048, num_labels=4
    )
    torch.manual_seed(0)
    clip = (np.random.default_rng(0).standard_normal(seconds * SR) * 0.1).astype(np.float32)
    out = {}
    for name, chunk in (("30s_window", 30), (f"{seconds}s_window", seconds)):
        model = WhisperForAudioClassification(config).eval()
        if chunk != 30:
            crop_whisper_positions(model, chunk)
        features = WhisperFeatureExtractor(chunk_length=chunk)(clip, sampling_rate=SR, return_tensors="pt")
        with torch.no_grad():
            model(**features)  # warm-up
            start = time.perf_counter()
            for _ in range(repeats):
                model(**features)
        out[name] = round((time.perf_counter() - start) / repeats, 3)
    out["speedup"] = round(out["30s_window"] / out[f"{seconds}s_window"], 1)
    return out


def memory_step(checkpointing: bool, batch: int, seconds: float) -> dict:
    """One training step of wav2vec2-base in this process; the peak resident memory it adds."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    model = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(num_labels=4))  # wav2vec2-base's sizes
    model.freeze_feature_encoder()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    inputs = torch.randn(batch, int(seconds * SR)) * 0.1
    labels = torch.zeros(batch, dtype=torch.long)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    loss = model(input_values=inputs, labels=labels).loss
    loss.backward()
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "step_added_mib": round((peak - base) / 1024),
        "peak_rss_mib": round(peak / 1024),
        "step_s": round(elapsed, 1),
    }


def bench_memory(batch: int, seconds: float) -> dict:
    out = {}
    for checkpointing in (False, True):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--_memory_child",
                str(int(checkpointing)),
                "--batch_size",
                str(batch),
                "--memory_seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        out["gradient_checkpointing" if checkpointing else "plain"] = json.loads(
            proc.stdout.strip().splitlines()[-1]
        )
    out["saved_fraction"] = round(
        1 - out["gradient_checkpointing"]["step_added_mib"] / out["plain"]["step_added_mib"], 2
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--memory_seconds", type=float, default=6.0)
    parser.add_argument("--skip_memory", action="store_true")
    parser.add_argument("--_memory_child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child is not None:
        print(json.dumps(memory_step(bool(args._memory_child), args.batch_size, args.memory_seconds)))
        return
    report = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "whisper_window_forward_s": bench_whisper_window(),
        "throughput": bench_throughput(args.clips, args.epochs, args.batch_size),
    }
    print(json.dumps(report, indent=2), flush=True)
    if not args.skip_memory:
        report["memory_wav2vec2_base"] = bench_memory(args.batch_size, args.memory_seconds)
        print(json.dumps(report["memory_wav2vec2_base"], indent=2))


if __name__ == "__main__":
    main()
