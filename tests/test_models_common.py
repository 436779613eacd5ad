"""The contract all three classifiers share (tiny random sizes, no network).

Interface (SequenceClassifierOutput, loss), save/load, Auto-class registration, the audio-classification
pipeline, padding invariance, learning (a small batch is overfitted, every trainable parameter gets a
gradient), bad input (empty, wrongly sampled, multi-channel, too short) and the Hub contract (remote code in a
Python without this project; push_to_hub up to the upload call).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from test_cnn import tiny_config as tiny_cnn_config
from test_s4 import tiny_config as tiny_s4_config
from test_s4 import tiny_model as tiny_s4_model
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    pipeline,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from modeling import (
    CNNConfig,
    CNNForAudioClassification,
    S4Config,
    S4ForAudioClassification,
    SERFeatureExtractor,
    build_wav2vec2,
    feature_extractor_for,
    push_to_hub,
    save_for_hub,
)
from modeling.cnn.configuration_cnn import EARLIER_DEFAULTS as CNN_EARLIER_DEFAULTS
from modeling.s4.configuration_s4 import EARLIER_DEFAULTS as S4_EARLIER_DEFAULTS

LABELS = ["anger", "happy", "neutral", "sadness"]
LABEL_MAPS = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
KINDS = ["cnn", "s4", "wav2vec2"]
CUSTOM_KINDS = ["cnn", "s4"]
SR = 16000


def tiny_wav2vec2_checkpoint(path: Path, feat_extract_norm: str = "layer", **overrides) -> Path:
    """A random pre-trained-style wav2vec2 body (no classification head), saved like a Hub checkpoint;
    `overrides` replace any of its config values."""
    values = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=feat_extract_norm,
        do_stable_layer_norm=feat_extract_norm == "layer",
        mask_time_prob=0.05,
        mask_time_length=2,
        layerdrop=0.0,
        classifier_proj_size=16,
    )
    config = Wav2Vec2Config(**{**values, **overrides})
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory) -> Path:
    return tiny_wav2vec2_checkpoint(tmp_path_factory.mktemp("w2v_layer"))


def build(kind: str, wav2vec2_dir: Path, dropout: bool = True):
    """A tiny model of `kind` and its feature extractor; `dropout=False` turns every dropout off."""
    torch.manual_seed(0)
    if kind == "cnn":
        config = CNNConfig(
            conv_channels=[8, 16, 16, 16],
            n_mfcc=13,
            n_mels=24,
            use_lstm=True,
            lstm_hidden_size=8,
            attention_size=16,
            classifier_hidden_size=16,
            **({} if dropout else {"conv_dropout": 0.0, "classifier_dropout": 0.0}),
            **LABEL_MAPS,
        )
        model = CNNForAudioClassification(config)
        return model, feature_extractor_for(model)
    if kind == "s4":
        config = S4Config(
            d_model=16,
            n_layers=2,
            d_state=8,
            mel_bins=16,
            **({} if dropout else {"dropout": 0.0}),
            **LABEL_MAPS,
        )
        model = S4ForAudioClassification(config)
        return model, feature_extractor_for(model)
    no_dropout = {
        name: 0.0
        for name in (
            "hidden_dropout",
            "attention_dropout",
            "activation_dropout",
            "feat_proj_dropout",
            "final_dropout",
        )
    }
    return build_wav2vec2(str(wav2vec2_dir), label_names=LABELS, **({} if dropout else no_dropout))


def tone(label: int, seconds: float, seed: int) -> np.ndarray:
    """A clip whose class is audible: a tone per label, with noise and a random level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    clip = np.sin(2 * np.pi * (220.0 * 2**label) * t) + 0.3 * rng.standard_normal(t.size)
    return (rng.uniform(0.05, 0.5) * clip).astype(np.float32)


CLIP_SECONDS = (0.6, 0.45, 0.8, 0.5)


def clips() -> list[np.ndarray]:
    return [tone(label, seconds, seed=label) for label, seconds in enumerate(CLIP_SECONDS)]


def batch(feature_extractor, arrays):
    return feature_extractor(arrays, sampling_rate=SR, padding=True, return_tensors="pt")


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


# ---------------------------------------------------------------------------------------------------------
# Interface, save / load, registration
# ---------------------------------------------------------------------------------------------------------


def test_output_and_loss(kind, wav2vec2_dir):
    model, feature_extractor = build(kind, wav2vec2_dir)
    model.eval()
    inputs = batch(feature_extractor, clips())
    labels = torch.tensor([0, 1, 2, 3])
    output = model(**inputs, labels=labels)
    assert isinstance(output, SequenceClassifierOutput)
    assert output.logits.shape == (4, len(LABELS))
    # The S4's functionals head and the network each learn on their own cross-entropy (test_cnn.py).
    parts = getattr(output, "branch_logits", None) or (output.logits,)
    expected = sum(torch.nn.functional.cross_entropy(part, labels) for part in parts)
    if getattr(output, "penalty", None) is not None:
        expected = expected + output.penalty
    assert torch.allclose(output.loss, expected)
    assert model(**inputs).loss is None
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.label2id == LABEL_MAPS["label2id"]


def test_save_and_load_give_identical_logits(kind, wav2vec2_dir, tmp_path):
    model, feature_extractor = build(kind, wav2vec2_dir)
    model.eval()
    written = save_for_hub(model, feature_extractor, tmp_path)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "feature_extraction.py"} <= set(
        written
    )

    # Inside the project the Auto classes know the custom types: no trust_remote_code needed.
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    loaded_extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded_extractor) is SERFeatureExtractor
    assert loaded_extractor.min_samples == feature_extractor.min_samples > 0
    inputs = batch(loaded_extractor, clips())
    with torch.no_grad():
        # Same weights, same code: what is promised is the same logits up to float32 rounding. Not bit
        # equality: newer torch / transformers versions may pick another kernel after the round trip
        # (differences of 3e-8 were seen), which no user could tell apart.
        torch.testing.assert_close(model(**inputs).logits, loaded(**inputs).logits, atol=1e-6, rtol=0)
    assert loaded.config.id2label == dict(enumerate(LABELS))


def test_state_dict_names_are_those_of_saved_checkpoints():
    """Checkpoints saved by earlier versions load only if every tensor keeps its name: moving code (the S4
    kernels into kernels_s4.py, the CNN's pooling) must not rename a module. These are the names such a
    checkpoint holds. (Their config.json names the normalisation they were trained with: the per-utterance
    one then, which has no tensors.)"""
    cnn = CNNForAudioClassification(
        CNNConfig(
            feature_normalization="utterance",
            pitch_features=False,  # those checkpoints' settings
            functionals_head=False,
            conv_channels=[8],
            norm_type="batch",
            use_lstm=True,
            lstm_hidden_size=4,
            attention_size=8,
            classifier_hidden_size=8,
            num_labels=3,
        )
    )
    lstm = [
        f"lstm.{kind}_{gate}_l0{suffix}"
        for kind in ("weight", "bias")
        for gate in ("ih", "hh")
        for suffix in ("", "_reverse")
    ]
    assert set(cnn.state_dict()) == {
        "attention.projection.bias",
        "attention.projection.weight",
        "attention.score.weight",
        "classifier.0.bias",
        "classifier.0.weight",
        "classifier.3.bias",
        "classifier.3.weight",
        "conv_blocks.0.conv.bias",
        "conv_blocks.0.conv.weight",
        "conv_blocks.0.norm.bias",
        "conv_blocks.0.norm.num_batches_tracked",
        "conv_blocks.0.norm.running_mean",
        "conv_blocks.0.norm.running_var",
        "conv_blocks.0.norm.weight",
        "features.dct",
        "features.mel_filters",
        "features.window",
        *lstm,
    }
    small = dict(d_model=8, n_layers=1, d_state=4, mel_bins=8, conv_channels=8, num_labels=3)
    small.update(functionals_head=False, pitch_features=False, pooling="mean")  # those checkpoints' settings
    common = {
        "blocks.0.norm.bias",
        "blocks.0.norm.weight",
        "blocks.0.output.0.bias",
        "blocks.0.output.0.weight",
        "blocks.0.s4.D",
        "blocks.0.s4.kernel.C",
        "blocks.0.s4.kernel.ssm_A_imag",
        "blocks.0.s4.kernel.ssm_A_log_real",
        "blocks.0.s4.kernel.ssm_B",
        "blocks.0.s4.kernel.ssm_log_dt",
        "classifier.bias",
        "classifier.weight",
        "final_norm.bias",
        "final_norm.weight",
        "input_proj.bias",
        "input_proj.weight",
    }
    s4d_mel = S4ForAudioClassification(S4Config(**small))
    assert set(s4d_mel.state_dict()) == common | {"frontend.analysis_window", "frontend.mel_filters"}
    # The functionals head and the energy peaks, smoothed contours and MFCC heads beside it (the defaults now)
    # came later: checkpoints without the first's tensors load with it at zero (test_s4.py); configs without
    # the others' fields load without them (EARLIER_DEFAULTS).
    with_heads = S4ForAudioClassification(
        S4Config(**{**small, "functionals_head": True, "mfcc_head": 0, "spectrum_head": False})
    )
    assert set(with_heads.state_dict()) - set(s4d_mel.state_dict()) == {
        f"{head}.{name}"
        for head in ("functionals_head", "energy_peaks_head", "smoothed_contours_head")
        for name in ("weight", "bias", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked")
    }
    # The MFCC head adds its own tensors and its DCT matrix, the spectrum head its own tensors.
    with_mfcc_head = S4ForAudioClassification(S4Config(**{**small, "functionals_head": True}))
    assert set(with_mfcc_head.state_dict()) - set(with_heads.state_dict()) == {
        f"{head}.{name}"
        for head in ("mfcc_head", "spectrum_head")
        for name in ("weight", "bias", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked")
    } | {"mfcc_head_dct"}
    # Attention pooling (the default since the fifty-fourth round) names its tensors as the CNN's does.
    with_attention = S4ForAudioClassification(S4Config(**{**small, "pooling": "attention"}))
    assert set(with_attention.state_dict()) - set(s4d_mel.state_dict()) == {
        "attention.projection.bias",
        "attention.projection.weight",
        "attention.score.weight",
    }
    dplr_conv = S4ForAudioClassification(S4Config(kernel="s4", frontend="conv", **small))
    assert set(dplr_conv.state_dict()) == common | {
        "blocks.0.s4.kernel.ssm_P",
        "frontend.convs.0.bias",
        "frontend.convs.0.weight",
        "frontend.convs.2.bias",
        "frontend.convs.2.weight",
        "frontend.norm.bias",
        "frontend.norm.weight",
    }


@pytest.mark.parametrize("kind_", ["cnn", "s4"])
def test_a_checkpoint_of_the_cosine_table_pitch_tracker_predicts_as_it_did(kind_, wav2vec2_dir, tmp_path):
    """The tracker's buffers are constants of the configuration. A checkpoint saved before the
    autocorrelation became an inverse FFT holds `cosines` and `window_autocorrelation` and lacks
    `window_correction`: the constant is rebuilt, not left as the meta device's uninitialised memory."""
    model, _ = build(kind_, wav2vec2_dir)
    model.config.pitch_features = True
    model = type(model)(model.config).eval()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    prefix = next(name for name in weights if name.endswith("pitch.window_correction")).rsplit(".", 1)[0]
    correction = weights.pop(f"{prefix}.window_correction")
    weights[f"{prefix}.cosines"] = torch.zeros(513, 214)
    weights[f"{prefix}.window_autocorrelation"] = torch.ones(214)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = type(model).from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded.get_submodule(prefix).window_correction, correction)
    audio = torch.randn(2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio).logits, model(audio).logits)


def model_with(kind_: str, **overrides) -> torch.nn.Module:
    """A tiny CNN or S4 whose every part shows in its logits (the heads start at zero)."""
    if kind_ == "s4":
        return tiny_s4_model(**overrides)
    torch.manual_seed(0)
    model = CNNForAudioClassification(tiny_cnn_config(**overrides))
    for head in (model.functionals_head, model.energy_peaks_head):
        if head is not None:
            torch.nn.init.normal_(head.weight, std=0.05)
    return model.eval()


# The heads that do not train, each model's: fitted after training only (`training.calibration`).
FITTED_AFTER_TRAINING = {
    "cnn": ("raw_contours_head", "spectrum_head"),
    "s4": ("smoothed_contours_head", "mfcc_head", "spectrum_head"),
}


@pytest.mark.parametrize("kind_", CUSTOM_KINDS)
def test_functionals_smoothing_changes_what_the_functionals_head_sees_and_nothing_else(kind_):
    """The same weights with and without `functionals_smoothing`: the network's logits are equal, the head's
    are those of its linear classifier on `extended_functionals(..., smoothing)` of the same channels."""
    without_second_head = dict.fromkeys(FITTED_AFTER_TRAINING[kind_], False)  # their own test is below
    smoothed, raw = (
        model_with(kind_, functionals_smoothing=True, **without_second_head),
        model_with(kind_, functionals_smoothing=False, **without_second_head),
    )
    raw.load_state_dict(smoothed.state_dict())
    seen = {}
    for name, model in (("smoothed", smoothed), ("raw", raw)):
        model.functionals_head.register_forward_pre_hook(
            lambda module, args, name=name: seen.update({name: args})
        )
    audio = torch.randn(2, 8000)
    audio[1, 6000:] = 0.0
    with torch.no_grad():
        out_smoothed, out_raw = smoothed(audio), raw(audio)
    torch.testing.assert_close(out_smoothed.branch_logits[0], out_raw.branch_logits[0])
    assert not torch.allclose(out_smoothed.branch_logits[1], out_raw.branch_logits[1])
    torch.testing.assert_close(seen["smoothed"][0], seen["raw"][0])  # the same channels, summarised otherwise
    extended_functionals = sys.modules[type(smoothed).__module__].extended_functionals
    for name, smoothing, output in (("smoothed", True, out_smoothed), ("raw", False, out_raw)):
        head = (smoothed if smoothing else raw).functionals_head
        features = extended_functionals(*seen[name], smoothing)
        standardised = (features - head.norm.running_mean) / (head.norm.running_var + head.norm.eps).sqrt()
        torch.testing.assert_close(
            output.branch_logits[1], standardised @ head.weight.T + head.bias, atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize(
    "kind_,head", [(kind_, head) for kind_, heads in FITTED_AFTER_TRAINING.items() for head in heads]
)
def test_an_unfitted_head_leaves_training_as_without_it(kind_, head):
    """Until it is fitted (after training) such a head adds nothing: the same weights give the same logits,
    loss and gradients with and without it, so training keeps the same checkpoint; it has no parameter the
    optimizer would train."""
    config = dict(functionals_head=True, functionals="extended", pitch_features=True)
    model_class, tiny_config = {
        "cnn": (CNNForAudioClassification, tiny_cnn_config),
        "s4": (S4ForAudioClassification, tiny_s4_config),
    }[kind_]
    torch.manual_seed(0)
    plain = model_class(tiny_config(**config, **{head: False})).train()
    torch.manual_seed(0)
    with_head = model_class(tiny_config(**config, **{head: True})).train()
    with torch.no_grad():
        torch.nn.init.normal_(plain.functionals_head.weight, std=0.1)
    missing, unexpected = with_head.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith(head) for name in missing)
    assert not getattr(with_head, head).weight.any()
    assert not any(p.requires_grad for p in getattr(with_head, head).parameters())
    waveform, labels = torch.randn(3, 8000), torch.tensor([0, 1, 2])
    outputs = []
    for model in (plain, with_head):
        torch.manual_seed(1)  # the same SpecAugment masks and dropout
        out = model(waveform, labels=labels)
        out.loss.backward()
        outputs.append(out)
    torch.testing.assert_close(outputs[1].logits, outputs[0].logits)
    torch.testing.assert_close(outputs[1].loss, outputs[0].loss)
    gradients = {name: p.grad for name, p in with_head.named_parameters() if p.requires_grad}
    assert gradients.keys() == {name for name, p in plain.named_parameters() if p.requires_grad}
    for name, p in plain.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(gradients[name], p.grad, msg=name)


@pytest.mark.parametrize("kind_", CUSTOM_KINDS)
def test_the_logits_are_the_branches_weighted_by_branch_weights(kind_, tmp_path):
    """`logits` = branch_weights[0] * network + branch_weights[1] * heads (the functionals head, and the
    energy peaks head where the model has one); the branches themselves (each trained on its own loss) are
    unweighted, and the weights are saved with the model."""
    model = model_with(kind_)
    audio = torch.randn(2, 8000)
    with torch.no_grad():
        plain = model(audio)
        model.config.branch_weights = [0.25, 3.0]
        weighted = model(audio)
    network, *heads = plain.branch_logits
    head = sum(heads)
    assert not torch.allclose(network, torch.zeros_like(network)) and not torch.allclose(head, 0 * head)
    torch.testing.assert_close(plain.logits, network + head)
    torch.testing.assert_close(weighted.logits, 0.25 * network + 3.0 * head)
    for after, before in zip(weighted.branch_logits, plain.branch_logits, strict=True):
        torch.testing.assert_close(after, before)
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert loaded.config.branch_weights == [0.25, 3.0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio).logits, weighted.logits)


@pytest.mark.parametrize("config_class", [CNNConfig, S4Config])
@pytest.mark.parametrize("weights", [[1.0], [1.0, -0.5], [1.0, float("inf")]])
def test_branch_weights_must_be_two_finite_non_negative_numbers(config_class, weights):
    with pytest.raises(ValueError, match="branch_weights"):
        config_class(branch_weights=weights)


@pytest.mark.parametrize(
    "kind_,field,legacy",
    [("cnn", *item) for item in sorted(CNN_EARLIER_DEFAULTS.items())]
    + [("s4", *item) for item in sorted(S4_EARLIER_DEFAULTS.items())],
)
def test_a_checkpoint_saved_before_a_default_changed_loads_as_it_was_trained(tmp_path, kind_, field, legacy):
    """Its config.json lacks the field (it predates it, or predates the default's change): the value it was
    trained with applies, not today's default (each config's `from_dict` and `EARLIER_DEFAULTS`)."""
    model = model_with(kind_, **{field: legacy})
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config[field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    model_class, config_class = type(model), type(model.config)
    loaded = model_class.from_pretrained(tmp_path).eval()
    assert getattr(loaded.config, field) == legacy != getattr(config_class(), field)
    audio = torch.randn(2, 6000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio).logits, model(audio).logits)
    saved = model_with(kind_).config.to_dict()
    assert config_class.from_dict(saved).to_dict() == saved  # a field the file has is kept


def test_custom_models_are_registered_and_export_their_code(tmp_path):
    for config_class, model_class, files in (
        (CNNConfig, CNNForAudioClassification, {"configuration_cnn.py", "modeling_cnn.py"}),
        (S4Config, S4ForAudioClassification, {"configuration_s4.py", "modeling_s4.py", "kernels_s4.py"}),
    ):
        config = AutoConfig.for_model(config_class.model_type, **LABEL_MAPS)
        assert type(config) is config_class
        model = AutoModelForAudioClassification.from_config(config)
        assert type(model) is model_class
        out = tmp_path / config_class.model_type
        written = set(save_for_hub(model, None, out))
        assert files <= written
        auto_map = json.loads((out / "config.json").read_text())["auto_map"]
        module = model_class.__module__.rsplit(".", 1)[-1]
        assert auto_map == {
            "AutoConfig": f"{config_class.__module__.rsplit('.', 1)[-1]}.{config_class.__name__}",
            "AutoModelForAudioClassification": f"{module}.{model_class.__name__}",
        }
        preprocessor = json.loads((out / "preprocessor_config.json").read_text())
        assert preprocessor["auto_map"] == {"AutoFeatureExtractor": "feature_extraction.SERFeatureExtractor"}
        # The copied model code may import only from its own folder (what save_pretrained copied).
        for name in files:
            source = (out / name).read_text()
            imports = re.findall(r"^\s*(?:from|import)\s+(\S+)", source, flags=re.MULTILINE)
            assert not [m for m in imports if m.startswith(("modeling", "loaders", ".."))], (name, imports)


def test_wav2vec2_options(wav2vec2_dir, tmp_path):
    model, feature_extractor = build_wav2vec2(str(wav2vec2_dir), label_names=LABELS)
    assert not any(p.requires_grad for p in model.wav2vec2.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.wav2vec2.encoder.parameters())
    assert feature_extractor.min_samples == 10 + 2 * 5 + 2 * 10  # receptive field of the tiny conv stack

    probe, _ = build_wav2vec2(
        str(wav2vec2_dir), label_names=LABELS[:2], freeze_encoder=True, use_weighted_layer_sum=True
    )
    trainable = {name for name, p in probe.named_parameters() if p.requires_grad}
    assert trainable == {
        "layer_weights",
        "projector.weight",
        "projector.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert probe.config.num_labels == 2 and probe.config.use_weighted_layer_sum

    # A checkpoint fine-tuned on other classes loads with a new head of the right size.
    save_for_hub(probe, None, tmp_path)
    reloaded, _ = build_wav2vec2(str(tmp_path), label_names=LABELS, classifier_proj_size=16)
    assert reloaded.classifier.out_features == len(LABELS)
    # wav2vec2 is transformers' own class: no model code is copied, only the feature extractor's.
    assert not list(tmp_path.glob("modeling_*.py"))
    with pytest.raises(ValueError, match="not Wav2Vec2Config fields"):
        build_wav2vec2(str(wav2vec2_dir), label_names=LABELS, not_a_field=1)
    with pytest.raises(ValueError, match="repeats"):
        build_wav2vec2(str(wav2vec2_dir), label_names=["anger", "anger"])


# ---------------------------------------------------------------------------------------------------------
# Pipeline and padding
# ---------------------------------------------------------------------------------------------------------


def test_pipeline_top_label_matches_model(kind, wav2vec2_dir, tmp_path):
    model, feature_extractor = build(kind, wav2vec2_dir)
    model.eval()
    save_for_hub(model, feature_extractor, tmp_path / "model")
    classifier = pipeline("audio-classification", model=str(tmp_path / "model"))
    assert isinstance(classifier.feature_extractor, SERFeatureExtractor)

    clip = clips()[2]
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip, SR, subtype="FLOAT")
    with torch.no_grad():
        probabilities = model(
            **feature_extractor(clip, sampling_rate=SR, return_tensors="pt")
        ).logits.softmax(-1)[0]
    for source in (clip, str(wav)):
        result = classifier(source, top_k=None)
        assert [r["label"] for r in result][0] == LABELS[int(probabilities.argmax())]
        scores = {r["label"]: r["score"] for r in result}
        assert np.allclose([scores[name] for name in LABELS], probabilities.numpy(), atol=1e-5)


def test_padding_never_changes_a_prediction(kind, wav2vec2_dir):
    model, feature_extractor = build(kind, wav2vec2_dir)
    model.eval()
    arrays = clips()
    with torch.no_grad():
        batched = model(**batch(feature_extractor, arrays)).logits
        for i, clip in enumerate(arrays):
            alone = model(**feature_extractor(clip, sampling_rate=SR, return_tensors="pt")).logits[0]
            assert torch.allclose(batched[i], alone, atol=1e-4), (kind, i, batched[i], alone)


def test_wav2vec2_group_norm_checkpoint_is_not_padding_invariant(tmp_path):
    """Documents modeling/wav2vec2.py: GroupNorm over time in the conv encoder sees the padding."""
    model, feature_extractor = build_wav2vec2(
        str(tiny_wav2vec2_checkpoint(tmp_path, feat_extract_norm="group")), label_names=LABELS
    )
    model.eval()
    arrays = clips()
    with torch.no_grad():
        batched = model(**batch(feature_extractor, arrays)).logits
        alone = model(**feature_extractor(arrays[1], sampling_rate=SR, return_tensors="pt")).logits[0]
    assert not torch.allclose(batched[1], alone, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------
# Learning
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Small ops run faster on one thread, and parallel test workers do not oversubscribe the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(
            lambda: CNNForAudioClassification(
                CNNConfig(conv_channels=[8], attention_size=8, classifier_hidden_size=8, pitch_features=True)
            ),
            id="cnn-pitch",
        ),
        pytest.param(
            lambda: S4ForAudioClassification(S4Config(d_model=16, n_layers=1, mel_bins=16)), id="s4-defaults"
        ),
    ],
)
def test_gradients_reach_the_input_audio(model):
    """Saliency maps and adversarial training differentiate the logits by the waveform: the front-ends (the
    pitch tracker's and the spectra's squares included) must let the gradient through."""
    torch.manual_seed(0)
    audio = torch.randn(2, 8000, requires_grad=True)
    model().eval()(audio).logits.sum().backward()
    assert torch.isfinite(audio.grad).all() and audio.grad.abs().sum() > 0


@pytest.mark.parametrize("kind_", KINDS)
def test_overfits_a_small_batch_and_every_parameter_learns(kind_, wav2vec2_dir, one_thread):
    """Memorising 8 clips (dropout off, so the check is about gradient flow and capacity, not luck)."""
    model, feature_extractor = build(kind_, wav2vec2_dir, dropout=False)
    model.train()
    arrays = [tone(label % 4, 0.3 + 0.05 * label, seed=10 + label) for label in range(8)]
    inputs = batch(feature_extractor, arrays)
    labels = torch.tensor([label % 4 for label in range(8)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(100):
        output = model(**inputs, labels=labels)
        loss = output.loss
        optimizer.zero_grad()
        loss.backward()
        # Step 1, not 0: at zero logits on balanced labels the S4 functionals head's bias has no gradient.
        if step == 1:
            silent = [
                name
                for name, p in model.named_parameters()
                if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
            ]
            assert not silent, f"{kind_}: parameters without gradient: {silent}"
        optimizer.step()
        # Memorised: the predictions' cross-entropy (the S4's loss also holds its L2-penalised head's).
        losses.append(torch.nn.functional.cross_entropy(output.logits, labels).item())
        if losses[-1] < 0.05:
            break
    assert losses[-1] < 0.05, f"{kind_}: loss {losses[0]:.3f} -> {losses[-1]:.3f} after {len(losses)} steps"


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def saved_pipeline(request, wav2vec2_dir, tmp_path):
    model, feature_extractor = build(request.param, wav2vec2_dir)
    save_for_hub(model.eval(), feature_extractor, tmp_path)
    return request.param, model, pipeline("audio-classification", model=str(tmp_path))


def test_empty_clip_is_a_clear_error(saved_pipeline):
    _, _, classifier = saved_pipeline
    with pytest.raises(ValueError, match="empty"):
        classifier(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="clip 1: the audio is empty"):
        classifier.feature_extractor([np.ones(4000, np.float32), np.zeros(0, np.float32)], sampling_rate=SR)


def test_wrong_sampling_rate_says_to_resample(saved_pipeline):
    _, _, classifier = saved_pipeline
    clip = clips()[0]
    with pytest.raises(ValueError, match="Resample it to 16 kHz"):
        classifier.feature_extractor(clip, sampling_rate=44100)
    # The pipeline resamples a clip given with its rate.
    clip_8k = clip[::2].copy()
    result = classifier({"array": clip_8k, "sampling_rate": 8000})
    assert result[0]["label"] in LABELS


def test_multichannel_audio_is_refused_not_read_as_a_batch(saved_pipeline):
    _, _, classifier = saved_pipeline
    extractor = classifier.feature_extractor
    left, right = clips()[0], clips()[0][::-1].copy()
    stereo = np.stack([left, right])  # (channels, samples): torchaudio / torchcodec layout
    with pytest.raises(ValueError, match=r"2-channel audio .*audio.mean\(axis=0\)"):
        extractor(stereo, sampling_rate=SR)
    with pytest.raises(ValueError, match=r"2-channel audio .*audio.mean\(axis=1\)"):
        extractor(stereo.T, sampling_rate=SR)  # (samples, channels): soundfile layout
    with pytest.raises(ValueError, match="2-channel"):
        extractor([stereo.T], sampling_rate=SR)
    # One channel is unambiguous; a batch is a list of 1-D arrays.
    mono = extractor(left, sampling_rate=SR)["input_values"]
    assert np.array_equal(extractor(left[:, None], sampling_rate=SR)["input_values"], mono)
    assert len(extractor([left, right], sampling_rate=SR, padding=True)["input_values"]) == 2
    # A 2-D array with more rows than any microphone has channels is a batch, as in the base class.
    assert len(extractor(np.stack([left] * 9), sampling_rate=SR)["input_values"]) == 9
    with pytest.raises(ValueError, match="single channel"):
        classifier(stereo)  # the pipeline's own check


def test_clip_shorter_than_the_front_end_is_a_clear_error(saved_pipeline):
    kind, model, classifier = saved_pipeline
    minimum = classifier.feature_extractor.min_samples
    assert minimum > 0
    with pytest.raises(ValueError, match=f"minimum of {minimum} samples"):
        classifier(np.ones(minimum - 1, dtype=np.float32))
    assert classifier(tone(0, minimum / SR, seed=0))[0]["label"] in LABELS
    if kind in CUSTOM_KINDS:
        # The model's forward checks nothing (it must trace): a too-short clip that bypasses the feature
        # extractor gets NaN logits, never a plausible-looking prediction, and its batch mates are unharmed.
        with torch.no_grad():
            logits = model(
                torch.randn(2, minimum + 500),
                attention_mask=torch.tensor([[1] * (minimum + 500), [1] * (minimum - 1) + [0] * 501]),
            ).logits
        assert torch.isfinite(logits[0]).all() and torch.isnan(logits[1]).all()


def test_feature_extractor_other_bad_inputs():
    extractor = SERFeatureExtractor()
    with pytest.raises(ValueError, match="NaN or infinite"):
        extractor(np.array([0.0, np.nan] * 400, dtype=np.float32), sampling_rate=SR)
    with pytest.raises(ValueError, match="int16"):
        extractor(np.zeros(800, dtype=np.int16), sampling_rate=SR)
    with pytest.raises(ValueError, match="empty list"):
        extractor([], sampling_rate=SR)
    # Same numbers as transformers' extractor on good input: only checks were added.
    arrays = clips()
    ours = extractor(arrays, sampling_rate=SR, padding=True, return_tensors="np")
    theirs = Wav2Vec2FeatureExtractor(return_attention_mask=True)(
        arrays, sampling_rate=SR, padding=True, return_tensors="np"
    )
    assert np.array_equal(ours["input_values"], theirs["input_values"])
    assert np.array_equal(ours["attention_mask"], theirs["attention_mask"])
    assert np.array_equal(
        extractor(torch.from_numpy(arrays[0]), sampling_rate=SR)["input_values"][0],
        ours["input_values"][0][: arrays[0].size],
    )


# ---------------------------------------------------------------------------------------------------------
# Hub contract
# ---------------------------------------------------------------------------------------------------------

REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockProject(importlib.abc.MetaPathFinder):
        # Even an editable install of the project must not be importable here.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling", "loaders"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, BlockProject())
    try:
        import modeling  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the project is importable: the test would prove nothing")

    from transformers import AutoModelForAudioClassification, pipeline

    results = {}
    for directory in sys.argv[2:]:
        model = AutoModelForAudioClassification.from_pretrained(directory, trust_remote_code=True)
        classifier = pipeline("audio-classification", model=directory, trust_remote_code=True)
        results[directory] = {
            "model_module": type(model).__module__,
            "extractor_module": type(classifier.feature_extractor).__module__,
            "prediction": classifier(sys.argv[1], top_k=None),
        }
    print("RESULTS" + json.dumps(results))
    """
)


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: 10-25 s
def test_saved_custom_models_run_where_the_project_is_not_installed(wav2vec2_dir, tmp_path):
    wav = tmp_path / "clip.wav"
    sf.write(wav, clips()[0], SR)
    directories, expected = [], {}
    for kind_ in CUSTOM_KINDS:
        model, feature_extractor = build(kind_, wav2vec2_dir)
        directory = tmp_path / kind_
        save_for_hub(model.eval(), feature_extractor, directory)
        directories.append(str(directory))
        expected[str(directory)] = pipeline("audio-classification", model=str(directory))(
            str(wav), top_k=None
        )
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    # -I: no PYTHONPATH, no user site, no script or working directory on sys.path; cwd is outside the repo.
    completed = subprocess.run(
        [sys.executable, "-I", str(script), str(wav), *directories],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS") :])
    for directory in directories:
        assert results[directory]["model_module"].startswith("transformers_modules.")
        assert results[directory]["extractor_module"].startswith("transformers_modules.")
        got = results[directory]["prediction"]
        assert [r["label"] for r in got] == [r["label"] for r in expected[directory]]
        assert np.allclose([r["score"] for r in got], [r["score"] for r in expected[directory]], atol=1e-5)


@pytest.fixture
def fake_hub(monkeypatch):
    """Stand-ins for the Hub calls; records what each commit would upload."""
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.errors import EntryNotFoundError

    commits: list[dict[str, bytes]] = []

    class RepoUrl(str):
        repo_id = "someone/ser-model"

    def create_repo(self, repo_id, *args, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, *args, **kwargs):
        files = {}
        for operation in operations:
            source = operation.path_or_fileobj
            files[operation.path_in_repo] = (
                Path(source).read_bytes() if isinstance(source, (str, Path)) else source
            )
        commits.append(files)
        return f"https://huggingface.co/{repo_id}/commit/0"

    def no_card(*args, **kwargs):
        raise EntryNotFoundError("no README.md in the fake repo")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setattr(HfApi, "create_branch", lambda *a, **k: None)
    monkeypatch.setattr(ModelCard, "load", classmethod(no_card))
    return commits


def check_hub_files(files: dict[str, bytes], code_files: set[str]) -> None:
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "feature_extraction.py"} <= set(
        files
    )
    assert code_files <= set(files)
    config = json.loads(files["config.json"])
    if code_files:
        assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForAudioClassification"}
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert json.loads(files["preprocessor_config.json"])["auto_map"]["AutoFeatureExtractor"]


@pytest.mark.parametrize(
    ("kind_", "code_files"),
    [
        ("cnn", {"configuration_cnn.py", "modeling_cnn.py"}),
        ("s4", {"configuration_s4.py", "modeling_s4.py", "kernels_s4.py"}),
        ("wav2vec2", set()),
    ],
)
def test_push_to_hub_uploads_model_code_and_feature_extractor(kind_, code_files, fake_hub, wav2vec2_dir):
    model, feature_extractor = build(kind_, wav2vec2_dir)

    # The standard transformers path: one commit for the model, one for the feature extractor.
    model.push_to_hub("someone/ser-model")
    feature_extractor.push_to_hub("someone/ser-model")
    check_hub_files({**fake_hub[0], **fake_hub[1]}, code_files)
    assert "README.md" in fake_hub[0]

    # The project's helper: everything in one commit.
    push_to_hub(model, feature_extractor, "someone/ser-model")
    check_hub_files(fake_hub[2], code_files)
