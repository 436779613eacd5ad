"""ONNX export (inference.onnx_export): onnxruntime agrees with PyTorch at two input lengths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inference.onnx_export import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE, verify_onnx
from inference.predict import main
from modeling import CNNConfig, CNNForAudioClassification, S4Config, S4ForAudioClassification, save_for_hub
from modeling.auto import feature_extractor_for

onnxruntime = pytest.importorskip("onnxruntime", reason="the [deploy] extra (onnx, onnxruntime, onnxscript)")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")

LABELS = ["neutral", "angry", "happy", "sad"]
LABEL_KW = dict(num_labels=4, id2label=dict(enumerate(LABELS)), label2id={k: i for i, k in enumerate(LABELS)})


def run_both(model, extractor, path, seconds):
    """Logits of PyTorch (feature extractor + model) and of the ONNX file on a padded batch of two clips."""
    rng = np.random.default_rng(int(seconds * 100))
    clips = [
        0.2 * rng.standard_normal(round(seconds * 16000)).astype(np.float32),
        0.05 * rng.standard_normal(round(seconds * 16000 * 0.6)).astype(np.float32),
    ]
    inputs = extractor(
        clips, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt"
    )
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    raw = np.zeros((2, clips[0].size), dtype=np.float32)  # raw audio: normalisation is inside the graph
    raw[0], raw[1, : clips[1].size] = clips[0], clips[1]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(
        ["logits"], {"input_values": raw, "attention_mask": inputs["attention_mask"].numpy().astype(np.int64)}
    )[0]
    return expected, got, session


# Two models between them set every option of the front-end and the heads both ways: the defaults (the
# recording level kept, smoothed contours, the raw contours and spectrum heads), and every other value at
# once (each case is an export of its own, about 15 s).
@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "normalize_waveform": True,
            "energy_peaks_head": True,
            "functionals_smoothing": False,
            "spectrum_functionals": True,
            "raw_contours_head": False,
            "spectrum_head": False,
        },
    ],
    ids=["defaults", "every-other-option"],
)
def test_cnn_export_through_the_cli(tmp_path, capsys, overrides):
    torch.manual_seed(0)
    model = CNNForAudioClassification(
        CNNConfig(
            conv_channels=[8, 8],
            n_mfcc=13,
            n_mels=20,
            attention_size=8,
            classifier_hidden_size=8,
            **overrides,
            **LABEL_KW,
        )
    )
    model.train()(torch.randn(16, 8000))  # training-set feature statistics other than 0 / 1
    # The heads start at zero, where nothing they do could show. With hard counts in the functionals (a
    # frame above a level, a step rising), this head's logits in onnxruntime differed from PyTorch's by
    # 3e-3 to 9e-3 here: rounding moved values across the thresholds.
    torch.nn.init.normal_(model.functionals_head.weight, std=0.05)
    for head in (model.energy_peaks_head, model.raw_contours_head, model.spectrum_head):
        if head is not None:
            torch.nn.init.normal_(head.weight, std=0.05)
    model.eval()
    # Branch weights as run_train.py fits them: the graph must weigh the logits as the model does (exported
    # with the plain sum, the network's logits would be 0.4 of themselves off).
    model.config.branch_weights = [0.6, 1.7]
    save_for_hub(model, None, tmp_path / "cnn")
    out = tmp_path / "cnn.onnx"
    assert main(["export-onnx", str(tmp_path / "cnn"), str(out)]) == 0
    assert "max |logit difference|" in capsys.readouterr().out
    extractor = feature_extractor_for(model)
    for seconds in (1.0, 2.37):  # the sample axis is dynamic; within the tolerance export-onnx checks
        expected, got, session = run_both(model, extractor, out, seconds)
        np.testing.assert_allclose(got, expected, atol=ABSOLUTE_TOLERANCE, rtol=RELATIVE_TOLERANCE)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["id2label"]) == {str(i): k for i, k in enumerate(LABELS)}
    assert metadata["sampling_rate"] == "16000"
    assert metadata["normalized_in_graph"] == str(model.config.normalize_waveform)
    # The CLI's check passes this graph and refuses one that weighs the branches otherwise than the model.
    assert verify_onnx(model, extractor, out)[1]
    model.config.branch_weights = [1.0, 1.0]
    difference, within = verify_onnx(model, extractor, out)
    assert not within and difference > 1e-3


def test_an_export_that_disagrees_with_pytorch_fails_with_a_message(tmp_path, monkeypatch, capsys):
    import inference.onnx_export as onnx_export

    model = CNNForAudioClassification(CNNConfig(conv_channels=[8], n_mfcc=13, n_mels=20, **LABEL_KW))
    save_for_hub(model, None, tmp_path / "cnn")
    monkeypatch.setattr(
        onnx_export, "export_onnx", lambda model, extractor, path, opset: open(path, "wb").close()
    )
    monkeypatch.setattr(onnx_export, "verify_onnx", lambda model, extractor, path: (0.25, False))
    assert main(["export-onnx", str(tmp_path / "cnn"), str(tmp_path / "cnn.onnx")]) == 1
    out = capsys.readouterr().out
    assert "max |logit difference| 2.50e-01" in out
    assert "the exported graph disagrees with PyTorch by more than 0.001 + 0.0001 x |logit|" in out


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        # the defaults: pitch channels, spectral shape, the extended functionals, the smoothed contours, MFCC
        # and spectrum heads
        {"bidirectional": True},
        {
            "kernel": "s4",
            "bidirectional": False,
            "dplr_kernel_length": 512,
            "mfcc_head": 6,
            "spectrum_head": False,
        },  # the MFCC head alone, with another K
        # The padded clip's silent frames: their pitch channels came out NaN in ONNX, not in PyTorch (the
        # defaults' case checks those); this one, the basic functionals of every band without pitch.
        {
            "pitch_features": False,
            "spectral_shape_functionals": False,
            "functionals": "basic",
            "functionals_mel_group": 1,
            "normalize_waveform": True,
            "pooling": "mean",
        },
        {
            "mel_normalization": "utterance+dataset",
            "pooling": "mean_std",
            "functionals": "basic",  # beside the smoothed contours head's extended functionals
        },
    ],
    ids=[
        "s4d-defaults",  # with the energy peaks head
        "s4-dplr-causal",
        "s4d-earlier-defaults",
        "s4d-utterance-dataset-meanstd-basic-functionals",
    ],
)
def test_s4_export_matches_pytorch(tmp_path, overrides):
    from inference.onnx_export import export_onnx

    torch.manual_seed(0)
    model = S4ForAudioClassification(
        S4Config(d_model=16, n_layers=2, d_state=8, mel_bins=16, **overrides, **LABEL_KW)
    )
    if model.functionals_head is not None:  # statistics and weights other than 0 / 1, so that they show
        with torch.no_grad():
            model.train()(torch.randn(3, 16000) * 0.3)
        torch.nn.init.normal_(model.functionals_head.weight, std=0.05)
    for head in (model.energy_peaks_head, model.smoothed_contours_head, model.mfcc_head, model.spectrum_head):
        if head is not None:
            torch.nn.init.normal_(head.weight, std=0.05)
    model.eval()
    extractor = feature_extractor_for(model)
    out = export_onnx(model, extractor, tmp_path / "s4.onnx")
    for seconds in (0.8, 3.1):
        expected, got, _ = run_both(model, extractor, out, seconds)
        # rtol: the extended functionals head's logits reach |100| here (statistics of three noise clips).
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)
