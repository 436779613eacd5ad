"""S4 / S4D classifier: `S4Config`, `S4ForAudioClassification` (modeling_s4.py), kernels (kernels_s4.py)."""

from .configuration_s4 import S4Config
from .modeling_s4 import (
    DPLRKernel,
    S4DKernel,
    S4ForAudioClassification,
    S4Layer,
    S4PreTrainedModel,
    S4StreamState,
    vandermonde_kernel,
    vandermonde_kernel_naive,
)

__all__ = [
    "DPLRKernel",
    "S4Config",
    "S4DKernel",
    "S4ForAudioClassification",
    "S4Layer",
    "S4PreTrainedModel",
    "S4StreamState",
    "vandermonde_kernel",
    "vandermonde_kernel_naive",
]
