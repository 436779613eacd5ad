"""The probe: cached layers equal a direct forward, the cache is reused, the saved probe equals the head."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from encoder_checkpoints import SR, tiny_encoder_checkpoint, tone
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from training import encoder_features
from training.encoder_features import build_probe, extract_layer_features, train_probe_head

LABELS = ["low", "high"]
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_corpus")
    files, labels = [], []
    for i in range(8):
        path = root / f"clip{i}.wav"
        sf.write(path, tone(i % 2, 0.4 + 0.1 * i, seed=i), SR)
        files.append(str(path))
        labels.append(i % 2)
    return datasets.Dataset.from_dict(
        {
            "audio": files,
            "label": labels,
            "corpus": ["synthetic"] * 8,
            "speaker": [f"synthetic/s{i % 3}" for i in range(8)],
            "file": [f"clip{i}.wav" for i in range(8)],
        }
    ).cast_column("audio", datasets.Audio(sampling_rate=SR))


def clip_of(corpus, i):
    return encoder_features._decode(corpus.cast_column("audio", datasets.Audio(decode=False))[i]["audio"])


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
def test_cache_equals_direct_forward_is_reused_and_the_saved_probe_equals_the_head(
    kind, corpus, tmp_path, monkeypatch
):
    encoder_dir = tiny_encoder_checkpoint(kind, tmp_path / kind)
    encoder_class = WhisperEncoder if kind == "whisper" else transformers.Wav2Vec2Model
    calls = []
    original = encoder_class.forward
    monkeypatch.setattr(
        encoder_class, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    cache = tmp_path / "cache"
    features = extract_layer_features(
        corpus, encoder_dir, cache_dir=cache, batch_size=3, max_duration_seconds=2
    )
    assert features.column_names == ["label", "corpus", "speaker", "file", "features"]
    assert features["file"] == corpus["file"] and calls
    stored = np.asarray(features.with_format("numpy")["features"])
    assert stored.shape == (8, 3, 64) and stored.dtype == np.float32

    # A direct forward of one clip, pooled by hand: mean and std of every layer over all (real) frames.
    encoder, extractor = encoder_features.load_frozen_encoder(encoder_dir, max_duration_seconds=2)
    clip = clip_of(corpus, 5)
    inputs = extractor(clip, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        if kind == "whisper":
            hidden = encoder(inputs["input_features"], output_hidden_states=True).hidden_states
            real = (int(inputs["attention_mask"].sum()) - 1) // 2 + 1
        else:
            hidden = encoder(inputs["input_values"], output_hidden_states=True).hidden_states
            real = hidden[0].shape[1]
    direct = torch.stack(
        [torch.cat([h[0, :real].mean(0), h[0, :real].std(0, unbiased=False)]) for h in hidden]
    )
    np.testing.assert_allclose(stored[5], direct.numpy(), atol=1e-5)

    # Second run, same data and settings: no encoder forward at all.
    calls.clear()
    again = extract_layer_features(corpus, encoder_dir, cache_dir=cache, batch_size=3, max_duration_seconds=2)
    assert not calls and np.array_equal(np.asarray(again.with_format("numpy")["features"]), stored)
    # Other settings are another cache entry.
    extract_layer_features(corpus.select(range(2)), encoder_dir, cache_dir=cache, max_duration_seconds=2)
    assert calls

    head = train_probe_head(features, features, LABELS, epochs=40, hidden_size=32)
    assert head.history[-1]["val_uar"] == 1.0
    model, feature_extractor = build_probe(encoder_dir, head, LABELS, max_duration_seconds=2)
    model.save_pretrained(tmp_path / "probe")
    feature_extractor.save_pretrained(tmp_path / "probe")
    assert (tmp_path / "probe" / "modeling_probe.py").is_file()  # exported like the CNN and S4
    loaded = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "probe").eval()
    with torch.no_grad():
        cached_logits = head(torch.from_numpy(stored))
        for i in range(len(corpus)):
            inputs = feature_extractor(clip_of(corpus, i), sampling_rate=SR, return_tensors="pt")
            logits = loaded(**inputs).logits[0]
            assert torch.allclose(logits, cached_logits[i], atol=1e-5), (i, logits, cached_logits[i])
    classifier = transformers.pipeline("audio-classification", model=str(tmp_path / "probe"))
    result = classifier(clip_of(corpus, 3), top_k=None)
    assert result[0]["label"] == LABELS[int(cached_logits[3].argmax())]
