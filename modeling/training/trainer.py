"""`SERTrainer`: the Trainer for all three models.

On top of the project's SSM-aware optimiser (`modeling.optimization`: A, B, dt with their own learning rate
and no weight decay, the other parameters as the Trainer would group them) it adds:

* class weighting: a weighted cross-entropy when `class_weights` is given (unbalanced corpora such as
  ShEMO), computed here rather than in the model so the saved model stays a plain classifier;
* per-corpus metrics: before each evaluation it hands the corpus of every example of the set being
  evaluated to `ComputeMetrics` (the evaluation dataloader keeps dataset order, also across processes);
* a separate `eval_data_collator` for validation and test (training-only augmentation stays out of them);
* the project's model card: `push_to_hub` writes `model_card_text` as README.md instead of the generic card.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..optimization import SSMAwareTrainer
from .metrics import ComputeMetrics


class SERTrainer(SSMAwareTrainer):
    """Trainer with class-weighted loss, per-corpus metrics and the project's model card.

    Args (besides the Trainer's):
        class_weights: one weight per class for the cross-entropy (None: the model's own unweighted loss).
        group_column: column of the evaluation datasets naming each example's group (default ``corpus``).
        eval_data_collator: collator of the validation and test dataloaders (None: `data_collator`).
        model_card_text: README.md to write into the output folder when pushing to the Hub.
    """

    def __init__(
        self,
        *args,
        class_weights: torch.Tensor | None = None,
        group_column: str = "corpus",
        model_card_text: str | None = None,
        eval_data_collator=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.class_weights = class_weights
        self.group_column = group_column
        self.model_card_text = model_card_text

    def compute_loss(
        self, model: nn.Module, inputs: dict, return_outputs: bool = False, num_items_in_batch=None
    ):
        if self.class_weights is None or "labels" not in inputs:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        weights = self.class_weights.to(device=logits.device, dtype=torch.float32)
        # A per-batch weighted mean: the Trainer divides it by the gradient accumulation steps itself.
        loss = nn.functional.cross_entropy(logits.float(), labels, weight=weights)
        return (loss, outputs) if return_outputs else loss

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

    def _set_groups(self, dataset) -> None:
        if isinstance(self.compute_metrics, ComputeMetrics):
            has_groups = dataset is not None and self.group_column in getattr(dataset, "column_names", [])
            self.compute_metrics.groups = list(dataset[self.group_column]) if has_groups else None

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        if not isinstance(eval_dataset, dict) and not (
            eval_dataset is None and isinstance(self.eval_dataset, dict)
        ):
            self._set_groups(eval_dataset if eval_dataset is not None else self.eval_dataset)
        return super().evaluate(
            eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test"):
        self._set_groups(test_dataset)
        return super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def create_model_card(self, *args, **kwargs) -> None:
        if self.model_card_text is None:
            return super().create_model_card(*args, **kwargs)
        if self.is_world_process_zero():
            with open(os.path.join(self.args.output_dir, "README.md"), "w", encoding="utf-8") as f:
                f.write(self.model_card_text)
