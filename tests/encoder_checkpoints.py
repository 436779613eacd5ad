"""Tiny random pre-trained-style checkpoints of every speech-encoder family, saved like Hub checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers

FAMILIES = ["wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech-sat", "sew", "whisper"]
# Families whose tiny checkpoint here has a LayerNorm feature encoder: padding never changes a prediction.
LAYER_NORM_FAMILIES = ["wav2vec2", "hubert", "wavlm", "data2vec-audio", "unispeech-sat", "sew"]
SR = 16000

_CONV = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2))
_BODY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    layerdrop=0.0,
    mask_time_prob=0.0,
    classifier_proj_size=16,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def tiny_encoder_checkpoint(kind: str, path: Path, feat_extract_norm: str = "layer") -> Path:
    """A random body of family `kind` (no classification head) with its feature extractor, saved to `path`.

    wav2vec2 keeps a preprocessor_config.json without the attention mask (as facebook/wav2vec2-base has);
    hubert has none (the fallback extractor); whisper has Whisper's 30 s extractor.
    """
    torch.manual_seed(0)
    if kind == "whisper":
        config = transformers.WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            init_std=0.2,  # random conv weights of std 0.02 drown the audio under the positional sinusoids
            vocab_size=64,
            max_target_positions=16,
            classifier_proj_size=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        transformers.WhisperModel(config).save_pretrained(path)
        transformers.WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
        return path
    values = {**_BODY, **_CONV}
    if kind in ("wav2vec2", "hubert", "wavlm", "unispeech-sat"):
        values["do_stable_layer_norm"] = feat_extract_norm == "layer"
    if kind == "sew":
        values["squeeze_factor"] = 2
    if kind == "data2vec-audio":
        values.update(conv_pos_kernel_size=5, num_conv_pos_embeddings=2)
    else:
        values["feat_extract_norm"] = feat_extract_norm
    config = transformers.AutoConfig.for_model(kind, **values)
    transformers.AutoModel.from_config(config).save_pretrained(path)
    if kind != "hubert":
        transformers.Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True).save_pretrained(
            path
        )
    return path


def tone(label: int, seconds: float, seed: int) -> np.ndarray:
    """A noisy tone whose pitch depends on the label: two classes any encoder can tell apart."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    clip = 0.3 * np.sin(2 * np.pi * (220.0 if label == 0 else 880.0) * t) + 0.05 * rng.standard_normal(t.size)
    return clip.astype(np.float32)
