"""Probe frozen speech encoders on cached features (the EmoBox / SUPERB protocol), fast.

1. `extract_layer_features` runs the frozen encoder once over a corpus split and stores, per utterance, every
   layer's hidden states pooled over the real frames (mean and standard deviation, float32, shape
   ``(num_layers + 1, 2 * hidden)``; why both: modeling/probe/modeling_probe.py). It keeps them as a
   `datasets` Dataset on disk under ``cache_dir/<fingerprint>``, the fingerprint covering the encoder
   (id, revision and commit, or a hash of the weight files of a local directory), the audio (a hash of
   every clip's bytes and of the label / corpus / speaker / file columns) and the settings (crop, feature
   extractor, pooling version).
   Every later run, fold and seed with the same data loads that folder and runs no encoder. Extraction is
   batched, runs on the GPU when there is one and across processes under ``accelerate launch`` (each process
   takes a share, the main one writes the cache), with a progress bar.
2. `train_probe_head` trains the head (softmax weights over layers, then an MLP) on those features: seconds on
   a CPU.
3. `build_probe` puts the head back on the encoder: a `ProbeForAudioClassification` that classifies raw audio,
   saved with its feature extractor like any model of the project.

Wiring (a few lines)::

    train_f = extract_layer_features(splits["train"], name, cache_dir=cache, max_duration_seconds=8)
    val_f = extract_layer_features(splits["validation"], name, cache_dir=cache, max_duration_seconds=8)
    head = train_probe_head(train_f, val_f, label_names)
    model, feature_extractor = build_probe(name, head, label_names, max_duration_seconds=8)
    save_for_hub(model, feature_extractor, out_dir)

Batching and exactness: for encoders whose output does not depend on padding (LayerNorm feature encoders,
Whisper) clips are sorted by length and batched. Checkpoints with a GroupNorm feature encoder
(wav2vec2-base, HuBERT-base, SEW checkpoints; `modeling.encoders`) would get features that depend on their
batch neighbours, so they run one clip per batch: slower, but the features (and so the saved probe's
predictions, which the pipeline computes one clip at a time) are exact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch

from loaders.audio import decode_clip
from loaders.schema import SAMPLING_RATE
from modeling.encoders import (
    batch_features,
    build_encoder_classifier,
    encoder_module,
    feature_extractor_for_encoder,
    is_whisper,
    load_encoder_config,
)
from modeling.probe import ProbeConfig, ProbeForAudioClassification, ProbeHead, pool_hidden_states
from modeling.probe.modeling_probe import real_frame_mask

from .data import centre_crop

logger = logging.getLogger(__name__)

# Bump when what is stored changes, so that old caches are not read as new ones.
FEATURES_VERSION = "mean+std-over-real-frames/1"
METADATA_COLUMNS = ("label", "corpus", "speaker", "file")


def load_frozen_encoder(
    encoder_name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    max_duration_seconds: float | None = None,
):
    """(encoder in eval mode, its feature extractor with the attention mask on) for extraction and probes."""
    classifier, _ = build_encoder_classifier(
        encoder_name_or_path,
        ["_"],
        revision=revision,
        freeze_encoder=True,
        max_duration_seconds=max_duration_seconds,
    )
    encoder = encoder_module(classifier).eval()
    extractor = feature_extractor_for_encoder(
        encoder_name_or_path,
        encoder.config,
        revision=revision,
        max_duration_seconds=max_duration_seconds,
        return_attention_mask=True,
    )
    return encoder, extractor


def wants_cpu(device: str | torch.device | None) -> bool:
    """Whether accelerate's state must be a CPU one: `device` says so, or several processes run without a GPU
    (`training.run.use_cpu_processes_without_gpu` sets ACCELERATE_USE_CPU; without cpu=True accelerate leaves
    every such process alone, each extracting the whole split)."""
    if device is not None and torch.device(device).type == "cpu":
        return True
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def padding_invariant(config) -> bool:
    """Whether a clip's hidden states are the same alone and padded in a batch (see modeling.encoders)."""
    if is_whisper(config):
        return True  # every clip is padded to the same window anyway
    return getattr(config, "feat_extract_norm", "layer") != "group"


def _hash_file(path: Path, digest) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def encoder_identity(encoder_name_or_path: str | os.PathLike, revision: str | None = None) -> dict:
    """What identifies the encoder's weights: a local directory by its files' hash, a Hub id by commit."""
    local = Path(encoder_name_or_path)
    if local.is_dir():
        digest = hashlib.sha256()
        for path in sorted(local.iterdir()):
            if path.is_file() and path.suffix in (".safetensors", ".bin", ".json", ".pt"):
                digest.update(path.name.encode())
                _hash_file(path, digest)
        return {"encoder": str(local.resolve()), "weights_sha256": digest.hexdigest()}
    config = load_encoder_config(encoder_name_or_path, revision=revision)
    return {
        "encoder": str(encoder_name_or_path),
        "revision": revision,
        "commit": getattr(config, "_commit_hash", None),
    }


def _audio_column_is_undecoded_audio(dataset: datasets.Dataset) -> bool:
    return isinstance(dataset.features.get("audio"), datasets.Audio)


def corpus_digest(dataset: datasets.Dataset) -> str:
    """Hash of every clip's audio and of the metadata columns, in order."""
    digest = hashlib.sha256()
    for column in METADATA_COLUMNS:
        if column in dataset.column_names:
            digest.update(json.dumps([column, dataset[column]], default=str).encode())
    if "input_values" in dataset.column_names:
        for row in dataset.with_format("numpy", columns=["input_values"]):
            digest.update(np.ascontiguousarray(row["input_values"], dtype=np.float32).tobytes())
    elif _audio_column_is_undecoded_audio(dataset):
        undecoded = dataset.cast_column("audio", datasets.Audio(sampling_rate=None, decode=False))
        for audio in undecoded["audio"]:
            if audio.get("bytes"):
                digest.update(audio["bytes"])
            else:
                _hash_file(Path(audio["path"]), digest)
    else:
        raise ValueError(
            "dataset: no 'audio' (datasets.Audio) or 'input_values' column; give a split of load_corpora"
        )
    return digest.hexdigest()


def _clips(dataset: datasets.Dataset, indices: Sequence[int], max_samples: int | None) -> list[np.ndarray]:
    if "input_values" in dataset.column_names:
        rows = dataset.select(indices).with_format("numpy", columns=["input_values"])
        return [centre_crop(np.asarray(r["input_values"], np.float32), max_samples) for r in rows]
    undecoded = dataset.cast_column("audio", datasets.Audio(sampling_rate=None, decode=False))
    return [centre_crop(decode_clip(a), max_samples) for a in undecoded.select(indices)["audio"]]


def _lengths(dataset: datasets.Dataset) -> list[float]:
    for column in ("length", "duration"):
        if column in dataset.column_names:
            return [float(v) for v in dataset[column]]
    return [0.0] * len(dataset)


def pooled_layers(
    encoder, feature_extractor, clips: Sequence[np.ndarray], device: torch.device
) -> np.ndarray:
    """(clips, layers, 2 * hidden) float32: the encoder's pooled hidden states for one batch of clips."""
    inputs = batch_features(feature_extractor, clips, SAMPLING_RATE)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    with torch.inference_mode():
        if "input_features" in inputs:
            outputs = encoder(inputs["input_features"], output_hidden_states=True)
            batch = inputs["input_features"].shape[0]
        else:
            outputs = encoder(
                inputs["input_values"], attention_mask=inputs.get("attention_mask"), output_hidden_states=True
            )
            batch = inputs["input_values"].shape[0]
        hidden_states = outputs.hidden_states
        mask = real_frame_mask(encoder, hidden_states[0].shape[1], inputs.get("attention_mask"), batch)
        return pool_hidden_states(hidden_states, mask).cpu().numpy().astype(np.float32)


def extract_layer_features(
    dataset: datasets.Dataset,
    encoder_name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    batch_size: int = 8,
    cache_dir: str | os.PathLike,
    max_duration_seconds: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> datasets.Dataset:
    """Pooled hidden states of every layer for every clip of `dataset`, cached (see the module docstring).

    Returns a Dataset in the order of `dataset` with the columns `label`, `corpus`, `speaker`, `file` (those
    present in `dataset`) and `features` (float32, ``(num_layers + 1, 2 * hidden)``: per layer, the mean over
    real frames followed by the standard deviation). `max_duration_seconds` crops each clip to its middle
    that long before extraction (and builds Whisper for that window).
    """
    features, _ = load_or_extract_layer_features(
        dataset,
        encoder_name_or_path,
        revision=revision,
        batch_size=batch_size,
        cache_dir=cache_dir,
        max_duration_seconds=max_duration_seconds,
        device=device,
        progress=progress,
    )
    return features


def load_or_extract_layer_features(
    dataset: datasets.Dataset,
    encoder_name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    batch_size: int = 8,
    cache_dir: str | os.PathLike,
    max_duration_seconds: float | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[datasets.Dataset, int]:
    """`extract_layer_features` and how many clips this call ran through the encoder (0: all from the cache;
    under accelerate, the whole split when any process extracted)."""
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size: {batch_size} is not positive; give e.g. 8")
    settings = {
        "version": FEATURES_VERSION,
        "max_duration_seconds": max_duration_seconds,
        "sampling_rate": SAMPLING_RATE,
        **encoder_identity(encoder_name_or_path, revision),
        "corpus": corpus_digest(dataset),
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:32]
    target = Path(cache_dir) / f"layer-features-{fingerprint}"
    if (target / "dataset_info.json").is_file():
        logger.info("layer features: reusing %s", target)
        return datasets.load_from_disk(str(target)), 0

    state = PartialState(cpu=wants_cpu(device))
    device = torch.device(device) if device is not None else state.device
    started = time.perf_counter()
    encoder, extractor = load_frozen_encoder(
        encoder_name_or_path, revision=revision, max_duration_seconds=max_duration_seconds
    )
    encoder.to(device)
    if not padding_invariant(encoder.config):
        logger.info(
            "layer features: %s has a GroupNorm feature encoder; one clip per batch so padding cannot leak",
            encoder.config.model_type,
        )
        batch_size = 1
    # Longest first: little padding per batch, and an out-of-memory error shows at once.
    lengths = _lengths(dataset)
    order = sorted(range(len(dataset)), key=lambda i: -lengths[i])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    max_samples = None if max_duration_seconds is None else int(round(max_duration_seconds * SAMPLING_RATE))
    results: list[tuple[int, np.ndarray]] = []
    with state.split_between_processes(batches) as my_batches:
        bar = tqdm(
            my_batches, desc="layer features", unit="batch", disable=not (progress and state.is_main_process)
        )
        for indices in bar:
            features = pooled_layers(encoder, extractor, _clips(dataset, indices, max_samples), device)
            results.extend(zip(indices, features, strict=True))
    if state.num_processes > 1:
        logger.info(
            "layer features: process %d of %d encoded %d clips",
            state.process_index,
            state.num_processes,
            len(results),
        )
        results = gather_object(results)
    if state.is_main_process:
        by_index = dict(results)
        columns = {c: dataset[c] for c in METADATA_COLUMNS if c in dataset.column_names}
        stacked = (
            np.stack([by_index[i] for i in range(len(dataset))]) if len(dataset) else np.zeros((0, 1, 1))
        )
        features = datasets.Features(
            {
                **{c: dataset.features[c] for c in columns},
                "features": datasets.Array2D(shape=stacked.shape[1:], dtype="float32"),
            }
        )
        table = datasets.Dataset.from_dict({**columns, "features": stacked}, features=features)
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        table.save_to_disk(str(partial))
        (partial / "extraction.json").write_text(json.dumps(settings, indent=2))
        if target.exists():  # another run finished first: same fingerprint, same content
            shutil.rmtree(partial)
        else:
            partial.rename(target)
        logger.info(
            "layer features: %d clips in %.1f s -> %s", len(dataset), time.perf_counter() - started, target
        )
    state.wait_for_everyone()
    return datasets.load_from_disk(str(target)), len(dataset)


def _macro_recall(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    recalls = [(predictions[labels == c] == c).mean() for c in range(num_classes) if (labels == c).any()]
    return float(np.mean(recalls)) if recalls else 0.0


def train_probe_head(
    train_features: datasets.Dataset,
    val_features: datasets.Dataset | None,
    label_names: Sequence[str],
    *,
    pooling: str = "mean+std",
    hidden_size: int = 256,
    dropout: float = 0.1,
    epochs: int = 100,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-2,
    patience: int = 20,
    seed: int = 0,
) -> ProbeHead:
    """Train a `ProbeHead` on cached features; keeps the epoch with the best validation unweighted recall.

    Full tensors in memory (a corpus of 10k clips x 25 layers x 2048 floats is 2 GB; the head is tiny), AdamW,
    early stopping after `patience` epochs without improvement. The returned head (eval mode) carries
    `history` (per-epoch train loss and validation UAR).
    """
    label_names = list(label_names)
    torch.manual_seed(seed)
    x = torch.from_numpy(np.asarray(train_features.with_format("numpy")["features"], dtype=np.float32))
    y = torch.as_tensor(np.asarray(train_features["label"]), dtype=torch.long)
    if len(x) == 0:
        raise ValueError("train_features: no clips; extract features of a non-empty training split")
    head = ProbeHead(
        x.shape[1], x.shape[2], len(label_names), pooling=pooling, hidden_size=hidden_size, dropout=dropout
    )
    head.set_standardisation(x)
    if val_features is not None and len(val_features):
        val_x = torch.from_numpy(np.asarray(val_features.with_format("numpy")["features"], dtype=np.float32))
        val_y = np.asarray(val_features["label"])
    else:
        val_x, val_y = None, None
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best_score, best_state, since_best = -1.0, None, 0
    head.history = []
    for epoch in range(epochs):
        head.train()
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = torch.nn.functional.cross_entropy(head(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        record = {"epoch": epoch + 1, "train_loss": total / len(x)}
        if val_x is not None:
            head.eval()
            with torch.no_grad():
                predictions = head(val_x).argmax(-1).numpy()
            record["val_uar"] = _macro_recall(predictions, val_y, len(label_names))
            if record["val_uar"] > best_score:
                best_score, since_best = record["val_uar"], 0
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            else:
                since_best += 1
        head.history.append(record)
        if val_x is not None and since_best >= patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    head.hidden_size, head.dropout = hidden_size, dropout
    return head.eval()


def build_probe(
    encoder_name_or_path: str | os.PathLike,
    head: ProbeHead,
    label_names: Sequence[str],
    *,
    revision: str | None = None,
    max_duration_seconds: float | None = None,
):
    """(ProbeForAudioClassification, feature extractor): the encoder with the trained head, ready to save.

    The probe classifies whole clips; its logits equal the head's on the cached features for clips no longer
    than the extraction's `max_duration_seconds` (longer ones were cached as their middle part).
    """
    label_names = list(label_names)
    encoder, extractor = load_frozen_encoder(
        encoder_name_or_path, revision=revision, max_duration_seconds=max_duration_seconds
    )
    config = ProbeConfig(
        encoder_config=encoder.config.to_dict(),
        encoder_name_or_path=str(encoder_name_or_path),
        num_feature_layers=head.layer_logits.numel(),
        pooling=head.pooling,
        head_hidden_size=getattr(head, "hidden_size", head.mlp[1].out_features),
        head_dropout=getattr(head, "dropout", 0.1),
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    model = ProbeForAudioClassification(config)
    model.encoder.load_state_dict(encoder.state_dict())
    model.head.load_state_dict(head.state_dict())
    return model.eval(), extractor
