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

Kept for callers of `build_wav2vec2`, which returns the project's `SERFeatureExtractor` (zero-mean /
unit-variance per clip over its real samples, attention mask on, the same one the CNN and S4 save). The model
itself comes from `modeling.encoders.build_encoder_classifier`, which loads any speech encoder family;
training (`run_train.py --model encoder`) uses that directly and saves the family's own transformers
feature extractor, so the saved model needs no remote code.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import Wav2Vec2ForSequenceClassification

from .auto import feature_extractor_for
from .encoders import build_encoder_classifier
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
    """Load a wav2vec2 checkpoint with a fresh classification head over `label_names` (see
    `modeling.encoders.build_encoder_classifier` for the arguments), with the project's feature extractor.

    The model is returned in eval mode, as `from_pretrained` gives it (the Trainer switches to training).
    """
    model, _ = build_encoder_classifier(
        model_name_or_path,
        label_names,
        freeze_feature_encoder=freeze_feature_encoder,
        freeze_encoder=freeze_encoder,
        use_weighted_layer_sum=use_weighted_layer_sum,
        **config_overrides,
    )
    model.eval()
    return model, feature_extractor_for(model)
