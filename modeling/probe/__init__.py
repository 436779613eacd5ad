"""Probe: a frozen speech encoder + softmax weights over its layers + an MLP, trainable on cached features."""

from .configuration_probe import ProbeConfig
from .modeling_probe import ProbeForAudioClassification, ProbeHead, pool_hidden_states

__all__ = ["ProbeConfig", "ProbeForAudioClassification", "ProbeHead", "pool_hidden_states"]
