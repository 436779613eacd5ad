"""Streaming the causal S4 model in its recurrent form (inference.streaming)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from inference.predict import main
from inference.streaming import StreamingClassifier
from modeling import CNNConfig, CNNForAudioClassification, S4Config, S4ForAudioClassification, save_for_hub
from modeling.auto import feature_extractor_for

LABELS = ["neutral", "angry", "happy", "sad"]


def causal_s4(**overrides) -> S4ForAudioClassification:
    torch.manual_seed(0)
    config = dict(
        d_model=16,
        n_layers=2,
        d_state=8,
        bidirectional=False,
        mel_normalization="causal",
        functionals_head=False,
        mel_bins=16,
        num_labels=4,
        id2label=dict(enumerate(LABELS)),
        label2id={k: i for i, k in enumerate(LABELS)},
    )
    config.update(overrides)
    return S4ForAudioClassification(S4Config(**config)).eval()


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 16000)) / 16000
    return (
        0.3
        * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * t)))
        * (1 + np.sin(2 * np.pi * 4 * t))
        + 0.02 * rng.standard_normal(t.size)
    ).astype(np.float32)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"mel_normalization": "none"}, {"frontend": "conv"}, {"kernel": "s4", "dplr_kernel_length": 512}],
    ids=["s4d-mel-causal", "s4d-mel-none", "s4d-conv", "s4-dplr"],
)
def test_stream_ends_at_the_offline_logits(overrides):
    model = causal_s4(**overrides)
    clip = speech_like(1.23)
    streamer = StreamingClassifier(model)
    window = model.min_input_samples
    for start in range(0, clip.size, 320):  # 20 ms chunks
        probabilities = streamer.push(clip[start : start + 320])
        if start + 320 < window:
            assert probabilities is None  # no complete frame yet
        assert streamer.state.samples.shape[-1] < window  # constant memory: under one frame buffered
    with torch.no_grad():
        offline = model(torch.from_numpy(clip)[None]).logits[0].numpy()
    np.testing.assert_allclose(streamer.logits(), offline, atol=1e-4)
    assert streamer.top()[0] == LABELS[int(np.argmax(offline))]


def test_reset_starts_a_new_stream_and_chunk_size_does_not_matter():
    model = causal_s4()
    clip = speech_like(0.9, seed=3)
    streamer = StreamingClassifier(model)
    streamer.push(speech_like(0.5, seed=4))  # an earlier stream, forgotten by reset
    streamer.reset()
    for start in range(0, clip.size, 1234):
        streamer.push(clip[start : start + 1234])
    with torch.no_grad():
        offline = model(torch.from_numpy(clip)[None]).logits[0].numpy()
    np.testing.assert_allclose(streamer.logits(), offline, atol=1e-4)
    assert streamer.samples_seen == clip.size and streamer.frames == (clip.size - 400) // 160 + 1


def test_running_probabilities_follow_the_prefix():
    model = causal_s4()
    clip = speech_like(1.5, seed=2)
    streamer = StreamingClassifier(model)
    streamer.push(clip[:8000])
    with torch.no_grad():
        prefix = torch.softmax(model(torch.from_numpy(clip[:8000])[None]).logits[0], -1).numpy()
    np.testing.assert_allclose(streamer.probabilities(), prefix, atol=1e-5)


def test_models_without_a_recurrent_form_are_refused():
    cnn = CNNForAudioClassification(CNNConfig(conv_channels=[8], n_mfcc=13, n_mels=20, num_labels=4))
    with pytest.raises(TypeError, match="no recurrent form"):
        StreamingClassifier(cnn)
    with pytest.raises(ValueError, match="bidirectional"):
        StreamingClassifier(causal_s4(bidirectional=True))


def test_per_clip_normalisation_is_flagged():
    model = causal_s4(normalize_waveform=True)
    with pytest.warns(UserWarning, match="do_normalize"):
        StreamingClassifier(model, feature_extractor_for(model))


def test_cli_stream_prints_the_running_emotion(tmp_path, capsys):
    model = causal_s4()
    extractor = feature_extractor_for(model)
    extractor.do_normalize = False  # streaming and offline see the same samples
    save_for_hub(model, extractor, tmp_path / "s4")
    clip = speech_like(1.6, seed=5)
    sf.write(tmp_path / "clip.wav", clip, 16000)
    assert main([str(tmp_path / "s4"), str(tmp_path / "clip.wav"), "--stream", "--print_every", "0.5"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "clip.wav" in line]
    assert len(lines) == 4  # t = 0.5, 1.0, 1.5 s and the final line
    with torch.no_grad():
        offline = torch.softmax(model(torch.from_numpy(clip)[None]).logits[0], -1).numpy()
    assert lines[-1].split()[2] == LABELS[int(np.argmax(offline))]
    assert f"{offline.max():.3f}" in lines[-1]


def test_cli_stream_refuses_what_offline_refuses(tmp_path, capsys):
    """NaN/Inf, silent and too-short files fail by name in --stream as offline; no `nan` is printed."""
    model = causal_s4()
    extractor = feature_extractor_for(model)
    extractor.do_normalize = False
    extractor.min_samples = 1600  # 100 ms: a 50 ms file is below it, though it fills the S4's 25 ms frame
    save_for_hub(model, extractor, tmp_path / "s4")
    files = {}
    for name, bad in (("nan", np.nan), ("inf", np.inf)):
        clip = speech_like(1.0, seed=6)
        clip[8000] = bad
        files[name] = tmp_path / f"{name}.wav"
        sf.write(files[name], clip, 16000, subtype="FLOAT")
    files["silent"] = tmp_path / "silent.wav"
    sf.write(files["silent"], np.zeros(16000, dtype=np.float32), 16000)
    files["short"] = tmp_path / "short.wav"
    sf.write(files["short"], speech_like(0.05, seed=7), 16000)
    files["good"] = tmp_path / "good.wav"
    sf.write(files["good"], speech_like(1.0, seed=8), 16000)
    paths = [str(files[k]) for k in ("nan", "inf", "silent", "short", "good")]
    reasons = {"nan": "non-finite", "inf": "non-finite", "silent": "silence only", "short": "shorter than"}

    assert main([str(tmp_path / "s4"), *paths, "--no_progress"]) == 1
    offline = capsys.readouterr()
    assert main([str(tmp_path / "s4"), *paths, "--stream", "--print_every", "0.25"]) == 1
    streamed = capsys.readouterr()
    assert "nan" not in streamed.out.lower().replace("nan.wav", "")
    assert all(line.startswith(paths[-1]) for line in streamed.out.splitlines())  # only good.wav streamed
    failed = [line for line in streamed.err.splitlines() if "FAILED" in line]
    assert len(failed) == 4 and "1 streamed, 4 failed, 0 skipped" in streamed.err
    for name, reason in reasons.items():
        mine = [line for line in failed if line.startswith(f"{files[name]}: FAILED: {files[name]}: ")]
        assert len(mine) == 1 and reason in mine[0], (name, failed)
        assert any(str(files[name]) in line and reason in line for line in offline.out.splitlines()), name
