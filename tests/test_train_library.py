"""training/ as a library: argument layers (recipe < file < flags), run_args.json, repeated in-process
train() calls, per-corpus metrics from predictions."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_run import TINY_CNN

from loaders.fixtures import build_download
from training import (
    TrainResult,
    UsageError,
    arguments_dict,
    files,
    load_recipe,
    parse_args,
    recipe_path,
    train,
)
from training.metrics import EmotionClassificationMetric


@pytest.fixture
def no_datasets_here(tmp_path, monkeypatch):
    """A working folder without ./datasets: a run without --corpora falls back to the demo corpus."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_recipe_then_file_then_flags(no_datasets_here, tmp_path):
    demo = load_recipe("demo-cnn")
    # nothing given: the demo recipe of the default model kind
    model_args, data_args, training_args = parse_args([])
    assert model_args.model == "cnn" and data_args.corpora == ["synthetic"]
    assert model_args.config_overrides is None and training_args.num_train_epochs == demo["num_train_epochs"]
    # a file overrides the recipe, a flag overrides the file (and the recipe)
    args_file = tmp_path / "mine.yaml"
    args_file.write_text("num_train_epochs: 3\nlearning_rate: 1e-2\nconfig_overrides:\n  attention_size: 4\n")
    model_args, data_args, training_args = parse_args([str(args_file), "--learning_rate", "1e-4"])
    assert training_args.num_train_epochs == 3  # file over recipe
    assert training_args.learning_rate == 1e-4  # flag over file
    assert training_args.weight_decay == demo["weight_decay"]  # recipe where neither file nor flag says
    assert json.loads(model_args.config_overrides) == {"attention_size": 4}  # the file's, whole
    # a corpus named: the model kind's recipe, not the demo's
    model_args, data_args, training_args = parse_args(["--corpora", "emodb", "--model", "s4"])
    s4 = load_recipe("s4")
    assert model_args.config_overrides is None and data_args.speed_perturbation is None
    assert (training_args.learning_rate, training_args.num_train_epochs) == (s4["learning_rate"], 30)
    # in-process values sit between the file and the flags
    _, _, training_args = parse_args(
        [str(args_file), "--num_train_epochs", "5"], values={"num_train_epochs": 4, "learning_rate": 0.5}
    )
    assert training_args.num_train_epochs == 5 and training_args.learning_rate == 0.5
    # wav2vec2 has no demo recipe: its own, with unused-parameter detection for layerdrop
    _, _, training_args = parse_args(["--model", "wav2vec2"])
    assert training_args.learning_rate == 3e-5 and training_args.ddp_find_unused_parameters is True


def test_the_speech_recipe_is_the_s4_defaults_with_its_own_architecture(no_datasets_here):
    from modeling import S4Config

    speech = str(recipe_path("s4-speech"))
    model_args, _, training_args = parse_args([speech, "--corpora", "emodb"])
    assert model_args.model == "s4" and training_args.learning_rate == load_recipe("s4")["learning_rate"]
    config = S4Config(**json.loads(model_args.config_overrides))
    assert config.functionals == "extended" and config.pitch_features and not config.normalize_waveform
    assert (config.d_model, config.n_layers, config.functionals_mel_group) == (128, 4, 1)  # as measured


@pytest.mark.parametrize("kind", ["cnn", "s4"])
@pytest.mark.parametrize("option", ["fit_branch_weights", "refit_functionals_head"])
def test_the_head_and_branch_weights_are_fitted_by_default(no_datasets_here, kind, option):
    """Both models' functionals heads are refitted and their two branches get weights fitted on validation,
    where that helped on every development corpus (README, leaderboard; ROUNDS.md, eleventh, eighteenth and
    thirtieth rounds); each can be turned off."""
    _, data_args, _ = parse_args(["--model", kind])
    assert getattr(data_args, option) is True
    _, data_args, _ = parse_args(["--model", kind, f"--{option}", "false"])
    assert getattr(data_args, option) is False


def test_the_s4_shrinks_its_network_s_weight_towards_the_head_by_default(no_datasets_here):
    """The S4's recipe (and its demo) fit the branch weights with a penalty on the network's weight, which
    helped it on every development corpus; the CNN's network adds to its head on speech and lost with it
    (ROUNDS.md, thirty-second round). A flag overrides it; a negative or infinite one is refused."""
    for corpora in (["--corpora", "emodb"], []):  # the recipe, then the demo recipe
        assert parse_args(["--model", "s4", *corpora])[1].branch_network_penalty == 0.01
        assert parse_args(["--model", "cnn", *corpora])[1].branch_network_penalty == 0.0
    assert parse_args(["--model", "s4", "--branch_network_penalty", "0"])[1].branch_network_penalty == 0.0
    for bad in ("-1", "inf", "nan"):
        refused = rf"--branch_network_penalty {bad}.*: must be a finite value >= 0"
        with pytest.raises(UsageError, match=refused):
            parse_args(["--model", "s4", "--branch_network_penalty", bad])


@pytest.mark.parametrize("kind", ["cnn", "s4"])
def test_the_demo_is_the_defaults_on_a_shorter_schedule(kind):
    """The learning test trains the demo recipe: it must be the defaults (no architecture of its own), so
    that the test checks what users get."""
    demo, defaults = load_recipe(f"demo-{kind}"), load_recipe(kind)
    assert "config_overrides" not in demo
    shared = set(defaults) - {"num_train_epochs"}
    assert {key: demo[key] for key in shared} == {key: defaults[key] for key in shared}
    assert demo["num_train_epochs"] < defaults["num_train_epochs"]


def test_a_checkpoint_keeps_its_architecture(no_datasets_here, tmp_path):
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "ser-s4"}))
    model_args, _, training_args = parse_args(["--model_name_or_path", str(checkpoint)])
    assert model_args.model == "s4"  # from the checkpoint
    assert model_args.config_overrides is None  # the demo recipe's architecture is not applied to it
    assert training_args.learning_rate == load_recipe("demo-s4")["learning_rate"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build_download("emodb", root, per_emotion=6, seconds=0.5, quirks=False)
    build_download("savee", root, per_emotion=6, seconds=0.5, quirks=False)
    return root


def tiny_run_args(data_root, cache_dir) -> list[str]:
    return [
        "--corpora",
        "emodb",
        "savee",
        "--split_strategy",
        "random",
        "--data_root",
        str(data_root),
        "--dataset_cache_dir",
        str(cache_dir),
        "--config_overrides",
        TINY_CNN,
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--class_weighting",
        "--disable_tqdm",
        "true",
        "--preprocessing_num_workers",
        "1",
    ]


def test_train_twice_in_one_process_is_reproducible_and_leaks_nothing(data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the first run goes to the default output folder, under outputs/
    model_args, data_args, training_args = parse_args(tiny_run_args(data_root, tmp_path / "cache"))
    given = arguments_dict(model_args, data_args, training_args)
    handlers = list(logging.getLogger().handlers)
    renamed_into_place = []  # files written whole or not at all (training.files), among others
    replace = os.replace

    def recording_replace(src, dst):
        renamed_into_place.append(dst)
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", recording_replace)
    results: list[TrainResult] = []
    for output_dir in (None, str(tmp_path / "second")):
        training_args.output_dir = output_dir
        results.append(train(model_args, data_args, training_args))
        # the caller's arguments are left as they were (train() works on a copy)
        assert arguments_dict(model_args, data_args, training_args) == {**given, "output_dir": output_dir}
        torch.rand(7)  # the global generators move on between runs; each run seeds itself
        np.random.rand(7)
    first, second = results
    assert logging.getLogger().handlers == handlers
    # the caller's arguments are left as they were (train() works on a copy)
    assert arguments_dict(model_args, data_args, training_args) == {
        **given,
        "output_dir": str(tmp_path / "second"),
    }
    assert first.train_metrics["train_loss"] == second.train_metrics["train_loss"]
    # class weights in the loss leave no class prior to take out of the network's logits
    assert not any(key.startswith("class_prior_correction") for key in first.train_metrics)
    for key in ("test_loss", "test_uar", "test_corpus_emodb_uar", "eval_uar"):
        metrics = first.eval_metrics if key.startswith("eval") else first.test_metrics
        other = second.eval_metrics if key.startswith("eval") else second.test_metrics
        assert metrics[key] == other[key], key
    assert first.confusion_matrix == second.confusion_matrix
    assert sum(map(sum, first.confusion_matrix)) == first.test_metrics["test_samples"]

    # run_args.json: every resolved argument, equal to the arguments the Trainer ran with
    out = tmp_path / "second"
    # what a later run reads back is never left half-written by a kill
    for name in ("run_setup.json", "run_args.json", "all_results.json", "test_details.json"):
        assert out / name in map(Path, renamed_into_place), name
    written = json.loads((out / "run_args.json").read_text())
    assert written == second.run_args
    assert written["class_weighting"] is True and written["corpora"] == ["emodb", "savee"]
    assert written["learning_rate"] == load_recipe("cnn")["learning_rate"]  # the recipe's, resolved
    ran = torch.load(out / "training_args.bin", weights_only=False).to_dict()
    assert {k: v for k, v in written.items() if k in ran} == json.loads(
        json.dumps({k: v for k, v in ran.items() if k in written}, default=str)
    )
    # ... and a valid arguments file: the same arguments parse back from it
    assert arguments_dict(*parse_args([str(out / "run_args.json")])) == written
    card = (out / "README.md").read_text()
    assert "| class_weighting | `true` |" in card and "| learning_rate | `0.001` |" in card


def test_per_corpus_metrics_from_predictions_equal_a_direct_computation(make_tiny_cnn, tmp_path):
    """Also under `run_train.py`'s length-grouped training sampler (which transformers would apply to
    evaluation too) and with the `length` column by which the trainer batches evaluation: the per-corpus
    figures pair each prediction with its own clip's corpus."""
    import datasets
    from conftest import TINY_CNN_LABELS
    from transformers import TrainingArguments

    from modeling.feature_extraction import SERFeatureExtractor
    from training.data import AudioCollator
    from training.trainer import SERTrainer, predict_with_details

    rng = np.random.default_rng(0)
    n = 30
    clips = [
        rng.standard_normal(int(rng.integers(6000, 12000))).astype(np.float32) * rng.uniform(0.1, 2.0)
        for _ in range(n)
    ]
    labels = rng.integers(0, len(TINY_CNN_LABELS), n).tolist()
    corpora = [["emodb", "savee", "tess"][i % 3] for i in range(n)]  # interleaved, as after shuffling
    lengths = [len(clip) for clip in clips]  # what prepared splits carry, and evaluation batches by
    dataset = datasets.Dataset.from_dict(
        {"input_values": clips, "label": labels, "corpus": corpora, "length": lengths}
    )
    model = make_tiny_cnn()
    extractor = SERFeatureExtractor()
    trainer = SERTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path),
            report_to=[],
            use_cpu=True,
            remove_unused_columns=False,
            per_device_eval_batch_size=4,
            train_sampling_strategy="group_by_length",
        ),
        data_collator=AudioCollator(extractor, random_crop=False),
        processing_class=extractor,
    )
    metrics, details = predict_with_details(trainer, dataset, TINY_CNN_LABELS, "test")

    # directly: one clip at a time through the model, then the metric over all of them with their corpora
    with torch.no_grad():
        predictions = [
            int(model(**extractor(clip, sampling_rate=16000, return_tensors="pt")).logits.argmax(-1))
            for clip in clips
        ]
    direct = EmotionClassificationMetric().compute(
        predictions=predictions, references=labels, label_names=TINY_CNN_LABELS, groups=corpora
    )
    assert details == direct
    assert set(details["per_group"]) == {"emodb", "savee", "tess"}
    for corpus in ("emodb", "savee", "tess"):
        assert metrics[f"test_corpus_{corpus}_uar"] == direct["per_group"][corpus]["uar"]
        assert metrics[f"test_corpus_{corpus}_accuracy"] == direct["per_group"][corpus]["accuracy"]
    assert metrics["test_uar"] == pytest.approx(direct["uar"])


def test_a_run_refits_the_head_and_fits_the_branch_weights_on_its_validation_clips(data_root, tmp_path):
    """After training, the network's logits lose the training clips' class prior, the CNN's functionals head
    is refitted (C chosen by the validation cross-entropy) and its two branches are weighted as the
    validation clips say (written to the saved weights, config.json, train_results.json and the model card);
    `--correct_class_prior false --refit_functionals_head false --fit_branch_weights false` keeps the network
    and the head as trained and the plain sum. Training itself is the same: every other weight is equal."""
    from safetensors.torch import load_file

    from evaluation.opensmile_baseline import C_GRID

    # Unbalanced training clips (a random subset of the fixture's balanced ones; every class is in it), and
    # no class weights in the loss, whose balanced classes would leave no prior to take out.
    args = [arg for arg in tiny_run_args(data_root, tmp_path / "cache") if arg != "--class_weighting"]
    args += ["--max_train_samples", "26"]
    train(*parse_args([*args, "--output_dir", str(tmp_path / "fitted")]))
    plain = [
        "--correct_class_prior",
        "false",
        "--refit_functionals_head",
        "false",
        "--fit_branch_weights",
        "false",
    ]
    train(*parse_args([*args, "--output_dir", str(tmp_path / "plain"), *plain]))
    fitted = json.loads((tmp_path / "fitted" / "config.json").read_text())["branch_weights"]
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["branch_weights"] == [1.0, 1.0]
    assert len(fitted) == 2 and fitted != [1.0, 1.0] and min(fitted) > 0
    chosen_c = json.loads((tmp_path / "fitted" / "train_results.json").read_text())["functionals_head_C"]
    assert chosen_c in C_GRID
    assert "functionals_head_C" not in json.loads((tmp_path / "plain" / "train_results.json").read_text())
    weights, plain_weights = (load_file(tmp_path / run / "model.safetensors") for run in ("fitted", "plain"))
    # The CNN's defaults have three linear heads; the raw contours and spectrum heads are fitted after
    # training only, and the spectrum head is then kept or put back to zero (gated).
    heads = ("functionals_head", "raw_contours_head", "spectrum_head")
    head = {f"{name}.{part}" for name in heads for part in ("weight", "bias")}
    assert head <= set(weights)
    for name in ("functionals_head.weight", "functionals_head.bias", "raw_contours_head.weight"):
        assert not torch.allclose(weights[name], plain_weights[name])
    assert not plain_weights["raw_contours_head.weight"].any()
    assert not plain_weights["spectrum_head.weight"].any()
    # The network's output bias, less the centred log share of each class in the training clips.
    results = json.loads((tmp_path / "fitted" / "train_results.json").read_text())
    labels = json.loads((tmp_path / "fitted" / "config.json").read_text())["id2label"]
    shift = torch.tensor([results[f"class_prior_correction_{labels[str(i)]}"] for i in range(len(labels))])
    assert shift.abs().max() > 0.01 and abs(shift.sum()) < 1e-6  # the fixture's classes are unbalanced
    # ... the shares of the 26 training clips: whole numbers of clips, not those of another split
    shares = shift.double().exp() / shift.double().exp().sum()
    counts = shares * results["train_samples"]
    assert results["train_samples"] == 26
    torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-4)
    output_bias = "classifier.3.bias"
    torch.testing.assert_close(weights[output_bias], plain_weights[output_bias] - shift)
    for name, value in weights.items():
        if name not in head and name != output_bias:
            torch.testing.assert_close(value, plain_weights[name])
    assert not any(
        key.startswith("class_prior_correction")
        for key in json.loads((tmp_path / "plain" / "train_results.json").read_text())
    )
    raw_c = results["raw_contours_head_C"]
    card = (tmp_path / "fitted" / "README.md").read_text()
    plain_card = (tmp_path / "plain" / "README.md").read_text()
    assert "branch_weights (fitted on validation)" in card
    assert (
        "| logits of the network and the heads trained beside it: training class prior taken out (centred "
        "log share subtracted) |" in card
    )
    assert "training class prior taken out" not in plain_card
    assert "branch_weights (fitted on validation)" not in plain_card
    assert f"| functionals head refitted: C (by validation log_loss) | {chosen_c:g} |" in card
    assert f"| raw contours head refitted: C (by validation log_loss) | {raw_c:g} |" in card
    spectrum_c = results["spectrum_head_C"]
    assert f"| spectrum head refitted: C (by validation log_loss) | {spectrum_c:g} |" in card
    assert results["spectrum_head_kept"] in (0.0, 1.0)  # the gate's decision is recorded
    assert "functionals head refitted" not in plain_card
    assert "penalty on the network's weight" not in card
    # With a penalty on the network's weight (the S4's recipe) the same run keeps less of its network.
    train(*parse_args([*args, "--output_dir", str(tmp_path / "penalised"), "--branch_network_penalty", "1"]))
    penalised = json.loads((tmp_path / "penalised" / "config.json").read_text())["branch_weights"]
    assert penalised[0] < fitted[0]
    penalised_card = (tmp_path / "penalised" / "README.md").read_text()
    assert "| branch_weights: penalty on the network's weight | 1 |" in penalised_card


def test_a_model_without_an_output_layer_for_the_class_prior_is_refused_before_training(
    data_root, tmp_path, monkeypatch
):
    from training import run

    build_model = run.build_model

    def without_classifier(*args, **kwargs):
        model, feature_extractor = build_model(*args, **kwargs)
        del model.classifier
        return model, feature_extractor

    monkeypatch.setattr(run, "build_model", without_classifier)
    args = [arg for arg in tiny_run_args(data_root, tmp_path / "cache") if arg != "--class_weighting"]
    trained = []
    monkeypatch.setattr(run.SERTrainer, "train", lambda *a, **k: trained.append(1))
    with pytest.raises(UsageError, match="no output layer .* run with --correct_class_prior false"):
        train(*parse_args([*args, "--output_dir", str(tmp_path / "out")]))
    assert not trained
