"""Optimiser parameter groups that know about state-space (SSM) parameters.

S4/S4D train A, B (P) and dt with their own, smaller learning rate and no weight decay (Gu et al. 2022):
weight decay would pull log(-Re A) and log(dt) towards 0, i.e. towards a fixed, arbitrary time scale. The
Hugging Face Trainer's default optimiser knows nothing of this, so `training.trainer.SSMAwareTrainer` builds
its groups from `ssm_parameter_groups`. Which parameters are SSM parameters is model knowledge, so it lives
here, beside the models; models without SSM parameters (CNN, Wav2Vec2) get the usual two groups.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SSM_PARAMETER_PREFIX = "ssm_"  # the same token as modeling.s4.modeling_s4.SSM_PARAMETER_PREFIX


def is_ssm_parameter(name: str) -> bool:
    """True for SSM parameters: their own name (the last dotted component) starts with `ssm_`."""
    return name.rsplit(".", 1)[-1].startswith(SSM_PARAMETER_PREFIX)


def is_no_decay_parameter(name: str, param: torch.Tensor) -> bool:
    """Biases, normalisation weights and other 1-D parameters (e.g. the S4 skip D) get no weight decay."""
    lowered = name.lower()
    return param.ndim < 2 or "bias" in lowered or "norm" in lowered


def ssm_parameter_groups(
    model: nn.Module, weight_decay: float, ssm_lr: float | None = None
) -> list[dict[str, Any]]:
    """Three optimiser groups over the trainable parameters of `model` (empty groups are left out):

    - `"ssm"`: SSM parameters (name starting with `ssm_`), learning rate `ssm_lr`, weight decay 0;
    - `"no_decay"`: biases, norms and 1-D parameters, weight decay 0, the optimiser's learning rate;
    - `"decay"`: everything else, weight decay `weight_decay`, the optimiser's learning rate.

    `ssm_lr=None` reads `model.config.ssm_lr` (1e-3 if the model has none). A learning-rate scheduler scales
    every group's rate by the same factor, so the SSM rate follows the schedule too.
    """
    if ssm_lr is None:
        ssm_lr = getattr(getattr(model, "config", None), "ssm_lr", None) or 1e-3
    groups: dict[str, dict[str, Any]] = {
        "ssm": {"name": "ssm", "params": [], "lr": ssm_lr, "weight_decay": 0.0},
        "no_decay": {"name": "no_decay", "params": [], "weight_decay": 0.0},
        "decay": {"name": "decay", "params": [], "weight_decay": weight_decay},
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_ssm_parameter(name):
            groups["ssm"]["params"].append(param)
        elif is_no_decay_parameter(name, param):
            groups["no_decay"]["params"].append(param)
        else:
            groups["decay"]["params"].append(param)
    return [group for group in groups.values() if group["params"]]


__all__ = ["is_no_decay_parameter", "is_ssm_parameter", "ssm_parameter_groups"]
