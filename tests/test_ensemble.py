"""The ensemble (modeling.ensemble, training.ensemble): the mean of its members' probabilities, the models'
contract (padding, save / load, pipeline, ONNX), and `--model ensemble` runs that train, reuse or refuse
their members."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from test_models_common import LABEL_MAPS, LABELS, SR, batch, build, clips
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

from loaders.fixtures import build_download
from modeling import S4Config, S4ForAudioClassification, feature_extractor_for, save_for_hub
from modeling.ensemble import EnsembleConfig, EnsembleForAudioClassification
from training import UsageError, parse_args, train


@pytest.fixture
def members(make_tiny_cnn) -> list[torch.nn.Module]:
    """A tiny CNN (without an LSTM, which ONNX cannot export) and a tiny S4, their heads away from zero."""
    torch.manual_seed(0)
    cnn = make_tiny_cnn(labels=LABELS)
    s4, _ = build("s4", None)
    for model in (cnn, s4):
        torch.nn.init.normal_(model.functionals_head.weight, std=0.05)
    return [cnn.eval(), s4.eval()]


def probabilities(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits.softmax(-1)


@pytest.mark.parametrize("weights", [None, [3.0, 1.0]])
def test_logits_are_the_log_of_the_members_weighted_mean_probability(weights, members):
    cnn, s4 = members
    ensemble = EnsembleForAudioClassification.from_members([cnn, s4], member_weights=weights)
    inputs = batch(feature_extractor_for(ensemble), clips())
    share = 0.5 if weights is None else 0.75
    expected = share * probabilities(cnn, inputs) + (1 - share) * probabilities(s4, inputs)
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        output = ensemble(**inputs, labels=labels)
    torch.testing.assert_close(output.logits.exp(), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(output.loss, torch.nn.functional.nll_loss(expected.log(), labels))
    assert [tuple(m.shape) for m in output.member_logits] == [(4, len(LABELS))] * 2
    # The weights are read from the config at every call; a zero weight leaves a member out.
    ensemble.config.member_weights = [1.0, 0.0]
    torch.testing.assert_close(probabilities(ensemble, inputs), probabilities(cnn, inputs), atol=1e-6, rtol=0)


def test_padding_never_changes_a_prediction(members):
    ensemble = EnsembleForAudioClassification.from_members(members)
    extractor = feature_extractor_for(ensemble)
    arrays = clips()
    with torch.no_grad():
        batched = ensemble(**batch(extractor, arrays)).logits
        for i, clip in enumerate(arrays):
            alone = ensemble(**extractor(clip, sampling_rate=SR, return_tensors="pt")).logits[0]
            torch.testing.assert_close(batched[i], alone, atol=1e-4, rtol=0)


def test_saved_ensemble_loads_with_the_auto_classes_and_the_pipeline(tmp_path, members):
    cnn, s4 = members
    ensemble = EnsembleForAudioClassification.from_members([cnn, s4])
    save_for_hub(ensemble, None, tmp_path)
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is EnsembleForAudioClassification
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    # The members' input: level kept (do_normalize false), and the longer of their shortest clips (the CNN's).
    assert extractor.do_normalize is False
    assert extractor.min_samples == cnn.config.min_input_samples > s4.min_input_samples
    inputs = batch(extractor, clips())
    torch.testing.assert_close(loaded(**inputs).logits, ensemble(**inputs).logits, atol=1e-6, rtol=0)
    classifier = pipeline("audio-classification", model=str(tmp_path))
    scores = {r["label"]: r["score"] for r in classifier(clips()[2], top_k=None)}
    expected = probabilities(ensemble, extractor(clips()[2], sampling_rate=SR, return_tensors="pt"))[0]
    np.testing.assert_allclose([scores[name] for name in LABELS], expected.numpy(), atol=1e-5)


def test_members_must_agree_on_emotions_and_input(members):
    cnn, s4 = members
    s4.config.id2label = {0: "neutral", 1: "anger", 2: "happy", 3: "sadness"}
    with pytest.raises(ValueError, match=r"members\[1\] classifies .* same emotions in the same order"):
        EnsembleForAudioClassification.from_members([cnn, s4])
    with pytest.raises(ValueError, match="normalize_waveform differ"):
        EnsembleConfig(members=[cnn.config, {**s4.config.to_dict(), "normalize_waveform": True}])
    with pytest.raises(ValueError, match="2 weights for 1 members"):
        EnsembleConfig(members=[cnn.config], member_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="model_type 'ser-probe'"):
        EnsembleForAudioClassification(EnsembleConfig(members=[{"model_type": "ser-probe"}], **LABEL_MAPS))


@pytest.mark.slow
def test_onnx_export_agrees_with_pytorch(tmp_path, make_tiny_cnn):
    pytest.importorskip("onnxruntime", reason="the [deploy] extra (onnx, onnxruntime, onnxscript)")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    from inference.onnx_export import export_onnx, verify_onnx

    # Members without pitch and heads: what the ensemble adds to its members' graphs is their weighted mean,
    # and each member's every option is exported in test_onnx.py (with them the export took 50 s, not 13).
    torch.manual_seed(0)
    cnn = make_tiny_cnn(labels=LABELS, pitch_features=False, functionals_head=False, raw_contours_head=False)
    s4 = S4ForAudioClassification(
        S4Config(
            d_model=16,
            n_layers=2,
            d_state=8,
            mel_bins=16,
            pitch_features=False,
            functionals_head=False,
            energy_peaks_head=False,
            smoothed_contours_head=False,
            **LABEL_MAPS,
        )
    ).eval()
    ensemble = EnsembleForAudioClassification.from_members([cnn, s4], member_weights=[3.0, 1.0])
    extractor = feature_extractor_for(ensemble)
    path = export_onnx(ensemble, extractor, tmp_path / "ensemble.onnx", example_seconds=1.0)
    assert verify_onnx(ensemble, extractor, path)[1]
    # The graph weighs the members as the model does: checked against equal weights, it disagrees.
    ensemble.config.member_weights = [1.0, 1.0]
    difference, within = verify_onnx(ensemble, extractor, path)
    assert not within and difference > 1e-2


# ---------------------------------------------------------------------------------------------------------
# --model ensemble
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build_download("emodb", root, per_emotion=8, seconds=0.6, quirks=False)
    return root


def ensemble_args(data_root, output_dir, *extra):
    return parse_args(
        [
            "--model",
            "ensemble",
            "--corpora",
            "emodb",
            "--data_root",
            str(data_root),
            "--split_strategy",
            "random",  # the fixture's few speakers cannot fill three speaker-disjoint splits
            "--output_dir",
            str(output_dir),
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "8",
            "--disable_tqdm",
            "true",
            "--report_to",
            "none",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "run"
    return out, train(*ensemble_args(data_root, out, "--seed", "3"))


@pytest.mark.slow
def test_members_train_with_their_own_recipes_and_the_runs_arguments(trained):
    out, result = trained
    assert result.model_kind == "ensemble"
    for kind, learning_rate in (("cnn", 1e-3), ("s4", 3e-3)):
        run_args = json.loads((out / "members" / kind / "run_args.json").read_text())
        assert run_args["model"] == kind
        assert run_args["learning_rate"] == learning_rate  # training/recipes/<kind>.yaml
        assert (run_args["seed"], run_args["num_train_epochs"]) == (3, 1.0)  # the ensemble's run's
        assert (out / "members" / kind / "model.safetensors").is_file()
        assert f"{kind}_train_loss" in result.train_metrics
    card = (out / "README.md").read_text()
    assert "members/cnn" in card and "averages their class probabilities" in card


@pytest.mark.slow
def test_the_saved_ensemble_is_the_mean_of_its_saved_members(trained):
    out, result = trained
    ensemble = AutoModelForAudioClassification.from_pretrained(out).eval()
    saved = [
        AutoModelForAudioClassification.from_pretrained(out / "members" / kind).eval()
        for kind in ("cnn", "s4")
    ]
    extractor = AutoFeatureExtractor.from_pretrained(out)
    inputs = batch(extractor, clips())
    expected = sum(probabilities(member, inputs) for member in saved) / 2
    torch.testing.assert_close(probabilities(ensemble, inputs), expected, atol=1e-6, rtol=0)
    assert json.loads((out / "test_results.json").read_text())["test_uar"] == result.test_metrics["test_uar"]


@pytest.mark.slow
def test_a_restart_reuses_finished_members_and_refuses_other_ones(trained, data_root, caplog):
    out, result = trained
    for name in ("all_results.json", "test_results.json", "model.safetensors"):
        (out / name).unlink()  # as if killed after the members, before the ensemble was saved
    written = {kind: os.path.getmtime(out / "members" / kind / "model.safetensors") for kind in ("cnn", "s4")}
    # A member's verdict from its own run is repeated in the ensemble's log (one epoch on a few clips may or
    # may not learn: the verdicts are set here).
    saved_results = {}
    for kind, learnt in (("cnn", True), ("s4", False)):
        results_file = out / "members" / kind / "all_results.json"
        saved_results[results_file] = results_file.read_text()
        verdict = {"did_not_learn": not learnt, **({} if learnt else {"did_not_learn_reason": "a verdict"})}
        results_file.write_text(json.dumps(verdict))
    with caplog.at_level(logging.WARNING, logger="training.ensemble"):
        again = train(*ensemble_args(data_root, out, "--seed", "3"))
    for results_file, text in saved_results.items():
        results_file.write_text(text)
    assert caplog.text.count("reusing the finished run") == 2
    assert "Ensemble member s4 did not learn: a verdict" in caplog.text
    assert "Ensemble member cnn did not learn" not in caplog.text
    assert {k: os.path.getmtime(out / "members" / k / "model.safetensors") for k in written} == written
    assert again.test_metrics["test_uar"] == result.test_metrics["test_uar"]

    for name in ("all_results.json", "test_results.json", "model.safetensors"):
        (out / name).unlink()
    with pytest.raises(UsageError, match=r"members/cnn holds a member trained with learning_rate=0.001"):
        train(*ensemble_args(data_root, out, "--seed", "3", "--learning_rate", "0.01"))
    with pytest.raises(UsageError, match=r"its members were trained for another run \(split_seed differ\)"):
        train(*ensemble_args(data_root, out, "--seed", "3", "--data_seed", "5"))
    # An argument this run leaves at its default counts too: the member was trained with class weighting.
    run_args_file = out / "members" / "s4" / "run_args.json"
    run_args_file.write_text(json.dumps({**json.loads(run_args_file.read_text()), "class_weighting": True}))
    with pytest.raises(UsageError, match=r"members/s4 holds a member trained with class_weighting=True"):
        train(*ensemble_args(data_root, out, "--seed", "3"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config_overrides", '{"d_model": 8}'], "--config_overrides: an ensemble is assembled"),
        (["--ensemble_members", "cnn", "encoder"], "encoder cannot be a member"),
        (["--ensemble_members", "s4", "s4"], "a kind given twice"),
    ],
)
def test_options_an_ensemble_cannot_take_are_refused_before_any_work(data_root, tmp_path, extra, message):
    with pytest.raises(UsageError, match=message):
        train(*ensemble_args(data_root, tmp_path / "run", *extra))
    assert not (tmp_path / "run").exists()


def test_ensemble_members_on_another_model_kind_is_refused(data_root, tmp_path):
    args = ensemble_args(data_root, tmp_path / "run", "--ensemble_members", "s4")
    args[0].model = "cnn"
    with pytest.raises(UsageError, match="--ensemble_members: only --model ensemble takes it, not the cnn"):
        train(*args)
