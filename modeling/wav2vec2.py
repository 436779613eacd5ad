"""transformers' `Wav2Vec2ForSequenceClassification`, built for the chosen emotions.

The classifier mean-pools the projected hidden states. Given an `attention_mask` it averages over the real
frames only (frames whose whole receptive field lies inside the real samples) and the transformer encoder
masks padded frames out of attention and zeroes them before its positional convolution. Whether padding can
still change a prediction depends on the checkpoint's convolutional feature encoder (`feat_extract_norm`):

* ``"layer"`` (wav2vec2-large-lv60, XLS-R, ...): LayerNorm per frame. With an attention mask padding does not
  change the logits (tested to 1e-4 in tests/test_models_common.py).
* ``"group"`` (facebook/wav2vec2-base, the default here): the first conv layer's GroupNorm normalises each
  channel over *all* time steps, padding included, so a clip padded in a batch gets slightly different
  logits than the same clip alone (also tested, so this note stays true). The pipeline classifies one clip
  at a time without padding and is unaffected; to evaluate such a checkpoint exactly, use batch size 1 or
  group clips by length. transformers' docs advise not passing an attention mask to these checkpoints because
  they were pre-trained without one; this project passes it anyway (as transformers' audio-classification
  example does) so that the pooling at least ignores padded frames.

The feature extractor is the project's `SERFeatureExtractor` (zero-mean / unit-variance per clip over its real
samples, attention mask on), the same one the CNN and S4 save.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from .auto import feature_extractor_for
from .feature_extraction import SERFeatureExtractor

DEFAULT_CHECKPOINT = "facebook/wav2vec2-base"


def build_wav2vec2(
    model_name_or_path: str = DEFAULT_CHECKPOINT,
    *,
    label_names: Sequence[str],
    freeze_feature_encoder: bool = True,
    freeze_encoder: bool = False,
    use_weighted_layer_sum: bool = False,
    **config_overrides,
) -> tuple[Wav2Vec2ForSequenceClassification, SERFeatureExtractor]:
    """Load a wav2vec2 checkpoint with a fresh classification head over `label_names`.

    Args:
        model_name_or_path: Hub id or local directory of a wav2vec2 checkpoint (pre-trained or fine-tuned).
        label_names: class names in label-id order (e.g. the emotions chosen for the run).
        freeze_feature_encoder: keep the convolutional waveform encoder fixed (the usual fine-tuning recipe).
        freeze_encoder: keep the whole wav2vec2 body fixed and train only the head (a linear probe).
        use_weighted_layer_sum: pool a learned softmax-weighted sum of all hidden layers (SUPERB style)
            instead of the last layer.
        **config_overrides: any other `Wav2Vec2Config` field, e.g. ``mask_time_prob=0.05``,
            ``classifier_proj_size=256``, ``layerdrop=0.0``.

    Returns:
        The model and the feature extractor to save with it.
    """
    label_names = list(label_names)
    if not label_names:
        raise ValueError(
            "label_names: give at least one class name, e.g. ['anger', 'happy', 'neutral', 'sadness']"
        )
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names: {label_names} repeats a name")
    unknown = [k for k in config_overrides if not hasattr(Wav2Vec2Config(), k)]
    if unknown:
        raise ValueError(f"config_overrides: {unknown} are not Wav2Vec2Config fields")
    model = Wav2Vec2ForSequenceClassification.from_pretrained(
        model_name_or_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        use_weighted_layer_sum=use_weighted_layer_sum,
        ignore_mismatched_sizes=True,  # a checkpoint fine-tuned on other classes has a head of another size
        **config_overrides,
    )
    if freeze_encoder:
        model.freeze_base_model()
    elif freeze_feature_encoder:
        model.freeze_feature_encoder()
    return model, feature_extractor_for(model)
