"""What is fitted after training on the validation clips: the functionals head's classifier, refitted as the
challenge baseline fits its own, and the weights of a two-branch model's logits (the network and the head).

The functionals head trains beside the network on its own loss at a fixed L2 penalty, and early stopping
keeps the epoch that suits the sum; so the head stops short of its own optimum, at a penalty nobody chose.
`refit_functionals_head` refits its linear classifier on the training clips' functionals (as the saved
model standardises them) the way the openSMILE baseline fits its classifier: balanced class weights,
logistic regression (so that the head's scores stay log-probabilities that add to the network's logits), C
from the baseline's grid (`evaluation.opensmile_baseline.select_c`), chosen by the validation clips'
cross-entropy rather than the baseline's UAR (`HEAD_C_CRITERION`): the head's probabilities are what the
branch weights and the sum use, and on a few validation speakers the UAR ties over many C where the
cross-entropy still tells them apart. A further linear head in the same branch, on another view of the same
channels (the CNN's raw contours head, the S4's smoothed contours head) or on other channels (the spectrum
heads of both models, the S4's MFCC head), does not train at all (zero and frozen until then, so that it
leaves training and its checkpoint as they would be without it) and is fitted here only, the same way with its
own C. A head in `GATED_HEADS` (the S4's MFCC head, then either model's spectrum head) then stays in the sum
only where it lowers the validation clips' cross-entropy of the weighted sum with the heads kept before it
(`gate_fitted_heads`), and is put back to zero elsewhere.

Each branch trains on its own cross-entropy, so neither learns how far to trust the other. The network
overfits its training speakers and ends with logits far more confident than it is right on new speakers (on
the development corpora the CNN's mean |logit| is about twice the head's), so it decided the plain sum even
where the head alone was better. After training, the weights `(a, b)` of `a * network + b * head` that
minimise the cross-entropy on the validation set set this right: stacking with two parameters, or temperature
scaling of both branches at once, which also makes the scores calibrated probabilities. The log-weights get a
Gaussian prior centred on the plain sum (`prior * ||log w||^2` beside the mean cross-entropy): a validation
set that the model separates perfectly would otherwise drive the weights to infinity, and a few validation
speakers should move the sum only as far as they have evidence for. For the S4, whose network alone is far
below its head on speech, the network's weight is penalised towards 0 instead (`network_penalty`): the sum
keeps of the network only what the validation clips show it adds.

Before all this, the network's logits lose the training clips' class prior (`correct_class_prior`): the
network learnt it from a plain cross-entropy on unbalanced clips, and UAR, the metric every run is judged by,
weighs the classes equally. So do the heads that trained beside it by the same loss (`PRIOR_CORRECTED_HEADS`),
among them the S4's energy peaks head, which is kept as trained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from torch.nn import functional as F
from transformers import Trainer

logger = logging.getLogger(__name__)

PRIOR = 0.01
# What chooses the refitted head's C on the validation clips (`select_c`'s criterion). Against the UAR, the
# baseline's criterion, the cross-entropy lifted the S4's mean on every development corpus (espeak / festival
# / synthetic, with the refit and the branch weights that it then gains from: +0.003 / +0.010 / +0.006 over
# 24 runs, espeak within the spread) and left the CNN level or better (+0.001 / +0.004 / +0.006 over 24 runs;
# benchmarks/results/dev-speaker-cv/ROUNDS.md, thirtieth and thirty-first rounds).
HEAD_C_CRITERION = "log_loss"
# The heads that train beside the network by plain cross-entropy on the training clips, as it does, so that
# their logits learn the training clips' class prior too (`correct_class_prior` takes it out of them). The
# heads fitted after training are fitted with balanced class weights; the functionals head is refitted so
# by default (then its correction is replaced), the energy peaks head is kept as trained. On espeak, where
# neutral has half the clips of each other emotion, the S4's energy peaks head kept that prior, and the S4
# recalled neutral 0.70 against ComParE + logistic regression's 0.79. Its prior taken out lifted the S4 by
# +0.006 / +0.005 on espeak / festival over 8 folds of partitions not used before, and leaves the synthetic
# corpus (balanced clips) exactly as it was (ROUNDS.md, fifty-third round).
PRIOR_CORRECTED_HEADS = ("functionals_head", "energy_peaks_head")
# Every output field but the branches: `Trainer.predict` then returns only (network logits, head logits).
_NOT_BRANCHES = ["logits", "penalty", "hidden_states", "attentions"]


def fit_branch_weights(
    network_logits: np.ndarray | torch.Tensor,
    head_logits: np.ndarray | torch.Tensor,
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    prior: float = PRIOR,
    network_penalty: float = 0.0,
) -> tuple[float, float]:
    """The weights (network, head) minimising the mean cross-entropy of `a * network + b * head` on these
    clips plus `prior * (log(a)^2 + log(b)^2)`; (1, 1) is the plain sum.

    With `network_penalty` > 0, the network's weight has the penalty `network_penalty * a^2` instead of its
    term of the prior: the sum shrinks towards the head alone, and the network keeps only the weight the
    validation clips give evidence for. Why one might: those clips also chose the checkpoint (early stopping
    on their UAR), so the network looks better on them than on new speakers. Set by `run_train.py
    --branch_network_penalty`: 0.01 in the S4's recipe, whose network alone is far below its head on speech
    (+0.003 / +0.004 / +0.002 on espeak / festival / synthetic over 24 runs); 0 in the CNN's, whose network
    adds to its head on speech (ROUNDS.md, twenty-sixth and thirty-second rounds)."""
    network = torch.as_tensor(np.asarray(network_logits), dtype=torch.float64)
    head = torch.as_tensor(np.asarray(head_logits), dtype=torch.float64)
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_weights = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_weights], max_iter=200, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        weights = log_weights.exp()
        loss = F.cross_entropy(weights[0] * network + weights[1] * head, targets)
        if network_penalty > 0:
            loss = loss + network_penalty * weights[0].square() + prior * log_weights[1].square()
        else:
            loss = loss + prior * log_weights.square().sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    network_weight, head_weight = log_weights.detach().exp().tolist()
    return network_weight, head_weight


def network_output_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The network's last layer, the one that gives its logits: `model.classifier` (transformers' audio
    classifiers and the S4), or the last layer of it (the CNN's MLP)."""
    layer = getattr(model, "classifier", None)
    if isinstance(layer, torch.nn.Sequential):
        layer = layer[-1]
    num_labels = model.config.num_labels
    if not isinstance(layer, torch.nn.Linear) or layer.bias is None or layer.out_features != num_labels:
        raise ValueError(
            f"{type(model).__name__}: no output layer with a bias and {num_labels} outputs as `classifier` "
            "to take the class prior out of; run with --correct_class_prior false"
        )
    return layer


def class_prior_shift(train_labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray | None:
    """The log of each class's share of `train_labels`, centred over the classes (zero for balanced
    labels): what `correct_class_prior` subtracts from the network's logits. None when a class has no
    labels."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_classes)
    if not counts.all():
        return None
    if (counts == counts[0]).all():  # exactly zero, whatever the rounding of the mean
        return np.zeros(num_classes)
    log_shares = np.log(counts / counts.sum())
    return log_shares - log_shares.mean()


def correct_class_prior(
    model: torch.nn.Module, train_labels: Sequence[int] | np.ndarray, label_names: Sequence[str]
) -> dict[str, float] | None:
    """Take the training clips' class prior out of the network's logits and those of the heads trained beside
    it (`PRIOR_CORRECTED_HEADS`), in place: subtract from the bias of its output layer and of each such head
    the log of each class's share of `train_labels`, centred over the classes (so that balanced clips leave
    the model as it was). Returns the subtracted value per class, or None (with a warning, the model left as
    it was) when a class has no training clips: it has no share to take out.

    A network trained by plain cross-entropy on unbalanced clips learns p(class | clip), the training
    prior included, and its argmax favours the frequent classes; UAR weighs every class equally, and the
    decision that suits it is the argmax of p(class | clip) / p(class) (logit adjustment: Menon et al. 2021,
    "Long-tail learning via logit adjustment"). The heads fitted after training need no such correction:
    they are fitted with balanced class weights, as the baseline is. On espeak (RAVDESS' layout: neutral has
    half the others' clips) it lifted the CNN by 0.012 and the S4 by 0.005 on the leaderboard's partition,
    festival (neutral 144 of 168) by 0.000 and 0.003 (ROUNDS.md, forty-seventh round)."""
    shift = class_prior_shift(train_labels, len(label_names))
    if shift is None:
        counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(label_names))
        logger.warning(
            "The network's and its trained heads' logits keep the training clips' class prior: the training "
            "clips lack %s, which has no share to take out.",
            ", ".join(name for name, count in zip(label_names, counts, strict=True) if count == 0),
        )
        return None
    layers = [network_output_layer(model)]
    layers += [head for name in PRIOR_CORRECTED_HEADS if (head := getattr(model, name, None)) is not None]
    with torch.no_grad():
        for layer in layers:
            layer.bias -= torch.as_tensor(shift, dtype=layer.bias.dtype, device=layer.bias.device)
    return {name: float(value) for name, value in zip(label_names, shift, strict=True)}


def has_branches(model: torch.nn.Module) -> bool:
    """Whether the model returns `branch_logits` (a functionals head beside the network) and has weights
    for them."""
    return getattr(model, "functionals_head", None) is not None and hasattr(model.config, "branch_weights")


@dataclass
class BranchPredictions:
    """The logits of a two-branch model's branches on a split, and its labels."""

    network: np.ndarray  # (clips, classes)
    head: np.ndarray  # the heads' logits summed: the branch that `branch_weights[1]` weighs
    labels: np.ndarray


def predict_branches(trainer: Trainer, dataset: datasets.Dataset) -> BranchPredictions:
    """The branches' logits on `dataset` (a model with `has_branches`). Every process predicts the whole
    split (`Trainer.predict` gathers it)."""
    output = trainer.predict(dataset, ignore_keys=_NOT_BRANCHES, metric_key_prefix="calibration")
    # A model with an energy peaks head beside its functionals head has three branches; both heads are
    # weighted as one (`branch_weights[1]` scales their sum).
    network, *heads = output.predictions
    return BranchPredictions(network=network, head=sum(heads), labels=output.label_ids)


def calibrate_branch_weights(
    trainer: Trainer,
    dataset: datasets.Dataset,
    branches: BranchPredictions | None = None,
    network_penalty: float = 0.0,
) -> tuple[float, float] | None:
    """Fit `trainer.model.config.branch_weights` on `dataset` (the validation split; `branches`: its
    `predict_branches`, when already made; `network_penalty`: as in `fit_branch_weights`); returns the
    weights, or None for a model without two branches. Every process fits the same weights."""
    model = trainer.model
    if not has_branches(model):
        return None
    if branches is None:
        branches = predict_branches(trainer, dataset)
    network, head, labels = branches.network, branches.head, branches.labels
    weights = fit_branch_weights(network, head, labels, network_penalty=network_penalty)
    before = _cross_entropy(network + head, labels)
    after = _cross_entropy(weights[0] * network + weights[1] * head, labels)
    model.config.branch_weights = list(weights)
    logger.info(
        "Branch weights fitted on %d validation clips%s: network %.3f, functionals head %.3f (validation "
        "cross-entropy %.3f with their plain sum, %.3f weighted).",
        len(labels),
        f" (network weight penalised by {network_penalty:g} * a^2)" if network_penalty > 0 else "",
        *weights,
        before,
        after,
    )
    return weights


@dataclass
class HeadFit:
    """A linear classifier on the head's standardised functionals: logits = `weight` @ x + `bias`."""

    weight: np.ndarray  # (classes, functionals)
    bias: np.ndarray  # (classes,)
    c: float
    converged: bool


def fit_head_like_baseline(
    train_inputs: np.ndarray,
    train_labels: np.ndarray,
    validation_inputs: np.ndarray,
    validation_labels: np.ndarray,
    label_names: Sequence[str],
    criterion: str = HEAD_C_CRITERION,
) -> HeadFit:
    """The openSMILE baseline's recipe on the head's inputs (logistic regression): C chosen on the validation
    clips by `criterion` (`evaluation.opensmile_baseline.SELECTION_CRITERIA`: the cross-entropy by default,
    or the baseline's UAR), fitted on train only, its scaler folded into the weights so that they apply to the
    inputs as given. Every class must have training clips (a missing one would have no logit)."""
    # The baseline's own module: one home for its recipe (imported here, where it is used, so that training
    # does not load the evaluation package when no head is refitted).
    from evaluation.opensmile_baseline import select_c

    missing = sorted(set(range(len(label_names))) - set(np.asarray(train_labels).tolist()))
    if missing:
        raise ValueError(
            f"the training clips lack {', '.join(label_names[i] for i in missing)}: the head cannot be "
            "refitted without examples of every class"
        )
    pipeline, c, search, _ = select_c(
        train_inputs,
        train_labels,
        validation_inputs,
        validation_labels,
        label_names,
        classifier="logreg",  # lbfgs: deterministic, so no seed
        criterion=criterion,
    )
    scaler, classifier = pipeline.named_steps["scale"], pipeline.named_steps["classify"]
    weight = classifier.coef_ / scaler.scale_
    bias = classifier.intercept_ - weight @ scaler.mean_
    if len(label_names) == 2:  # one score for class 1; as two logits, its half each way
        weight, bias = np.stack([-weight[0] / 2, weight[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    converged = next(row["converged"] for row in search if row["C"] == c)
    return HeadFit(weight=weight, bias=bias, c=c, converged=converged)


def linear_head_inputs(
    model: torch.nn.Module,
    dataset: datasets.Dataset,
    collator,
    batch_size: int,
    heads: Sequence[str] = ("functionals_head",),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({head: its inputs as the model standardises them, what its linear classifier sees}, the labels) of
    every clip of `dataset` for each of the model's linear `heads` (attributes such as `functionals_head`,
    `energy_peaks_head`: a `norm`, then `weight` and `bias`), batched by `collator` (no augmentation), in the
    model's eval mode, one pass for all heads. Every process computes the whole split (no sharding), so that
    all of them fit the same heads."""
    inputs: dict[str, list[np.ndarray]] = {head: [] for head in heads}
    labels = []
    hooks = [
        getattr(model, head).norm.register_forward_hook(
            lambda module, args, output, head=head: inputs[head].append(output[..., 0].double().cpu().numpy())
        )
        for head in heads
    ]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            labels.append(batch.pop("labels").numpy())
            with torch.inference_mode():
                model(**{name: value.to(device) for name, value in batch.items()})
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {head: np.concatenate(parts) for head, parts in inputs.items()}, np.concatenate(labels)


# The linear heads fitted after training, each on its own inputs with its own C: the functionals head, trained
# beside the network, refitted; the CNN's raw contours and spectrum heads and the S4's smoothed contours, MFCC
# and spectrum heads, which do not train, fitted here only. An energy peaks head stays as trained: refitted
# beside the functionals head it lost on festival (ROUNDS.md, thirty-first round), and with today's heads it
# lifts the S4 on speech and costs the synthetic corpus a clip on half of its folds (fifty-second round).
REFITTED_HEADS = (
    "functionals_head",
    "raw_contours_head",
    "smoothed_contours_head",
    "mfcc_head",
    "spectrum_head",
)
# The heads fitted after training that stay only where the validation clips show that they help: the S4's
# MFCC head, whose MFCCs lift festival and cost espeak. On the fortieth round's S4 runs (24 per corpus),
# always in the sum it moved espeak / festival / synthetic by −0.004 / +0.016 / −0.000, gated by +0.001 /
# +0.017 / −0.000. The same gate on the S4's smoothed contours head cost espeak 0.012 and on the CNN's raw
# contours head festival 0.003, where the validation clips miss their gain, so those two are not gated
# (ROUNDS.md, forty-first round). Then the S4's spectrum head, tried after the MFCC head was decided: gated
# +0.004 / +0.010 / +0.001 over the same runs, always in the sum +0.003 / +0.011 / +0.001. Greedy, in this
# order: each head against the sum with the heads kept before it. The CNN's spectrum head (its default
# since the forty-fifth round) likewise, replayed on its thirty-ninth round's runs: gated +0.008 / +0.001 /
# +0.001 over 24 runs per corpus (forty-third and forty-fourth rounds).
GATED_HEADS = ("mfcc_head", "spectrum_head")


@dataclass
class HeadRefit:
    """What `refit_functionals_head` fitted: each head's C, and its logits on the validation clips (in their
    order), which `gate_fitted_heads` judges without another pass over those clips."""

    c: dict[str, float]
    validation_logits: dict[str, np.ndarray]  # (clips, classes) per head


def refit_functionals_head(
    trainer: Trainer,
    train: datasets.Dataset,
    validation: datasets.Dataset,
    label_names: Sequence[str],
    heads: Sequence[str] = REFITTED_HEADS,
) -> HeadRefit | None:
    """Refit the functionals head of `trainer.model` (a two-branch model, `has_branches`), and fit the heads
    that do not train where it has them (the CNN's raw contours and spectrum heads, the S4's smoothed
    contours, MFCC and spectrum heads), on `train` with C chosen on `validation` (`fit_head_like_baseline`,
    each head on its own) and write them into the heads; returns each fitted head's C and validation logits
    by its name, or None for a model without two branches or a training split that lacks a class (the heads
    then stay as trained, those that do not train at zero). `heads`: the attributes refitted where the model
    has them (another set only to measure one, as `benchmarks/results` replays do)."""
    model = trainer.model
    if not has_branches(model):
        return None
    heads = [name for name in heads if getattr(model, name, None) is not None]
    collator = getattr(trainer, "eval_data_collator", None) or trainer.data_collator
    batch_size = trainer.args.per_device_eval_batch_size
    train_inputs, train_labels = linear_head_inputs(model, train, collator, batch_size, heads)
    validation_inputs, validation_labels = linear_head_inputs(model, validation, collator, batch_size, heads)
    fits = {}
    try:
        for name in heads:
            fits[name] = fit_head_like_baseline(
                train_inputs[name], train_labels, validation_inputs[name], validation_labels, label_names
            )
    except ValueError as err:
        logger.warning(
            "The functionals head stays as trained (a head fitted after training only, at zero): %s.", err
        )
        return None
    for name, fit in fits.items():
        head = getattr(model, name)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(fit.weight, dtype=head.weight.dtype))
            head.bias.copy_(torch.as_tensor(fit.bias, dtype=head.bias.dtype))
        logger.info(
            "%s refitted on %d training clips: logistic regression, C %g chosen by %s on %d validation "
            "clips%s.",
            _head_label(name),
            len(train_labels),
            fit.c,
            HEAD_C_CRITERION,
            len(validation_labels),
            "" if fit.converged else " (the solver did not converge)",
        )
    return HeadRefit(
        c={name: fit.c for name, fit in fits.items()},
        validation_logits={
            name: validation_inputs[name] @ fit.weight.T + fit.bias for name, fit in fits.items()
        },
    )


def head_lowers_cross_entropy(
    network_logits: np.ndarray,
    other_heads_logits: np.ndarray,
    head_logits: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    network_penalty: float = 0.0,
) -> bool:
    """Whether adding `head_logits` to the head's branch (`other_heads_logits`: the rest of it) lowers the
    cross-entropy of the weighted sum on these clips, the branch weights fitted with it and without it
    (`fit_branch_weights`)."""
    labels = np.asarray(labels)

    def weighted_cross_entropy(head: np.ndarray) -> float:
        weights = fit_branch_weights(network_logits, head, labels, network_penalty=network_penalty)
        return _cross_entropy(weights[0] * network_logits + weights[1] * head, labels)

    with_head = weighted_cross_entropy(other_heads_logits + head_logits)
    return with_head < weighted_cross_entropy(other_heads_logits)


def gate_fitted_heads(
    model: torch.nn.Module,
    branches: BranchPredictions,
    head_logits: dict[str, np.ndarray],
    network_penalty: float = 0.0,
) -> tuple[BranchPredictions, dict[str, bool]]:
    """Keep each of the model's `GATED_HEADS`, as fitted, only where it lowers the weighted sum's
    cross-entropy on the validation clips (`branches`: their `predict_branches`; `head_logits`: each fitted
    head's logits on the same clips in the same order, `HeadRefit.validation_logits`;
    `head_lowers_cross_entropy`), and put the others back to zero. Greedy, in `GATED_HEADS`' order: each head
    is judged against the head's branch without the gated heads, plus those kept before it. Returns the
    branches without the heads put back to zero and whether each head was kept."""
    heads = [name for name in GATED_HEADS if getattr(model, name, None) is not None and name in head_logits]
    if not heads:
        return branches, {}
    logits = {name: head_logits[name] for name in heads}
    kept_sum = branches.head - sum(logits.values())
    kept = {}
    for name in heads:
        kept[name] = head_lowers_cross_entropy(
            branches.network, kept_sum, logits[name], branches.labels, network_penalty
        )
        if kept[name]:
            kept_sum = kept_sum + logits[name]
        else:
            head = getattr(model, name)
            with torch.no_grad():
                head.weight.zero_()
                head.bias.zero_()
        logger.info(
            "%s %s: with it the weighted sum's cross-entropy on %d validation clips is %s.",
            _head_label(name),
            "kept" if kept[name] else "put back to zero",
            len(branches.labels),
            "lower" if kept[name] else "not lower",
        )
    if all(kept.values()):
        return branches, kept
    return BranchPredictions(network=branches.network, head=kept_sum, labels=branches.labels), kept


def _head_label(name: str) -> str:
    """`mfcc_head` -> "MFCC head", for the log."""
    return name.replace("_", " ").capitalize().replace("Mfcc", "MFCC")


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(
        F.cross_entropy(torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels).long())
    )


__all__ = [
    "GATED_HEADS",
    "HEAD_C_CRITERION",
    "PRIOR_CORRECTED_HEADS",
    "PRIOR",
    "REFITTED_HEADS",
    "BranchPredictions",
    "HeadFit",
    "HeadRefit",
    "calibrate_branch_weights",
    "class_prior_shift",
    "correct_class_prior",
    "fit_branch_weights",
    "fit_head_like_baseline",
    "gate_fitted_heads",
    "head_lowers_cross_entropy",
    "linear_head_inputs",
    "has_branches",
    "network_output_layer",
    "predict_branches",
    "refit_functionals_head",
]
