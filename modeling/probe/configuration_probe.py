"""Configuration of the probe: a frozen pre-trained speech encoder and a light head on its pooled layers."""

from __future__ import annotations

from transformers import PretrainedConfig

POOLINGS = ("mean+std", "mean")


class ProbeConfig(PretrainedConfig):
    r"""Configuration of [`ProbeForAudioClassification`] (the EmoBox / SUPERB protocol).

    Args:
        encoder_config (`dict`): the frozen encoder's config (``encoder.config.to_dict()``, with its
            `model_type`); the encoder is rebuilt from it, so a saved probe needs nothing else.
        encoder_name_or_path (`str`, *optional*): where the encoder's weights came from (for the model card
            and the feature cache; not read when loading).
        num_feature_layers (`int`, *optional*): hidden states the encoder returns (transformer layers + 1 for
            the input embeddings); defaults to the encoder config's `num_hidden_layers` + 1.
        pooling (`str`, defaults to `"mean+std"`): per layer, the head reads the mean and the standard
            deviation over real frames (`"mean+std"`) or the mean only (`"mean"`, as EmoBox and SUPERB do).
            The cached features always hold both, so either head trains on the same cache.
        head_hidden_size (`int`, defaults to 256): width of the MLP's hidden layer.
        head_dropout (`float`, defaults to 0.1): dropout before each linear layer of the MLP.

    Labels: `num_labels`, `id2label`, `label2id` as in every `PretrainedConfig`.
    """

    model_type = "ser-probe"

    def __init__(
        self,
        encoder_config: dict | None = None,
        encoder_name_or_path: str | None = None,
        num_feature_layers: int | None = None,
        pooling: str = "mean+std",
        head_hidden_size: int = 256,
        head_dropout: float = 0.1,
        **kwargs,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: {pooling!r} is not one of {POOLINGS}")
        self.encoder_config = dict(encoder_config) if encoder_config is not None else None
        self.encoder_name_or_path = encoder_name_or_path
        if num_feature_layers is None and encoder_config is not None:
            layers = encoder_config.get("num_hidden_layers", encoder_config.get("encoder_layers"))
            num_feature_layers = int(layers) + 1 if layers is not None else None
        self.num_feature_layers = num_feature_layers
        self.pooling = pooling
        self.head_hidden_size = int(head_hidden_size)
        self.head_dropout = float(head_dropout)
        super().__init__(**kwargs)

    @property
    def encoder_hidden_size(self) -> int | None:
        if self.encoder_config is None:
            return None
        return int(self.encoder_config.get("hidden_size", self.encoder_config.get("d_model")))
