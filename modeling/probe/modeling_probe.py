"""Probe: a frozen pre-trained speech encoder read at every layer, pooled, weighted and classified by an MLP.

The EmoBox / SUPERB protocol: the encoder never trains, so every layer's hidden states can be pooled once per
utterance and cached (training/encoder_features.py); a light head then trains on the cache in seconds. This
model is that head put back on top of the encoder, so that the saved result classifies raw audio
(`from_pretrained`, `pipeline("audio-classification")`, the project's predict and demo) and gives the head's
logits on the cached features (tested to 1e-5).

Pooling, per layer and utterance, over the real frames only: the mean and the standard deviation of the hidden
states, concatenated (`pool_hidden_states`). The mean is what EmoBox and SUPERB use; the standard deviation
costs one more vector per layer and keeps how much the representation moves within the clip (a cue for
arousal). Both are cached, whatever the head reads (`ProbeConfig.pooling`).

The head (`ProbeHead`): each pooled feature is standardised with statistics of the training features (fixed
buffers, saved with the model), the layers are summed with learned softmax weights, and a two-layer MLP gives
the logits.

Encoders: any whose hidden states come out of ``encoder(..., output_hidden_states=True).hidden_states``:
wav2vec2-style models take `input_values` (+ `attention_mask`), Whisper's encoder takes `input_features` of
exactly its window (its saved feature extractor pads to it) and an `attention_mask` over mel frames tells the
pooling which frames are real.

This file imports only torch, transformers and its own folder: it is copied next to saved models and loaded
with `trust_remote_code=True` where this project is not installed.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_probe import ProbeConfig


def encoder_from_config(encoder_config: dict) -> PreTrainedModel:
    """A randomly initialised encoder of this config (weights come from the checkpoint)."""
    values = dict(encoder_config)
    model_type = values.pop("model_type")
    values.pop("transformers_version", None)
    config = AutoConfig.for_model(model_type, **values)
    if model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(config)
    model = AutoModel.from_config(config)
    if getattr(config, "is_encoder_decoder", False):
        model = model.get_encoder()
    return model


def real_frame_mask(
    encoder: PreTrainedModel, num_frames: int, attention_mask: torch.Tensor | None, batch: int
) -> torch.Tensor:
    """(batch, frames) bool: the encoder frames computed from real input only."""
    if attention_mask is None:
        return torch.ones(batch, num_frames, dtype=torch.bool, device=encoder.device)
    if hasattr(encoder, "_get_feature_vector_attention_mask") and attention_mask.shape[-1] != num_frames:
        return encoder._get_feature_vector_attention_mask(num_frames, attention_mask).bool()
    lengths = encoder._get_feat_extract_output_lengths(attention_mask.sum(-1))
    return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]


def pool_hidden_states(hidden_states: tuple[torch.Tensor, ...], frame_mask: torch.Tensor) -> torch.Tensor:
    """(batch, layers, 2 * hidden): per layer, mean and standard deviation over the real frames."""
    stacked = torch.stack(hidden_states, dim=1).float()  # (batch, layers, frames, hidden)
    weights = frame_mask[:, None, :, None].to(stacked.dtype)
    count = weights.sum(dim=2).clamp(min=1.0)
    mean = (stacked * weights).sum(dim=2) / count
    variance = ((stacked - mean[:, :, None, :]) ** 2 * weights).sum(dim=2) / count
    return torch.cat([mean, variance.sqrt()], dim=-1)


class ProbeHead(nn.Module):
    """Standardise the pooled layers, sum them with softmax weights, classify with an MLP."""

    def __init__(
        self,
        num_layers: int,
        pooled_size: int,
        num_labels: int,
        *,
        pooling: str = "mean+std",
        hidden_size: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        # pooled_size is 2 * encoder hidden (mean and std, as cached); the "mean" head reads the first half.
        self.pooling = pooling
        self.used_size = pooled_size if pooling == "mean+std" else pooled_size // 2
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.register_buffer("feature_mean", torch.zeros(num_layers, self.used_size))
        self.register_buffer("feature_std", torch.ones(num_layers, self.used_size))
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.used_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_labels),
        )

    @classmethod
    def from_config(cls, config: ProbeConfig) -> ProbeHead:
        return cls(
            config.num_feature_layers,
            2 * config.encoder_hidden_size,
            config.num_labels,
            pooling=config.pooling,
            hidden_size=config.head_hidden_size,
            dropout=config.head_dropout,
        )

    def set_standardisation(self, pooled: torch.Tensor) -> None:
        """Fix the per-feature statistics from training features (batch, layers, pooled_size)."""
        used = pooled[..., : self.used_size].float()
        self.feature_mean.copy_(used.mean(dim=0))
        self.feature_std.copy_(used.std(dim=0, unbiased=False).clamp(min=1e-5))

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        features = (pooled[..., : self.used_size].float() - self.feature_mean) / self.feature_std
        mixed = (features * self.layer_weights()[None, :, None]).sum(dim=1)
        return self.mlp(mixed)


class ProbeForAudioClassification(PreTrainedModel):
    """Frozen encoder + `ProbeHead`; the encoder stays in eval mode (no SpecAugment, no dropout) always."""

    config_class = ProbeConfig
    base_model_prefix = "probe"
    main_input_name = "input_values"

    def __init__(self, config: ProbeConfig):
        super().__init__(config)
        if config.encoder_config is None:
            raise ValueError("ProbeConfig.encoder_config is missing; build the probe from an encoder")
        self.encoder = encoder_from_config(config.encoder_config)
        self.encoder.requires_grad_(False)
        self.head = ProbeHead.from_config(config)
        self.post_init()
        self.encoder.eval()

    def _init_weights(self, module: nn.Module) -> None:
        # The encoder's weights come from its checkpoint and the head's from training; nothing to initialise.
        pass

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        return self

    @property
    def min_input_samples(self) -> int:
        """Shortest clip (samples) the encoder gives a frame for: its conv front-end's receptive field (the
        project's predict pads or refuses shorter ones instead of failing inside the convolution)."""
        kernels = getattr(self.encoder.config, "conv_kernel", None)
        strides = getattr(self.encoder.config, "conv_stride", None)
        if not kernels or not strides:
            return 0  # Whisper: its extractor pads every clip to the window
        needed, stride = 0, 1
        for kernel, step in zip(kernels, strides, strict=True):
            needed += (kernel - 1) * stride
            stride *= step
        return needed + 1

    def pooled_layers(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(batch, layers, 2 * hidden): what training/encoder_features.py caches per utterance."""
        with torch.no_grad():
            if input_features is not None:  # Whisper: a fixed window; the mask only guides the pooling
                outputs = self.encoder(input_features, output_hidden_states=True)
            else:
                outputs = self.encoder(input_values, attention_mask=attention_mask, output_hidden_states=True)
            hidden_states = outputs.hidden_states
            inputs = input_features if input_features is not None else input_values
            mask = real_frame_mask(self.encoder, hidden_states[0].shape[1], attention_mask, inputs.shape[0])
            return pool_hidden_states(hidden_states, mask)

    def head_forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from pooled layers (the cached features or `pooled_layers`)."""
        return self.head(pooled)

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if input_values is None and input_features is None:
            raise ValueError("give input_values (waveform encoders) or input_features (Whisper)")
        logits = self.head_forward(self.pooled_layers(input_values, attention_mask, input_features))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.to(logits.device))
        return SequenceClassifierOutput(loss=loss, logits=logits)
