"""Weights of a two-branch model's logits (the network and its functionals head), fitted on validation clips.

Each branch trains on its own cross-entropy, so neither learns how far to trust the other. The network
overfits its training speakers and ends with logits far more confident than it is right on new speakers (on
the development corpora the CNN's mean |logit| is about twice the head's), so it decided the plain sum even
where the head alone was better. After training, the weights `(a, b)` of `a * network + b * head` that
minimise the cross-entropy on the validation set set this right: stacking with two parameters, or temperature
scaling of both branches at once, which also makes the scores calibrated probabilities. The log-weights get a
Gaussian prior centred on the plain sum (`prior * ||log w||^2` beside the mean cross-entropy): a validation
set that the model separates perfectly would otherwise drive the weights to infinity, and a few validation
speakers should move the sum only as far as they have evidence for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import datasets
import numpy as np
import torch
from torch.nn import functional as F
from transformers import Trainer

logger = logging.getLogger(__name__)

PRIOR = 0.01
# Every output field but the branches: `Trainer.predict` then returns only (network logits, head logits).
_NOT_BRANCHES = ["logits", "penalty", "hidden_states", "attentions"]


def fit_branch_weights(
    network_logits: np.ndarray | torch.Tensor,
    head_logits: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    prior: float = PRIOR,
) -> tuple[float, float]:
    """The weights (network, head) minimising the mean cross-entropy of `a * network + b * head` on these
    clips plus `prior * (log(a)^2 + log(b)^2)`; (1, 1) is the plain sum."""
    network = torch.as_tensor(np.asarray(network_logits), dtype=torch.float64)
    head = torch.as_tensor(np.asarray(head_logits), dtype=torch.float64)
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_weights = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_weights], max_iter=200, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        weights = log_weights.exp()
        loss = F.cross_entropy(weights[0] * network + weights[1] * head, targets)
        loss = loss + prior * log_weights.square().sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    network_weight, head_weight = log_weights.detach().exp().tolist()
    return network_weight, head_weight


def has_branches(model: torch.nn.Module) -> bool:
    """Whether the model returns `branch_logits` (a functionals head beside the network) and has weights
    for them."""
    return getattr(model, "functionals_head", None) is not None and hasattr(model.config, "branch_weights")


def calibrate_branch_weights(trainer: Trainer, dataset: datasets.Dataset) -> tuple[float, float] | None:
    """Fit `trainer.model.config.branch_weights` on `dataset` (the validation split); returns the weights,
    or None for a model without two branches. Every process predicts the whole split (`Trainer.predict`
    gathers it) and fits the same weights."""
    model = trainer.model
    if not has_branches(model):
        return None
    output = trainer.predict(dataset, ignore_keys=_NOT_BRANCHES, metric_key_prefix="calibration")
    # A model with an energy peaks head beside its functionals head has three branches; both heads are
    # weighted as one (`branch_weights[1]` scales their sum).
    network, *heads = output.predictions
    head = sum(heads)
    labels = output.label_ids
    weights = fit_branch_weights(network, head, labels)
    before = _cross_entropy(network + head, labels)
    after = _cross_entropy(weights[0] * network + weights[1] * head, labels)
    model.config.branch_weights = list(weights)
    logger.info(
        "Branch weights fitted on %d validation clips: network %.3f, functionals head %.3f (validation "
        "cross-entropy %.3f with their plain sum, %.3f weighted).",
        len(labels),
        *weights,
        before,
        after,
    )
    return weights


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(
        F.cross_entropy(torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels).long())
    )


__all__ = ["PRIOR", "calibrate_branch_weights", "fit_branch_weights", "has_branches"]
