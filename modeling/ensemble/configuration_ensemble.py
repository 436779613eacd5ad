"""Configuration of the ensemble: trained classifiers of this project, their probabilities averaged."""

from __future__ import annotations

from transformers import PretrainedConfig


class EnsembleConfig(PretrainedConfig):
    r"""
    Configuration of `EnsembleForAudioClassification`: the members' own configurations, and how much each
    member's probabilities count.

    Args:
        members (`list[dict]`):
            Each member's configuration as its `to_dict()` writes it, with its `model_type` (`ser-cnn` or
            `ser-s4`), in the order of the member modules. The ensemble rebuilds each member from it, so a
            saved ensemble needs no other file than its own config.json and weights.
        member_weights (`list[float]`, *optional*):
            The weight of each member's class probabilities in their average; they are normalised to sum to 1.
            Default: equal weights, the combination measured on the development corpora (the mean of the
            CNN's and the S4's softmax outputs, nothing fitted: benchmarks/results/dev-speaker-cv/ROUNDS.md,
            thirty-fifth and thirty-sixth rounds). Weights fitted on the validation clips lost on every corpus
            (thirty-seventh round).
        num_labels / id2label / label2id:
            The emotions, as in every `PretrainedConfig`; every member has the same.
    """

    model_type = "ser-ensemble"

    def __init__(
        self,
        members: list[dict | PretrainedConfig] | None = None,
        member_weights: list[float] | None = None,
        **kwargs,
    ):
        self.members = [m.to_dict() if isinstance(m, PretrainedConfig) else dict(m) for m in members or []]
        self.member_weights = (
            [float(w) for w in member_weights] if member_weights is not None else [1.0] * len(self.members)
        )
        if len(self.member_weights) != len(self.members):
            raise ValueError(
                f"member_weights: {len(self.member_weights)} weights for {len(self.members)} members; give "
                "one weight per member, or none for equal weights"
            )
        if any(w < 0 for w in self.member_weights) or (self.members and sum(self.member_weights) <= 0):
            raise ValueError(f"member_weights {self.member_weights}: give non-negative weights, not all zero")
        for name in ("sampling_rate", "normalize_waveform"):
            values = {m.get(name) for m in self.members}
            if len(values) > 1:
                raise ValueError(
                    f"members: their {name} differ ({sorted(values, key=str)}); every member must take the "
                    "same input, so train them with the same setting"
                )
        super().__init__(**kwargs)

    # The input every member takes (they agree, checked above): what `modeling.feature_extractor_for` reads.
    @property
    def sampling_rate(self) -> int:
        return self.members[0].get("sampling_rate", 16000) if self.members else 16000

    @property
    def normalize_waveform(self) -> bool:
        return self.members[0].get("normalize_waveform", True) if self.members else True


__all__ = ["EnsembleConfig"]
