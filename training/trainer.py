"""The Trainer of all three models, and everything that changes how it trains and evaluates.

* `SSMAwareTrainer`: the default optimiser puts S4's A, B, dt in their own group (own learning rate, no weight
  decay) via `modeling.optimization.ssm_parameter_groups`, which knows which parameters those are;
* `SERTrainer`: adds a separate `eval_data_collator` for validation and test (training-only augmentation stays
  out of them), evaluation batched longest first with its outputs in the dataset's order, an evaluation loss
  that is the model's cross-entropy (not its training objective), a separate learning rate for a pre-trained
  encoder's head (`head_learning_rate`, groups from `modeling.encoders.parameter_groups`) and the project's
  model card (`push_to_hub` writes `model_card_text` as README.md);
* `WeightedCrossEntropy`: class weighting as the Trainer's `compute_loss_func` (unbalanced corpora such as
  ShEMO), so the saved model stays a plain classifier;
* `ComputeMetrics`: the Trainer's `compute_metrics` (overall figures, for model selection and logs);
* `predict_with_details`: a split's metrics from `trainer.predict` outputs and the split's `corpus` column:
  the overall and per-corpus figures and the confusion matrices;
* `chance_uar_bound`: the UAR a classifier that ignores the audio reaches by luck on a split of given class
  sizes, and `PlateauAwareEarlyStopping`, early stopping that does not end a run stuck at that level.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import EarlyStoppingCallback, Trainer
from transformers.trainer_utils import has_length

from modeling.optimization import ssm_parameter_groups

from .metrics import EmotionClassificationMetric, flatten_metrics

GROUP_COLUMN = "corpus"


class SSMAwareTrainer(Trainer):
    """`transformers.Trainer` whose default optimiser uses `ssm_parameter_groups`.

    Everything else (optimizer class and its arguments from `TrainingArguments.optim`, the scheduler,
    `optimizers=` / `optimizer_cls_and_kwargs=` passed by the caller) behaves as in `Trainer`.

    Args:
        ssm_lr: learning rate of the SSM parameters; `None` reads `model.config.ssm_lr`.
    """

    def __init__(self, *args: Any, ssm_lr: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ssm_lr = ssm_lr

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        if self.optimizer is not None:
            return self.optimizer
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        builds_own_groups = {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
        if builds_own_groups or not isinstance(optimizer_cls, type):
            # GaLore, LOMO, layer-wise and factory optimizers (Muon, ...) make their own groups
            return super().create_optimizer(model)
        groups = ssm_parameter_groups(opt_model, self.args.weight_decay, self.ssm_lr)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer


class WeightedCrossEntropy:
    """Class-weighted cross-entropy as the Trainer's `compute_loss_func(outputs, labels, num_items_in_batch)`.

    With `num_items_in_batch` (the clips of the whole accumulated batch, over all processes) the weighted
    sum is divided by it, so gradient accumulation and data parallelism give the loss of one big batch (the
    Trainer then leaves the loss unscaled); without it a weighted mean. `SERTrainer` evaluates on the
    weighted cross-entropy of the model's logits alone (`SERTrainer.compute_loss`). A model whose
    output has `branch_logits` (a CNN or S4 with a functionals head) trains each of them on its own weighted
    cross-entropy and adds its `penalty`, as its own unweighted loss does.
    """

    def __init__(self, class_weights: torch.Tensor | Sequence[float]):
        self.class_weights = torch.as_tensor(class_weights, dtype=torch.float32)

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        branches = (outputs.get("branch_logits") if isinstance(outputs, dict) else None) or (logits,)
        penalty = outputs.get("penalty") if isinstance(outputs, dict) else None
        weights = self.class_weights.to(device=logits.device)
        if num_items_in_batch is None:
            loss = sum(nn.functional.cross_entropy(p.float(), labels, weight=weights) for p in branches)
            return loss if penalty is None else loss + penalty
        total = sum(
            nn.functional.cross_entropy(p.float(), labels, weight=weights, reduction="sum") for p in branches
        )
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        loss = total / num_items_in_batch
        # This batch's share of the penalty, so that the accumulated batch counts it once.
        return loss if penalty is None else loss + penalty * len(labels) / num_items_in_batch


class SERTrainer(SSMAwareTrainer):
    """Trainer with a separate evaluation collator and the project's model card.

    Args (besides the Trainer's):
        eval_data_collator: collator of the validation and test dataloaders (None: `data_collator`).
        model_card_text: README.md to write into the output folder (`create_model_card`, `push_to_hub`).
        head_learning_rate: a pre-trained encoder's head (everything outside its body) trains at this rate,
            the body at `args.learning_rate` (None: one rate for all). The scheduler scales both alike.
    """

    def __init__(
        self,
        *args,
        eval_data_collator=None,
        model_card_text: str | None = None,
        head_learning_rate: float | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self._last_eval_order: np.ndarray | None = None  # the order of the last evaluation dataloader
        self.model_card_text = model_card_text
        self.head_learning_rate = head_learning_rate

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.head_learning_rate is None or self.optimizer is not None:
            return super().create_optimizer(model)
        from modeling.encoders import parameter_groups

        opt_model = self.model if model is None else model
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        own_groups = {"params", "model", "optimizer_dict"} & set(optimizer_kwargs)
        if own_groups or not isinstance(optimizer_cls, type):
            raise ValueError(
                f"head_learning_rate: the optimizer {self.args.optim} builds its own parameter groups; use "
                "adamw_torch (the default) or drop head_learning_rate"
            )
        groups = parameter_groups(
            opt_model,
            learning_rate=self.args.learning_rate,
            head_learning_rate=self.head_learning_rate,
            weight_decay=self.args.weight_decay,
        )
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """In training the objective; in evaluation the cross-entropy of the model's prediction,
        class-weighted as in training.

        The two differ for a model with a functionals head: it trains each branch on its own cross-entropy
        plus the head's L2 penalty, and after the head's refit (C chosen on validation) that penalty at the
        config's rate runs into the thousands, a `test_loss` that says nothing about the model.
        """
        if model.training or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        weights = getattr(self.compute_loss_func, "class_weights", None)
        if weights is not None:
            weights = weights.to(device=logits.device)
        loss = nn.functional.cross_entropy(logits.float(), labels.to(logits.device).view(-1), weight=weights)
        return (loss, outputs) if return_outputs else loss

    def _get_eval_sampler(self, eval_dataset) -> torch.utils.data.Sampler | None:
        # Evaluation batches clips of similar length (less padding, as transformers' length grouping gives),
        # longest first, on one process; `predict` then puts its outputs back in the dataset's order.
        # transformers' own length grouping returned them grouped, so anything matched to the clips by
        # position (the `corpus` column's per-corpus figures, a head's inputs) was paired with other clips.
        # On several processes: no sampler, and accelerate shards the split in order. The dataset here is
        # the one the dataloader reads (the Trainer may have dropped columns), so its order is the one kept.
        self._last_eval_order = self._eval_order(eval_dataset)
        return None if self._last_eval_order is None else self._last_eval_order.tolist()

    def _eval_order(self, dataset) -> np.ndarray | None:
        """The order in which evaluation visits `dataset`'s clips: longest first by its `length` column
        (stable), or None for the dataset's own order (no such column, several processes)."""
        if (
            dataset is None
            or not has_length(dataset)
            or self.args.world_size > 1
            or not isinstance(dataset, datasets.Dataset)
            or "length" not in dataset.column_names
        ):
            return None
        return np.argsort(-np.asarray(dataset["length"]), kind="stable")

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        self._last_eval_order = None
        output = super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        order = self._last_eval_order
        if order is None:
            return output
        # Output k belongs to clip order[k]; clip i's is output inverse[i].
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))

        def in_dataset_order(values):
            if isinstance(values, (tuple, list)):
                return type(values)(in_dataset_order(v) for v in values)
            if values is None or np.ndim(values) == 0 or len(values) != len(order):
                return values  # not one row per clip (a model's per-batch scalar, such as its penalty)
            return np.asarray(values)[inverse]

        return output._replace(
            predictions=in_dataset_order(output.predictions), label_ids=in_dataset_order(output.label_ids)
        )

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)

    def _with_eval_collator(self, make_dataloader, dataset):
        """The dataloader keeps the collator it was built with, so the swap lasts only while building it."""
        if self.eval_data_collator is None:
            return make_dataloader(dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return make_dataloader(dataset)
        finally:
            self.data_collator = train_collator

    def create_model_card(self, *args, **kwargs) -> None:
        if self.model_card_text is None:
            return super().create_model_card(*args, **kwargs)
        if self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as f:
                f.write(self.model_card_text)


def _argmax(predictions) -> np.ndarray:
    logits = predictions[0] if isinstance(predictions, tuple) else predictions
    return np.asarray(logits).argmax(axis=-1)


class ComputeMetrics:
    """`compute_metrics` for the Trainer: argmax of the logits, then the overall figures of
    `EmotionClassificationMetric` (accuracy, UAR, macro-F1, per class), flat. Stateless: per-corpus figures
    and confusion matrices come from `predict_with_details`."""

    def __init__(self, label_names: Sequence[str]):
        self.label_names = list(label_names)
        self.metric = EmotionClassificationMetric()

    def __call__(self, eval_prediction) -> dict[str, float]:
        result = self.metric.compute(
            predictions=_argmax(eval_prediction.predictions).tolist(),
            references=np.asarray(eval_prediction.label_ids).tolist(),
            label_names=self.label_names,
        )
        return flatten_metrics(result)


def detailed_metrics(
    predictions: Sequence[int],
    references: Sequence[int],
    label_names: Sequence[str],
    groups: Sequence[str] | None = None,
) -> dict:
    """The nested `EmotionClassificationMetric` result, with `per_group` when `groups` names two or more
    groups (with one, per-corpus figures would repeat the overall ones)."""
    if groups is not None and len(set(groups)) < 2:
        groups = None
    return EmotionClassificationMetric().compute(
        predictions=list(predictions),
        references=list(references),
        label_names=list(label_names),
        groups=groups,
    )


def predict_with_details(
    trainer: Trainer,
    dataset: datasets.Dataset,
    label_names: Sequence[str],
    metric_key_prefix: str = "test",
) -> tuple[dict[str, float], dict]:
    """(flat metrics, nested details) of `dataset`, from `trainer.predict` and its `corpus` column.

    The flat metrics are the Trainer's (`<prefix>_loss`, `<prefix>_uar`, ..., runtime) plus the per-corpus
    figures (`<prefix>_corpus_<name>_uar`, ...); the details hold the confusion matrices (overall and per
    corpus). `trainer.predict` returns the predictions in dataset order, also across processes (`SERTrainer`
    puts them back in that order whatever order it batched them in).
    """
    output = trainer.predict(dataset, metric_key_prefix=metric_key_prefix)
    groups = list(dataset[GROUP_COLUMN]) if GROUP_COLUMN in dataset.column_names else None
    details = detailed_metrics(
        _argmax(output.predictions).tolist(), np.asarray(output.label_ids).tolist(), label_names, groups
    )
    metrics = dict(output.metrics)
    for key, value in flatten_metrics(details, group_key=GROUP_COLUMN).items():
        metrics.setdefault(f"{metric_key_prefix}_{key}", value)
    return metrics, details


def chance_uar_bound(class_counts: Sequence[int], z: float = 2.0) -> float:
    """The UAR up to which a model is indistinguishable from one that ignores the audio, on a split with
    `class_counts` clips per class: chance (1/m over the m classes present) plus `z` standard deviations of
    the UAR of a uniform random guesser (recall of class j ~ Binomial(n_j, 1/m) / n_j, independent).

    A fixed margin would be too strict on a big validation set and too lenient on a small one: with 10
    clips per class and 4 classes the bound is 0.25 + 2 * 0.068 = 0.39, with 100 per class 0.29. A model
    predicting one class always scores exactly 1/m, below the bound whatever the split's size.
    """
    counts = [int(n) for n in class_counts if n > 0]
    if not counts:
        return float("nan")
    m = len(counts)
    p = 1.0 / m
    std = math.sqrt(sum(p * (1.0 - p) / n for n in counts)) / m
    return p + z * std


class PlateauAwareEarlyStopping(EarlyStoppingCallback):
    """`EarlyStoppingCallback` that does not end a run before it has left the chance plateau.

    A model that starts at chance can sit there for several epochs before it begins to learn (the CNN, at
    a learning rate that later trains it well); with plain early stopping, `early_stopping_patience`
    evaluations of a metric that never moved end such a run, and the kept model predicts one class. Here
    evaluations count towards the patience only once the best validation metric so far is above
    `chance_bound` (see `chance_uar_bound`); a run that never gets there trains for all its epochs and is
    then reported as not having learnt (training.run).

    Nor does it end a run in the first `min_progress` of its training steps. On a validation set of a
    few speakers the metric is noisy, and a part of the model that learns fast (a functionals head) lifts
    it above chance within an epoch: a lucky early peak then spent the patience while the network itself
    was still at chance, and the kept checkpoint was the early one (dev-speaker-cv/ROUNDS.md, fifth round).

    Args:
        early_stopping_patience, early_stopping_threshold: as in `EarlyStoppingCallback`.
        chance_bound: the value of `metric_for_best_model` (higher is better) at or below which the run is
            still on the plateau; `None` behaves as `EarlyStoppingCallback`.
        min_progress: the share of the run's steps (`state.max_steps`) before which it does not stop.
    """

    def __init__(
        self,
        early_stopping_patience: int = 1,
        early_stopping_threshold: float | None = 0.0,
        chance_bound: float | None = None,
        min_progress: float = 0.0,
    ):
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.chance_bound = chance_bound
        self.min_progress = min_progress

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        metric = args.metric_for_best_model
        metric = metric if metric.startswith("eval_") else f"eval_{metric}"
        value = metrics.get(metric)
        if self.chance_bound is not None and value is not None and args.greater_is_better is not False:
            # state.best_metric does not hold this evaluation yet (the Trainer updates it afterwards).
            best = value if state.best_metric is None else max(value, state.best_metric)
            if best <= self.chance_bound:
                self.early_stopping_patience_counter = 0
                return
        stop_requested = control.should_training_stop  # by another callback: not ours to cancel
        super().on_evaluate(args, state, control, metrics, **kwargs)
        # The patience is counted all along; only the stop waits.
        if not stop_requested and state.global_step < self.min_progress * state.max_steps:
            control.should_training_stop = False

    def state(self) -> dict:
        exported = super().state()
        exported["args"]["chance_bound"] = self.chance_bound
        exported["args"]["min_progress"] = self.min_progress
        return exported


__all__ = [
    "ComputeMetrics",
    "PlateauAwareEarlyStopping",
    "SERTrainer",
    "SSMAwareTrainer",
    "WeightedCrossEntropy",
    "chance_uar_bound",
    "detailed_metrics",
    "predict_with_details",
]
