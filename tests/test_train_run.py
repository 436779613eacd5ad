"""run_train.py end to end on tiny fixture corpora: outputs, results, model card, Hub upload, bad input."""

from __future__ import annotations

import concurrent.futures
import fnmatch
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from loaders.fixtures import build_download

ROOT = Path(__file__).resolve().parents[1]
TINY_CNN = (
    '{"conv_channels": [8, 16], "attention_size": 8, "classifier_hidden_size": 8, "n_mfcc": 13, "n_mels": 24}'
)
TINY_S4 = '{"d_model": 8, "n_layers": 1, "d_state": 4, "mel_bins": 16}'


def load_run_train():
    spec = importlib.util.spec_from_file_location("run_train", ROOT / "run_train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_train"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run_train = load_run_train()
UsageError = run_train.UsageError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build_download("emodb", root, per_emotion=10, seconds=0.6, quirks=False)
    build_download("savee", root, per_emotion=10, seconds=0.6, quirks=False)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def base_args(data_root, cache_dir, output_dir, *extra):
    return [
        "--data_root",
        str(data_root),
        "--dataset_cache_dir",
        str(cache_dir),
        "--output_dir",
        str(output_dir),
        "--config_overrides",
        TINY_CNN,
        "--per_device_train_batch_size",
        "8",
        "--num_train_epochs",
        "2",
        "--disable_tqdm",
        "true",
        "--preprocessing_num_workers",
        "1",
        *extra,
    ]


def test_multi_corpus_run_writes_results_card_and_figure(data_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    args = base_args(
        data_root,
        cache_dir,
        out,
        "--corpora",
        "emodb",
        "savee",
        "--split_strategy",
        "random",
        "--class_weighting",
    )
    results = run_train.main(args)

    test = json.loads((out / "test_results.json").read_text())
    for key in (
        "test_accuracy",
        "test_uar",
        "test_macro_f1",
        "test_recall_anger",
        "test_corpus_emodb_uar",
        "test_corpus_savee_accuracy",
    ):
        assert key in test, key
    assert 0.0 <= test["test_uar"] <= 1.0
    assert results.eval_metrics["eval_uar"] == json.loads((out / "eval_results.json").read_text())["eval_uar"]
    assert results.test_metrics["test_corpus_savee_uar"] == test["test_corpus_savee_uar"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["best_metric"] is not None  # selected on validation UAR
    assert any(name.startswith("checkpoint-") for name in os.listdir(out))
    details = json.loads((out / "test_details.json").read_text())
    assert set(details["metrics"]["per_group"]) == {"emodb", "savee"}
    assert len(details["metrics"]["confusion_matrix"]) == 4

    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    for text in (
        "pipeline_tag: audio-classification",
        "UAR",
        "confusion_matrix.png",
        "| class_weighting | `true` |",
        "run_args.json",
        "random utterance split",
        "| train | emodb |",
        "cc-by-4.0",
        "acted",
        "Per corpus",
    ):
        assert text in card, text
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "anger", "1": "happy", "2": "neutral", "3": "sadness"}
    assert "AutoModelForAudioClassification" in config["auto_map"]
    assert (out / "modeling_cnn.py").exists() and (out / "preprocessor_config.json").exists()

    from transformers import AutoModelForAudioClassification

    loaded = AutoModelForAudioClassification.from_pretrained(out)
    assert loaded.config.conv_channels == [8, 16]

    # the same output folder again: refused, nothing touched
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(UsageError, match="already holds a finished run.*--overwrite_output_dir"):
        run_train.main(args)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_resume_from_checkpoint_continues(data_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    run_train.main(
        base_args(
            data_root,
            cache_dir,
            out,
            "--corpora",
            "emodb",
            "--split_strategy",
            "random",
            "--num_train_epochs",
            "1",
            "--eval_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
        )
    )
    checkpoint = next(p for p in out.iterdir() if p.name.startswith("checkpoint-"))
    steps = int(checkpoint.name.split("-")[1])
    run_train.main(
        base_args(
            data_root,
            cache_dir,
            out,
            "--corpora",
            "emodb",
            "--split_strategy",
            "random",
            "--num_train_epochs",
            "2",
            "--eval_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--overwrite_output_dir",
            "--resume_from_checkpoint",
            str(checkpoint),
        )
    )
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 * steps
    assert state["log_history"][-1]["epoch"] == 2.0


class FakeHubApi:
    """Stands in for huggingface_hub.HfApi: records what would be uploaded."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.uploads = []

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, *, repo_id, folder_path, ignore_patterns=(), **kwargs):
        snapshot = self.tmp_path / f"upload{len(self.uploads)}"
        for path in Path(folder_path).rglob("*"):
            rel = path.relative_to(folder_path).as_posix()
            if path.is_file() and not any(fnmatch.fnmatch(rel.split("/")[0], p) for p in ignore_patterns):
                (snapshot / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, snapshot / rel)
        self.uploads.append((repo_id, snapshot))
        future = concurrent.futures.Future()
        future.set_result(None)
        return future


def test_push_to_hub_uploads_model_code_and_card(data_root, cache_dir, tmp_path, monkeypatch):
    import transformers.trainer

    fake = FakeHubApi(tmp_path)
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: fake)
    out = tmp_path / "run"
    run_train.main(
        base_args(
            data_root,
            cache_dir,
            out,
            "--corpora",
            "emodb",
            "--split_strategy",
            "random",
            "--num_train_epochs",
            "1",
            "--push_to_hub",
            "--hub_model_id",
            "me/ser-test",
            "--hub_strategy",
            "end",
        )
    )
    repo_id, uploaded = fake.uploads[-1]
    assert repo_id == "me/ser-test"
    names = {p.name for p in uploaded.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "configuration_cnn.py",
        "modeling_cnn.py",
        "feature_extraction.py",
        "README.md",
        "confusion_matrix.png",
    } <= names
    assert not any(n.startswith("checkpoint-") for n in names)
    assert "_run_train.lock" not in names  # held during the upload; it names this host and PID
    card = (uploaded / "README.md").read_text()
    assert "Speech emotion recognition: CNN on emodb" in card and "## Intended use and limitations" in card
    assert "auto_map" in json.loads((uploaded / "config.json").read_text())


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--corpora", "emodb", "nosuch"], "unknown corpus name"),
        (["--corpora", "emodb", "--emotions", "anger", "joy"], "unknown emotion"),
        (["--corpora", "emodb", "--emotions", "anger", "surprise"], "surprise"),
        (
            [
                "--corpora",
                "emodb",
                "savee",
                "--split_strategy",
                "corpus",
                "--test_corpora",
                "emodb",
                "--emotions",
                "anger",
                "bored",
            ],
            "leaves class 'bored' with no example in the train split",
        ),
        (["--corpora", "emodb", "--config_overrides", '{"not_a_field": 3}'], "has no field 'not_a_field'"),
        (["--corpora", "emodb", "--merge", "calm"], "source:target"),
        (["--corpora", "emodb", "--speed_perturbation", "0.9", "0"], "speed factors must be > 0"),
    ],
)
def test_bad_input_fails_before_training(data_root, cache_dir, tmp_path, extra, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        run_train.main(base_args(data_root, cache_dir, out, *extra))
    assert not out.exists()


def test_empty_data_root_is_an_error(tmp_path, cache_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds none of the corpora.*python -m loaders download"):
        run_train.main(base_args(empty, cache_dir, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_checkpoint_of_another_model_kind_is_an_error(data_root, cache_dir, tmp_path):
    from modeling.s4 import S4Config, S4ForAudioClassification

    checkpoint = tmp_path / "s4"
    S4ForAudioClassification(S4Config(d_model=8, n_layers=1, d_state=4, num_labels=4)).save_pretrained(
        checkpoint
    )
    with pytest.raises(UsageError, match="is a s4 checkpoint but --model is cnn"):
        run_train.main(
            base_args(
                data_root,
                cache_dir,
                tmp_path / "run",
                "--corpora",
                "emodb",
                "--model",
                "cnn",
                "--model_name_or_path",
                str(checkpoint),
            )
        )
    assert not (tmp_path / "run").exists()


def test_arguments_from_a_yaml_file(data_root, cache_dir, tmp_path):
    args_file = tmp_path / "args.yaml"
    args_file.write_text(
        f"corpora: [emodb]\ndata_root: {data_root}\noutput_dir: {tmp_path / 'run'}\nmodel: cnn\n"
        "config_overrides:\n  not_a_field: 1\n"
    )
    # parsed from the file, then checked like command-line arguments
    with pytest.raises(UsageError, match="has no field 'not_a_field'"):
        run_train.main([str(args_file)])
    model_args, data_args, training_args = run_train.parse_args([str(args_file)])
    assert data_args.corpora == ["emodb"] and model_args.model == "cnn"
    assert json.loads(model_args.config_overrides) == {"not_a_field": 1}  # a YAML mapping becomes JSON
    assert training_args.output_dir == str(tmp_path / "run")
    with pytest.raises(UsageError, match=r"--config_overrides 'd_model=64': not JSON .*give a JSON object"):
        run_train.main([str(args_file), "--config_overrides", "d_model=64"])


def test_config_overrides_are_json_checked_against_the_config():
    from training.run_config import parse_config_overrides

    text = (
        '{"conv_channels": [16, 32], "feature_normalization": "none", "use_lstm": true, '
        '"classifier_dropout": 0.5}'
    )
    assert parse_config_overrides(text, "cnn") == {
        "conv_channels": [16, 32],
        "feature_normalization": "none",
        "use_lstm": True,
        "classifier_dropout": 0.5,
    }
    with pytest.raises(UsageError, match="not a JSON object"):
        parse_config_overrides("[1, 2]", "cnn")
