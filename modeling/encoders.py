"""Fine-tune any pre-trained speech encoder that `AutoModelForAudioClassification` can load.

wav2vec2 / XLS-R, HuBERT, WavLM, data2vec-audio, UniSpeech-SAT, SEW, Whisper (`WhisperForAudioClassification`,
the encoder only) and whatever transformers adds later: the family is read from the checkpoint's config.json
(`encoder_kind`), and every family-specific step below has a generic fallback.

What is saved with the model is transformers' own classes only: the family's model class and its own feature
extractor (`Wav2Vec2FeatureExtractor` or `WhisperFeatureExtractor`), so a saved directory works with
``pipeline("audio-classification", model=dir)`` in a Python without this project and without
`trust_remote_code`. The price is the project's `SERFeatureExtractor` input checks (empty, stereo, too short,
wrong rate), which need remote code; the pipeline still refuses stereo and resamples by itself.

Feature extractor per family:

* a checkpoint with a preprocessor_config.json keeps its extractor (its `do_normalize` is what the encoder was
  pre-trained with: True for wav2vec2-base and XLS-R, False for WavLM-base-plus, ...), with
  ``return_attention_mask=True`` forced for the waveform families, as `modeling.wav2vec2` does, so that the
  classifier pools over real frames only;
* a checkpoint without one (a bare pre-trained body) gets
  ``Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True)``, or for Whisper a
  `WhisperFeatureExtractor` with the config's number of mel bins.

Whisper's extractor pads (and truncates) every clip to `chunk_length` = 30 s and its encoder refuses any other
length, so a 3 s clip costs 30 s of encoder. With ``max_duration_seconds=d`` the classifier is built for
``ceil(d)`` seconds instead: the encoder's sinusoidal positional table is cut to the first ``50 * ceil(d)``
rows (`max_source_positions`, one position per 20 ms) and the saved extractor gets ``chunk_length=ceil(d)``.
Both are plain config values, so the saved pair stays self-consistent for `pipeline()` anywhere; the encoder
then costs about ``ceil(d) / 30`` of the 30 s version (measured in benchmarks/bench_encoders.py). Longer clips
are truncated to that length by the extractor, as Whisper truncates at 30 s.

Padding contract (batched vs alone, 1e-4, tests/test_encoders.py):

* wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech-SAT, SEW with a LayerNorm feature encoder
  (``feat_extract_norm="layer"``): padding never changes a prediction (attention mask + masked mean pooling);
* the same families with ``feat_extract_norm="group"`` (wav2vec2-base, HuBERT-base, the SEW checkpoints): the
  GroupNorm over time sees the padding; see `modeling.wav2vec2` for what this means (the pipeline classifies
  one clip at a time and is unaffected). data2vec-audio always uses LayerNorm;
* Whisper: every clip is padded to the same `chunk_length` alone or in a batch, so batching never changes a
  prediction; but the classifier's mean pooling runs over the whole chunk, silence included (transformers'
  `WhisperForAudioClassification` takes no attention mask), which is one more reason to crop the chunk.

Options: `freeze_feature_encoder` (the convolutional waveform front-end; Whisper's two input convolutions),
`freeze_encoder` (everything but the head: a linear probe; for a fast probe on cached features see
`modeling.probe`), `use_weighted_layer_sum` (SUPERB-style softmax weights over all hidden layers),
`gradient_checkpointing`, `parameter_groups` (a separate learning rate for the head) and
`mixed_precision_arguments` (bf16 on GPUs that have it, else fp16; nothing on CPU).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    FeatureExtractionMixin,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2FeatureExtractor,
    WhisperFeatureExtractor,
)

logger = logging.getLogger(__name__)

# Whisper: 100 mel frames per second, halved by the encoder's second (stride-2) convolution.
WHISPER_POSITIONS_PER_SECOND = 50


def _local_dir(model_name_or_path: str | Path) -> Path | None:
    path = Path(model_name_or_path)
    return path if path.is_dir() else None


def load_encoder_config(model_name_or_path: str | Path, *, revision: str | None = None) -> PretrainedConfig:
    """The checkpoint's config (local directory: read from disk, no network), with a one-line error."""
    local = _local_dir(model_name_or_path)
    if local is not None and not (local / "config.json").is_file():
        raise ValueError(
            f"{model_name_or_path}: the directory has no config.json; give a checkpoint directory saved with "
            "save_pretrained or a Hub id"
        )
    return AutoConfig.from_pretrained(str(model_name_or_path), revision=revision)


def encoder_kind(model_name_or_path: str | Path, *, revision: str | None = None) -> str:
    """The checkpoint's `model_type` ("wav2vec2", "hubert", "whisper", ...), read from its config.json."""
    local = _local_dir(model_name_or_path)
    if local is not None and (local / "config.json").is_file():
        # Read the field directly: no Auto class lookup, so an unknown (newer) model type still answers.
        model_type = json.loads((local / "config.json").read_text()).get("model_type")
        if not model_type:
            raise ValueError(f"{local / 'config.json'}: no model_type; is this a transformers checkpoint?")
        return str(model_type)
    return load_encoder_config(model_name_or_path, revision=revision).model_type


def is_whisper(config: PretrainedConfig) -> bool:
    return config.model_type == "whisper"


def whisper_chunk_seconds(max_duration_seconds: float | None, config: PretrainedConfig) -> int:
    """Whole seconds of audio a Whisper encoder is built for: ceil(max_duration), at most the checkpoint's."""
    available = config.max_source_positions // WHISPER_POSITIONS_PER_SECOND
    if max_duration_seconds is None:
        return available
    if max_duration_seconds <= 0:
        raise ValueError(f"max_duration_seconds: {max_duration_seconds} is not positive; give e.g. 8")
    seconds = math.ceil(max_duration_seconds)
    if seconds > available:
        raise ValueError(
            f"max_duration_seconds: {max_duration_seconds} s is longer than this Whisper checkpoint's "
            f"{available} s window; give at most {available}"
        )
    return seconds


def crop_whisper_positions(model: PreTrainedModel, seconds: int) -> None:
    """Cut the encoder's positional table to `seconds` of audio (in place) and record it in the config."""
    encoder = encoder_module(model)
    positions = seconds * WHISPER_POSITIONS_PER_SECOND
    old = encoder.embed_positions
    if positions == old.num_embeddings:
        return
    if positions > old.num_embeddings:
        raise ValueError(f"cannot grow Whisper's positional table from {old.num_embeddings} to {positions}")
    # The table is fixed sinusoids indexed from 0: its first rows are exactly those of a shorter table.
    new = nn.Embedding(positions, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[:positions])
    new.requires_grad_(False)
    encoder.embed_positions = new
    encoder.max_source_positions = positions
    model.config.max_source_positions = positions
    encoder.config.max_source_positions = positions


def _has_preprocessor_config(model_name_or_path: str | Path, revision: str | None) -> bool:
    local = _local_dir(model_name_or_path)
    if local is not None:
        return (local / "preprocessor_config.json").is_file()
    try:
        from huggingface_hub import file_exists

        return file_exists(str(model_name_or_path), "preprocessor_config.json", revision=revision)
    except Exception:  # offline: let AutoFeatureExtractor try its cache and fail loudly if it must
        return True


def feature_extractor_for_encoder(
    model_name_or_path: str | Path,
    config: PretrainedConfig,
    *,
    revision: str | None = None,
    max_duration_seconds: float | None = None,
    return_attention_mask: bool | None = None,
) -> FeatureExtractionMixin:
    """The family's own feature extractor for this checkpoint, set up as described in the module docstring.

    `return_attention_mask`: None = the project's default (True for waveform families, Whisper's own False).
    """
    if _has_preprocessor_config(model_name_or_path, revision):
        extractor = AutoFeatureExtractor.from_pretrained(str(model_name_or_path), revision=revision)
    elif is_whisper(config):
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    else:
        extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True)
    if isinstance(extractor, WhisperFeatureExtractor):
        seconds = whisper_chunk_seconds(max_duration_seconds, config)
        extractor = WhisperFeatureExtractor(
            feature_size=extractor.feature_size,
            sampling_rate=extractor.sampling_rate,
            hop_length=extractor.hop_length,
            chunk_length=seconds,
            n_fft=extractor.n_fft,
            padding_value=extractor.padding_value,
            return_attention_mask=bool(return_attention_mask),
        )
    elif isinstance(extractor, Wav2Vec2FeatureExtractor):
        extractor.return_attention_mask = True if return_attention_mask is None else return_attention_mask
    return extractor


def encoder_module(model: PreTrainedModel) -> nn.Module:
    """The pre-trained body of a classifier (``model.wav2vec2``, ``model.hubert``, Whisper's ``.encoder``)."""
    body = getattr(model, model.base_model_prefix, None)
    if not isinstance(body, nn.Module) or body is model:
        body = getattr(model, "encoder", None)  # Whisper: prefix "model", but the classifier holds .encoder
    if not isinstance(body, nn.Module):
        raise ValueError(f"{type(model).__name__}: cannot find its encoder (no .{model.base_model_prefix})")
    return body


def head_parameter_names(model: PreTrainedModel) -> list[str]:
    """Names of the parameters outside the pre-trained encoder: projector, classifier, layer weights."""
    body_ids = {id(p) for p in encoder_module(model).parameters()}
    return [name for name, p in model.named_parameters() if id(p) not in body_ids]


def parameter_groups(
    model: PreTrainedModel, *, learning_rate: float, head_learning_rate: float, weight_decay: float = 0.0
) -> list[dict]:
    """Optimizer groups: the encoder at `learning_rate`, the head at `head_learning_rate`.

    Frozen parameters are left out. For the Trainer: ``optimizer_cls_and_kwargs=(torch.optim.AdamW,
    {"params": parameter_groups(...)})`` or a `create_optimizer` override; biases and norms get no decay.
    """
    head = set(head_parameter_names(model))
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim < 2
        groups.setdefault((name in head, no_decay), []).append(p)
    return [
        {
            "params": params,
            "lr": head_learning_rate if is_head else learning_rate,
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (is_head, no_decay), params in sorted(groups.items())
    ]


def mixed_precision_arguments(device: str | torch.device | None = None) -> dict[str, bool]:
    """TrainingArguments fields for mixed precision: bf16 on GPUs that support it, else fp16; {} on CPU."""
    device = torch.device(device) if device is not None else None
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    return {}


def freeze_front_end(model: PreTrainedModel) -> bool:
    """Freeze the convolutional waveform front-end; False (and a warning) when the family has none."""
    if hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
        return True
    body = encoder_module(model)
    convs = [getattr(body, n) for n in ("conv1", "conv2") if isinstance(getattr(body, n, None), nn.Module)]
    if convs:  # Whisper's front-end: two 1-D convolutions over the log-mel frames
        for module in convs:
            module.requires_grad_(False)
        return True
    logger.warning("freeze_feature_encoder: %s has no convolutional front-end; nothing frozen", type(model))
    return False


def build_encoder_classifier(
    model_name_or_path: str | Path,
    label_names: Sequence[str],
    *,
    revision: str | None = None,
    freeze_feature_encoder: bool = True,
    freeze_encoder: bool = False,
    use_weighted_layer_sum: bool = False,
    gradient_checkpointing: bool = False,
    max_duration_seconds: float | None = None,
    **config_overrides,
) -> tuple[PreTrainedModel, FeatureExtractionMixin]:
    """Load any speech encoder checkpoint with a fresh classification head over `label_names`.

    Args:
        model_name_or_path: Hub id or local directory (pre-trained body or a fine-tuned classifier).
        label_names: class names in label-id order.
        revision: Hub revision (branch, tag or commit) of the checkpoint.
        freeze_feature_encoder: keep the convolutional front-end fixed (the usual fine-tuning recipe).
        freeze_encoder: keep the whole encoder fixed and train only the head.
        use_weighted_layer_sum: pool a learned softmax-weighted sum of all hidden layers (SUPERB style).
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
        max_duration_seconds: Whisper only: the clip length the encoder is built for (see the module
            docstring); other families take any length and ignore it.
        **config_overrides: any other field of the family's config, e.g. ``mask_time_prob=0.05``,
            ``classifier_proj_size=256``, ``layerdrop=0.0``.

    Returns:
        The model (train mode) and the feature extractor to save with it.
    """
    label_names = list(label_names)
    if not label_names:
        raise ValueError("label_names: give at least one class name, e.g. ['anger', 'happy', 'neutral']")
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names: {label_names} repeats a name")
    config = load_encoder_config(model_name_or_path, revision=revision)
    unknown = [k for k in config_overrides if not hasattr(config, k)]
    if unknown:
        raise ValueError(f"config_overrides: {unknown} are not {type(config).__name__} fields")
    if use_weighted_layer_sum and not hasattr(config, "use_weighted_layer_sum"):
        raise ValueError(f"use_weighted_layer_sum: {config.model_type} classifiers have none; leave it off")
    weighted = {"use_weighted_layer_sum": use_weighted_layer_sum} if use_weighted_layer_sum else {}
    try:
        model = AutoModelForAudioClassification.from_pretrained(
            str(model_name_or_path),
            revision=revision,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            ignore_mismatched_sizes=True,  # a classifier fine-tuned on other classes has another head size
            **weighted,
            **config_overrides,
        )
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise ValueError(
                f"{model_name_or_path}: transformers has no audio classifier for model type "
                f"{config.model_type!r}; use a speech encoder (wav2vec2, hubert, wavlm, whisper, ...)"
            ) from err
        raise
    if is_whisper(model.config):
        crop_whisper_positions(model, whisper_chunk_seconds(max_duration_seconds, model.config))
    feature_extractor = feature_extractor_for_encoder(
        model_name_or_path, model.config, revision=revision, max_duration_seconds=max_duration_seconds
    )
    if freeze_encoder:
        encoder_module(model).requires_grad_(False)
    elif freeze_feature_encoder:
        freeze_front_end(model)
    if gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise ValueError(f"gradient_checkpointing: {type(model).__name__} does not support it")
        # Non-reentrant: works when the input of a checkpointed block needs no grad (frozen front-end).
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model, feature_extractor


def batch_features(feature_extractor: FeatureExtractionMixin, clips: Sequence, sampling_rate: int = 16000):
    """The model inputs for a batch of clips, padded the way the family needs (training's collator and
    inference both call this).

    Whisper's encoder takes exactly `chunk_length` seconds, so its clips are padded to that (``"max_length"``,
    its extractor's default) and no mask is asked for; the other extractors pad to the longest clip of the
    batch with an `attention_mask`. Only the inputs the extractor names (`model_input_names`) are returned.
    """
    whisper = isinstance(feature_extractor, WhisperFeatureExtractor)
    batch = feature_extractor(
        [np.asarray(clip, dtype=np.float32) for clip in clips],
        sampling_rate=sampling_rate,
        padding="max_length" if whisper else "longest",
        return_attention_mask=not whisper,
        return_tensors="pt",
    )
    names = getattr(feature_extractor, "model_input_names", None) or list(batch)
    return {name: batch[name] for name in names if name in batch}
