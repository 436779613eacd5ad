"""run_train.py --streaming: a causal S4 on raw audio; its streamed logits equal the offline ones."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_run import run_train

from loaders.fixtures import build_download

ROOT = Path(__file__).resolve().parents[1]
TINY_S4 = '{"d_model": 8, "n_layers": 1, "d_state": 4, "mel_bins": 16}'


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * 16000)) / 16000
    tone = (
        0.3
        * np.sin(2 * np.pi * 180 * t * (1 + 0.1 * np.sin(2 * np.pi * t)))
        * (1 + np.sin(2 * np.pi * 4 * t))
    )
    return (tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def test_streaming_s4_trains_and_streams_the_offline_logits(tmp_path):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from inference.streaming import StreamingClassifier

    data_root = tmp_path / "data"
    build_download("emodb", data_root, per_emotion=6, seconds=0.6, quirks=False)
    out = tmp_path / "run"
    run_train.main(
        [
            "--streaming",  # implies --model s4
            "--corpora",
            "emodb",
            "--split_strategy",
            "random",
            "--data_root",
            str(data_root),
            "--dataset_cache_dir",
            str(tmp_path / "cache"),
            "--output_dir",
            str(out),
            "--config_overrides",
            TINY_S4,
            "--per_device_train_batch_size",
            "8",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "1e-2",
            "--disable_tqdm",
            "true",
            "--preprocessing_num_workers",
            "1",
        ]
    )
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "ser-s4" and config["bidirectional"] is False
    assert config["mel_normalization"] == "causal" and config["d_model"] == 8
    assert config["functionals_head"] is False and config["energy_peaks_head"] is False
    assert json.loads((out / "preprocessor_config.json").read_text())["do_normalize"] is False
    assert "streaming" in (out / "README.md").read_text()

    model = AutoModelForAudioClassification.from_pretrained(out).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(out)
    clip = speech_like(1.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "streamed and offline results differ" (do_normalize=True) warning
        streamer = StreamingClassifier(model, feature_extractor)
    for start in range(0, clip.size, 320):  # 20 ms chunks, as `predict --stream` feeds them
        streamer.push(clip[start : start + 320])
    inputs = feature_extractor(clip, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        offline = model(**inputs).logits[0].numpy()
    np.testing.assert_allclose(streamer.logits(), offline, atol=1e-4)


def test_streaming_refuses_a_bidirectional_checkpoint(tmp_path):
    from modeling.s4 import S4Config, S4ForAudioClassification

    checkpoint = tmp_path / "s4"
    S4ForAudioClassification(S4Config(d_model=8, n_layers=1, d_state=4, num_labels=4)).save_pretrained(
        checkpoint
    )
    with pytest.raises(
        run_train.UsageError, match="is a bidirectional S4, whose layers look at future frames"
    ):
        run_train.main(
            ["--streaming", "--model_name_or_path", str(checkpoint), "--output_dir", str(tmp_path / "run")]
        )
    assert not (tmp_path / "run").exists()
