"""An ensemble of the project's classifiers: the same clip through every member, their probabilities averaged.

    p(class | clip) = sum_m w_m softmax(logits_m)        (w = member_weights / their sum)

The model's `logits` are log p, so a softmax of them (the audio-classification pipeline's) gives the averaged
probabilities back, and the cross-entropy of `logits` is that of the average. Each member is a complete
`CNNForAudioClassification` or `S4ForAudioClassification` with its own front-end, functionals head and branch
weights, trained on its own (`training.ensemble`); the ensemble adds no parameter.

Why average probabilities rather than logits: the members' logits live on different scales (each is a sum of a
network's and a refitted linear head's logits, weighted on validation clips), while their probabilities are
calibrated on the same validation clips. The mean of the CNN's and the S4's softmax outputs is what was
measured on the development corpora (benchmarks/results/dev-speaker-cv/ROUNDS.md, thirty-fifth round).

Padding never changes a prediction, because it changes no member's. `forward` checks nothing, as the members'
do not: `SERFeatureExtractor` checks the input, with the longest of the members' shortest clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..cnn import CNNConfig, CNNForAudioClassification
from ..s4 import S4Config, S4ForAudioClassification
from .configuration_ensemble import EnsembleConfig

MEMBER_CLASSES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    CNNConfig.model_type: (CNNConfig, CNNForAudioClassification),
    S4Config.model_type: (S4Config, S4ForAudioClassification),
}


@dataclass
class EnsembleClassifierOutput(SequenceClassifierOutput):
    """`logits`: log of the averaged probabilities. `member_logits`: each member's own logits, in order."""

    member_logits: tuple[torch.Tensor, ...] | None = None


def member_config(config_dict: dict) -> PretrainedConfig:
    """A member's configuration from its dict (an unknown `model_type` is a ValueError naming the known)."""
    model_type = config_dict.get("model_type")
    if model_type not in MEMBER_CLASSES:
        raise ValueError(
            f"ensemble member of model_type {model_type!r}: members are {', '.join(MEMBER_CLASSES)} models"
        )
    return MEMBER_CLASSES[model_type][0].from_dict(config_dict)


class EnsemblePreTrainedModel(PreTrainedModel):
    config_class = EnsembleConfig
    base_model_prefix = "ensemble"
    main_input_name = "input_values"

    def _init_weights(self, module: nn.Module) -> None:
        # Every parameter belongs to a member, and transformers initialises a member with its own
        # `_init_weights` (sub-models dispatch to theirs): nothing is left for the ensemble.
        pass


class EnsembleForAudioClassification(EnsemblePreTrainedModel):
    """The members' class probabilities, averaged with `config.member_weights`; see the module docstring."""

    def __init__(self, config: EnsembleConfig):
        super().__init__(config)
        members = []
        for config_dict in config.members:
            member = member_config(config_dict)
            members.append(MEMBER_CLASSES[member.model_type][1](member))
        self.members = nn.ModuleList(members)
        self.post_init()

    @classmethod
    def from_members(
        cls, members: list[PreTrainedModel], member_weights: list[float] | None = None
    ) -> EnsembleForAudioClassification:
        """The ensemble of trained `members` (their weights copied): they must classify the same emotions in
        the same order, and be CNN or S4 models (a ValueError says which member differs)."""
        if not members:
            raise ValueError("members: give at least one trained model")
        labels = members[0].config.id2label
        for i, member in enumerate(members):
            if member.config.model_type not in MEMBER_CLASSES:
                raise ValueError(
                    f"members[{i}] is a {member.config.model_type} model; members are "
                    f"{', '.join(MEMBER_CLASSES)} models"
                )
            if member.config.id2label != labels:
                raise ValueError(
                    f"members[{i}] classifies {list(member.config.id2label.values())}, members[0] "
                    f"{list(labels.values())}: every member must have the same emotions in the same order"
                )
        config = EnsembleConfig(
            members=[m.config for m in members],
            member_weights=member_weights,
            id2label=dict(labels),
            label2id={name: i for i, name in labels.items()},
        )
        ensemble = cls(config)
        for own, trained in zip(ensemble.members, members, strict=True):
            own.load_state_dict(trained.state_dict())
        return ensemble.eval()

    @property
    def min_input_samples(self) -> int:
        """The shortest clip every member can classify."""
        # The one lookup that knows where each model keeps it; imported here because modeling.auto imports
        # this module to register it.
        from ..auto import min_input_samples

        return max(min_input_samples(member) for member in self.members)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> EnsembleClassifierOutput | tuple:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`): mono 16 kHz audio, right-padded, as
            `SERFeatureExtractor` returns it (which also checks it).
        attention_mask (`torch.LongTensor` of shape `(batch, samples)`, *optional*): 1 real sample, 0 padding.
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*): class ids; gives the cross-entropy `loss`
            of the averaged probabilities.
        """
        member_logits = tuple(
            member(input_values, attention_mask=attention_mask).logits for member in self.members
        )
        # Read from the config on every call, as the members read their branch weights.
        total = sum(self.config.member_weights)
        weighted = [
            torch.log_softmax(logits.float(), dim=-1)
            + (math.log(weight / total) if weight > 0 else -math.inf)
            for logits, weight in zip(member_logits, self.config.member_weights, strict=True)
        ]
        logits = torch.logsumexp(torch.stack(weighted), dim=0)
        loss = None
        if labels is not None:
            loss = nn.functional.nll_loss(logits, labels.to(logits.device).view(-1))
        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return EnsembleClassifierOutput(loss=loss, logits=logits, member_logits=member_logits)


__all__ = ["EnsembleForAudioClassification", "EnsemblePreTrainedModel"]
