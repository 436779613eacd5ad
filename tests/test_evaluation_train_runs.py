"""The benchmark's real training function (evaluation/train_runs.py): a CNN and the openSMILE baseline trained
end to end on a small fold fixture, the `train(..., dataset=)` hook of the training library, the checks of
the pass-through options and the leaderboard's mark of a model below the openSMILE baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

import run_benchmark
from evaluation import train_runs
from evaluation.reports import leaderboard, render_markdown
from loaders import fixtures

REPO = Path(__file__).resolve().parents[1]
TINY = ["--num_train_epochs", "1", "--max_train_samples", "32", "--max_eval_samples", "16",
        "--per_device_train_batch_size", "8", "--report_to", "none", "--preprocessing_num_workers", "1",
        "--dataloader_num_workers", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def emodb_root(tmp_path_factory) -> Path:
    """EMO-DB's layout, 2 clips of a second per speaker and emotion: 10 speakers, 2 speaker-cv folds."""
    root = tmp_path_factory.mktemp("data")
    rows, seen = [], {}
    for row in fixtures.read_manifest():
        key = (row["corpus"], row["speaker"], row["emotion"])
        seen[key] = seen.get(key, 0) + 1
        if row["corpus"] == "emodb" and seen[key] <= 2:
            rows.append(row)
    fixtures.build_download("emodb", root, manifest=rows, quirks=False, seconds=1.0)
    return root


def test_default_train_fn_knows_the_library_models_and_the_baselines():
    from training.run_config import MODEL_KINDS

    assert run_benchmark.DEFAULT_TRAIN_FN == "evaluation.train_runs:train_run"
    baselines = {
        "opensmile-egemaps",
        "opensmile-compare",
        "opensmile-compare-logreg",
        "opensmile-egemaps-logreg",
    }
    assert set(run_benchmark.KNOWN_MODELS) == {*MODEL_KINDS, *baselines}
    assert tuple(train_runs.train_run.MODELS) == run_benchmark.KNOWN_MODELS


@pytest.mark.parametrize(
    ("model", "recipe"),
    [
        ("opensmile-compare", ("compare", "svm", "uar")),
        ("opensmile-egemaps", ("egemaps", "svm", "uar")),
        ("opensmile-compare-logreg", ("compare", "logreg", "log_loss")),
        ("opensmile-egemaps-logreg", ("egemaps", "logreg", "log_loss")),
    ],
)
def test_each_baseline_trains_with_its_recipe(model, recipe, tmp_path, monkeypatch):
    import evaluation.opensmile_baseline as ob

    calls = []

    def fake_train_baseline(train, validation, test, label_names, **kwargs):
        calls.append(kwargs)
        return {"accuracy": 0.5, "uar": 0.5, "macro_f1": 0.5, "validation_uar": 0.5, "chosen_C": 1.0,
                "num_examples": 2, "confusion_matrix": [[1, 0], [0, 1]]}  # fmt: skip

    monkeypatch.setattr(ob, "train_baseline", fake_train_baseline)
    split = datasets.Dataset.from_dict(
        {"label": [0, 1]}, features=datasets.Features({"label": datasets.ClassLabel(names=["a", "b"])})
    )
    dsd = datasets.DatasetDict(train=split, validation=split, test=split)
    result = train_runs.train_run(model, dsd, tmp_path, ["--seed", "3"])
    assert len(calls) == 1 and result["test_uar"] == 0.5
    assert (calls[0]["feature_set"], calls[0]["classifier"], calls[0]["criterion"]) == recipe
    assert calls[0]["seed"] == 3


def test_cnn_and_opensmile_end_to_end_then_a_rerun_trains_nothing(tmp_path, emodb_root, monkeypatch):
    """Real training (1 epoch) of every (model, fold); the run folders hold the model and the baseline in
    subfolders, the runner's results.json on top; a second command trains nothing."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # the openSMILE feature cache
    out = tmp_path / "out"
    argv = [
        "--models", "cnn", "opensmile-egemaps", "--corpora", "emodb", "--data_root", str(emodb_root),
        "--protocol", "speaker-cv", "--folds", "2", "--output_dir", str(out),
        "--dataset_cache_dir", str(tmp_path / "cache"), *TINY,
    ]  # fmt: skip
    result = run_benchmark.main(argv)
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(zip(runs["model"], runs["fold"], strict=True)) == [
        ("cnn", 1), ("cnn", 2), ("opensmile-egemaps", 1), ("opensmile-egemaps", 2),
    ]  # fmt: skip
    assert runs[["test_accuracy", "test_uar", "test_macro_f1"]].notna().all().all()
    assert runs["test_uar"].between(0, 1).all()
    for fold in (1, 2):
        cnn = out / "runs" / "cnn" / "emodb" / f"fold-{fold}"
        assert (cnn / "model" / "model.safetensors").is_file()
        assert json.loads((cnn / "model" / "run_args.json").read_text())["split_strategy"] == "given"
        base = out / "runs" / "opensmile-egemaps" / "emodb" / f"fold-{fold}"
        assert (base / "baseline" / "model.joblib").is_file()
        assert (base / "baseline" / "results.json").is_file()  # the baseline's own, out of the runner's way
        for run in (cnn, base):
            stored = json.loads((run / "results.json").read_text())
            assert set(stored) == {"fingerprint", "row", "metrics"}
            matrix = json.loads((run / "confusion_matrix.json").read_text())
            assert len(matrix["matrix"]) == len(matrix["classes"]) == 4
        # The test split the CNN was scored on is the fold's (limited by --max_eval_samples 16).
        assert json.loads((cnn / "results.json").read_text())["metrics"]["test_samples"] == 16
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["model"]) == {"cnn", "opensmile-egemaps"}
    cnn_row = board.set_index("model").loc["cnn"]
    assert cnn_row["baseline_uar"] == pytest.approx(
        board.set_index("model").loc["opensmile-egemaps", "uar_mean"]
    )
    assert "UAR vs best openSMILE" in (out / "leaderboard.md").read_text()
    assert len(result["leaderboard"]) == 2

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/results.json")}
    again = run_benchmark.main(argv)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/results.json")} == stamps
    pd.testing.assert_frame_equal(again["runs"].reset_index(drop=True), result["runs"].reset_index(drop=True))


def _fold_dataset(n: int = 24) -> datasets.DatasetDict:
    rng = np.random.default_rng(0)
    names = ["neutral", "anger", "joy"]  # not the default emotions: the classes must come from the data

    def split(k: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {
                "audio": [{"array": rng.normal(0, 0.1, 8000), "sampling_rate": 16000} for _ in range(k)],
                "label": [i % 3 for i in range(k)],
                "corpus": ["synthetic"] * k,
                "file": [f"f{i}.wav" for i in range(k)],
                "speaker": [str(i % 4) for i in range(k)],
            },
            features=datasets.Features(
                {
                    "audio": datasets.Audio(sampling_rate=16000),
                    "label": datasets.ClassLabel(names=names),
                    "corpus": datasets.Value("string"),
                    "file": datasets.Value("string"),
                    "speaker": datasets.Value("string"),
                }
            ),
        )

    return datasets.DatasetDict(train=split(n), validation=split(6), test=split(9))


def test_train_on_a_given_dataset_uses_its_splits_and_classes(tmp_path):
    """The hook of training.train: no corpus is loaded, the given splits are trained on and scored."""
    from training import parse_args, train

    dataset = _fold_dataset()
    args = parse_args(
        ["--num_train_epochs", "1", "--report_to", "none", "--preprocessing_num_workers", "1"],
        values={"model": "cnn", "corpora": ["emodb"], "output_dir": str(tmp_path / "m")},  # emodb: not loaded
    )
    result = train(*args, dataset=dataset)
    assert result.label_names == ["neutral", "anger", "joy"]
    assert result.corpora == ["synthetic"]
    assert result.test_metrics["test_samples"] == 9
    assert np.asarray(result.confusion_matrix).sum() == 9
    assert result.counts["train"]["synthetic"] == {"neutral": 8, "anger": 8, "joy": 8}
    assert result.run_args["split_strategy"] == "given"


def test_train_refuses_a_dataset_without_the_splits(tmp_path):
    from training import UsageError, parse_args, train

    args = parse_args(
        [], values={"model": "cnn", "corpora": ["synthetic"], "output_dir": str(tmp_path / "m")}
    )
    dataset = _fold_dataset()
    with pytest.raises(UsageError, match=r"no \['validation'\] split"):
        train(*args, dataset=datasets.DatasetDict(train=dataset["train"], test=dataset["test"]))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--corpora", "emodb"], "--corpora: the benchmark sets it"),
        (["--model=s4"], "--model: the benchmark sets it for every run; use --models"),
        # an abbreviation is caught too: the options are compared as parsed
        (["--overwrite_out"], "--overwrite_output_dir: the benchmark sets it"),
        (
            ["--split_strategy", "random"],
            "--split_strategy: the benchmark sets it for every run; use --protocol",
        ),
        (["--learning_rate", "-1"], "--learning_rate -1.0: must be >= 0"),
        (["--no_such_option", "1"], "pass-through options (cnn)"),
        (["--config_overrides", '{"no_such_field": 1}'], "no_such_field"),
    ],
)
def test_validate_args_rejects_bad_pass_through_options(extra, message):
    with pytest.raises(ValueError) as info:
        train_runs.validate_args(extra, models=["cnn", "opensmile-egemaps"])
    assert message in str(info.value)


def test_validate_args_accepts_training_options():
    train_runs.validate_args(
        ["--num_train_epochs", "2", "--learning_rate", "1e-3", "--seed", "7"], models=["s4"]
    )


def test_a_bad_pass_through_option_is_one_line_before_any_data(tmp_path):
    """rc 2, one line naming the option, nothing written."""
    command = [
        sys.executable, "run_benchmark.py", "--models", "cnn", "--corpora", "synthetic",
        "--output_dir", str(tmp_path / "out"), "--split_strategy", "random",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("run_benchmark.py: error: pass-through option --split_strategy: "), last
    assert "use --protocol" in last and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _runs(models_uar: dict[str, float]) -> pd.DataFrame:
    rows = []
    for model, uar in models_uar.items():
        for fold in (1, 2):
            rows.append(
                {
                    "model": model,
                    "corpus": "emodb",
                    "protocol": "speaker-cv",
                    "fold": fold,
                    "test_speakers": "03",
                    "test_accuracy": uar,
                    "test_uar": uar,
                    "test_macro_f1": uar,
                    "run_dir": f"runs/{model}/{fold}",
                    "train_corpora": "emodb",
                    "classes": "a b",
                    "speaker_independent": True,
                }  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_leaderboard_marks_a_model_below_the_best_opensmile_baseline():
    runs = _runs(
        {"cnn": 0.55, "s4": 0.70, "wav2vec2": 0.65, "opensmile-egemaps": 0.60, "opensmile-compare": 0.65}
    )
    # A tie from other fold values: (0.6 + 0.7) / 2 is 0.6499999999999999 in floats.
    runs.loc[runs["model"] == "wav2vec2", "test_uar"] = [0.6, 0.7]
    board = leaderboard(runs).set_index("model")
    assert board.loc["cnn", "baseline_uar"] == pytest.approx(0.65)  # the best of the two baselines
    assert board.loc["cnn", "reaches_baseline"] == False  # noqa: E712
    assert board.loc["s4", "reaches_baseline"] == True  # noqa: E712
    assert board.loc["wav2vec2", "reaches_baseline"] == True  # noqa: E712  (a tie reaches it)
    assert board.loc["opensmile-egemaps", "reaches_baseline"] is None
    text = render_markdown(leaderboard(runs), runs)
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "**−0.100 ✗**" in lines["cnn"]
    assert "+0.050" in lines["s4"] and "✗" not in lines["s4"]
    assert "+0.000" in lines["wav2vec2"] and "✗" not in lines["wav2vec2"]
    assert "✗ marks a model below it" in text


def test_leaderboard_without_a_baseline_has_no_comparison():
    runs = _runs({"cnn": 0.55})
    board = leaderboard(runs)
    assert board["baseline_uar"].isna().all() and board["reaches_baseline"].isna().all()
    assert "openSMILE" not in render_markdown(board, runs)
