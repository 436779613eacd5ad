"""modeling/encoders.py: every speech-encoder family fine-tunes, saves, runs through `pipeline()` alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from encoder_checkpoints import FAMILIES, LAYER_NORM_FAMILIES, SR, tiny_encoder_checkpoint, tone

from modeling.encoders import (
    batch_features,
    build_encoder_classifier,
    encoder_kind,
    encoder_module,
    head_parameter_names,
    mixed_precision_arguments,
    parameter_groups,
)

LABELS = ["low", "high"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("encoders")
    return {kind: tiny_encoder_checkpoint(kind, root / kind) for kind in FAMILIES}


def batch(feature_extractor, clips):
    return batch_features(feature_extractor, clips, SR)


# wav2vec2 and Whisper (the two code paths) always run; the other families are marked slow.
FAST = ("wav2vec2", "whisper")
FAMILY_PARAMS = [k if k in FAST else pytest.param(k, marks=pytest.mark.slow) for k in FAMILIES]


@pytest.mark.parametrize("kind", FAMILY_PARAMS)
def test_each_family_fine_tunes_and_its_loss_falls(kind, checkpoints):
    torch.manual_seed(0)
    model, feature_extractor = build_encoder_classifier(checkpoints[kind], LABELS, max_duration_seconds=1)
    assert encoder_kind(checkpoints[kind]) == kind
    assert model.config.model_type == kind and model.config.id2label == {0: "low", 1: "high"}
    head = set(head_parameter_names(model))
    assert head and all(n.startswith(("projector", "classifier")) for n in head)
    # The convolutional front-end is frozen by default, the transformer is not.
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any("conv" in n for n in frozen) and trainable - head
    inputs = batch(feature_extractor, [tone(0, 0.5, 1), tone(1, 0.4, 2), tone(0, 0.45, 3), tone(1, 0.5, 4)])
    labels = torch.tensor([0, 1, 0, 1])
    optimizer = torch.optim.AdamW(
        parameter_groups(model, learning_rate=1e-3, head_learning_rate=1e-2), weight_decay=0.0
    )
    losses = []
    for _ in range(15):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (kind, losses)


def test_saved_classifiers_work_through_pipeline_in_a_fresh_python(checkpoints, tmp_path):
    """Each family's saved result loads with transformers alone: no project on sys.path, no remote code."""
    expected = {}
    clip = tone(1, 0.8, 7)
    for kind in FAMILIES:
        model, feature_extractor = build_encoder_classifier(checkpoints[kind], LABELS, max_duration_seconds=1)
        model.eval()
        out = tmp_path / "saved" / kind
        model.save_pretrained(out)
        feature_extractor.save_pretrained(out)
        assert not list(out.glob("*.py"))  # transformers' own classes only
        with torch.no_grad():
            expected[kind] = model(**feature_extractor(clip, sampling_rate=SR, return_tensors="pt")).logits[0]
    np.save(tmp_path / "clip.npy", clip)
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from transformers import pipeline
        assert not any("h11" in p or p in ("", ".") for p in sys.path[1:]), sys.path
        clip = np.load({str(tmp_path / "clip.npy")!r})
        results = {{}}
        for kind in {FAMILIES!r}:
            classifier = pipeline("audio-classification", model={str(tmp_path / "saved")!r} + "/" + kind)
            results[kind] = {{r["label"]: r["score"] for r in classifier(clip, top_k=None)}}
        print(json.dumps(results))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for kind in FAMILIES:
        probabilities = torch.softmax(expected[kind], -1)
        got = torch.tensor([results[kind][name] for name in LABELS])
        assert torch.allclose(got, probabilities, atol=1e-4), (kind, got, probabilities)


@pytest.mark.parametrize(
    "kind",
    [k if k in FAST else pytest.param(k, marks=pytest.mark.slow) for k in [*LAYER_NORM_FAMILIES, "whisper"]],
)
def test_padding_never_changes_a_prediction(kind, checkpoints):
    model, feature_extractor = build_encoder_classifier(checkpoints[kind], LABELS, max_duration_seconds=1)
    model.eval()
    clips = [tone(0, 0.8, 1), tone(1, 0.4, 2), tone(0, 0.6, 3)]
    with torch.no_grad():
        batched = model(**batch(feature_extractor, clips)).logits
        for i, clip in enumerate(clips):
            alone = model(**batch(feature_extractor, [clip])).logits[0]
            assert torch.allclose(batched[i], alone, atol=1e-4), (kind, i, batched[i], alone)


@pytest.mark.parametrize("kind", ["wav2vec2-group"])
def test_documented_padding_exceptions(kind, checkpoints, tmp_path):
    """modeling/encoders.py says these see the padding; this keeps the note true."""
    path = tiny_encoder_checkpoint("wav2vec2", tmp_path, "group")
    model, feature_extractor = build_encoder_classifier(path, LABELS)
    model.eval()
    clips = [tone(0, 1.5, 1), tone(1, 0.6, 2)]
    with torch.no_grad():
        batched = model(**batch(feature_extractor, clips)).logits
        alone = model(**batch(feature_extractor, clips[1:])).logits[0]
    assert not torch.allclose(batched[1], alone, atol=1e-4)


def test_feature_extractors_per_family(checkpoints):
    _, w2v = build_encoder_classifier(checkpoints["wav2vec2"], LABELS)
    assert type(w2v) is transformers.Wav2Vec2FeatureExtractor and w2v.return_attention_mask  # forced on
    _, fallback = build_encoder_classifier(checkpoints["hubert"], LABELS)  # no preprocessor_config.json
    assert type(fallback) is transformers.Wav2Vec2FeatureExtractor and fallback.do_normalize
    assert fallback.return_attention_mask


def test_whisper_is_cropped_to_the_clip_length(checkpoints):
    full, full_extractor = build_encoder_classifier(checkpoints["whisper"], LABELS)
    assert full.config.max_source_positions == 1500 and full_extractor.chunk_length == 30
    model, extractor = build_encoder_classifier(checkpoints["whisper"], LABELS, max_duration_seconds=1.5)
    # ceil(1.5 s) = 2 s = 100 positions of 20 ms, and an extractor that pads to exactly that.
    assert model.config.max_source_positions == 100 and extractor.chunk_length == 2
    table = encoder_module(model).embed_positions.weight
    assert table.shape[0] == 100 and torch.equal(table, encoder_module(full).embed_positions.weight[:100])
    assert torch.equal(encoder_module(model).conv1.weight, encoder_module(full).conv1.weight)
    features = extractor(tone(0, 5.0, 1), sampling_rate=SR, return_tensors="pt")["input_features"]
    assert features.shape[-1] == 200  # longer clips are truncated to the window
    with pytest.raises(ValueError, match="max_duration_seconds: 31 s is longer"):
        build_encoder_classifier(checkpoints["whisper"], LABELS, max_duration_seconds=31)


def test_options(checkpoints):
    path = checkpoints["wavlm"]
    probe, _ = build_encoder_classifier(path, LABELS, freeze_encoder=True, use_weighted_layer_sum=True)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trainable == set(head_parameter_names(probe)) and "layer_weights" in trainable
    model, extractor = build_encoder_classifier(path, LABELS, gradient_checkpointing=True)
    assert model.is_gradient_checkpointing
    inputs = batch(extractor, [tone(0, 1.0, 1), tone(1, 1.0, 2)])
    model(**inputs, labels=torch.tensor([0, 1])).loss.backward()
    assert encoder_module(model).encoder.layers[0].attention.k_proj.weight.grad is not None
    groups = parameter_groups(model, learning_rate=1e-5, head_learning_rate=1e-3, weight_decay=0.1)
    head_ids = {id(p) for n, p in model.named_parameters() if n in head_parameter_names(model)}
    for group in groups:
        assert all((id(p) in head_ids) == (group["lr"] == 1e-3) for p in group["params"])
    assert mixed_precision_arguments("cpu") == {}
    with pytest.raises(ValueError, match=r"\['not_a_field'\] are not WavLMConfig fields"):
        build_encoder_classifier(path, LABELS, not_a_field=1)
    with pytest.raises(ValueError, match="repeats"):
        build_encoder_classifier(path, ["a", "a"])


def test_bad_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        encoder_kind(tmp_path)
    with pytest.raises(ValueError, match="has no config.json"):
        build_encoder_classifier(tmp_path, LABELS)
