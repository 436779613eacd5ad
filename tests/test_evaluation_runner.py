"""run_benchmark.py: the run loop with a fake training function: resume, shards, collect, reports, errors,
and a real kill (SIGKILL) in the middle of a benchmark followed by a re-run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

import run_benchmark
from evaluation.folds import load_metadata
from evaluation.reports import LEADERBOARD_COLUMNS, RUNS_COLUMNS, read_runs, summed_confusions
from evaluation.runner import train_not_available
from loaders import fixtures

REPO = Path(__file__).resolve().parents[1]


def fake_metrics(run_dir: Path, dataset_dict: datasets.DatasetDict) -> dict:
    """Deterministic figures from the run's folder name, and a confusion matrix from the test labels."""
    key = "/".join(Path(run_dir).parts[-3:])
    u = zlib.crc32(key.encode()) / 2**32
    names = dataset_dict["test"].features["label"].names
    counts = np.bincount(dataset_dict["test"]["label"], minlength=len(names))
    return {
        "test_accuracy": 0.5 + 0.4 * u,
        "test_uar": 0.4 + 0.5 * u,
        "test_macro_f1": 0.3 + 0.6 * u,
        "confusion_matrix": np.diag(counts).tolist(),
    }


def slow_fake_train(model, dataset_dict, run_dir, extra_args):
    """For subprocesses (--train_fn test_evaluation_runner:slow_fake_train): logs each call, leaves a
    checkpoint file, sleeps FAKE_TRAIN_SECONDS."""
    with open(os.environ["FAKE_TRAIN_LOG"], "a") as f:
        f.write(f"{model} {'/'.join(Path(run_dir).parts[-2:])}\n")
    (Path(run_dir) / "checkpoint-1").mkdir(exist_ok=True)
    time.sleep(float(os.environ.get("FAKE_TRAIN_SECONDS", "0")))
    return fake_metrics(run_dir, dataset_dict)


class FakeTrainer:
    """In-process training function: records its calls and checks what it is given."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, dataset_dict, run_dir, extra_args):
        self.calls.append((model, str(Path(run_dir)), list(extra_args), dataset_dict))
        return fake_metrics(run_dir, dataset_dict)


def fake_load(corpus: str) -> datasets.Dataset:
    """The synthetic corpus's metadata as a dataset, with the file name standing in for the audio."""
    meta, _ = load_metadata([corpus], None)
    return datasets.Dataset.from_dict(
        {"audio": list(meta["file"]), "label": [0] * len(meta), **{c: list(meta[c]) for c in meta.columns}}
    )


def refuse(*args, **kwargs):
    raise AssertionError("nothing may be trained or loaded here")


def bench_args(out: Path, *extra: str) -> list[str]:
    return [
        "--models", "cnn", "s4", "--corpora", "synthetic", "--protocol", "speaker-cv", "--folds", "3",
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished benchmark: 2 models x 3 folds of the synthetic corpus."""
    out = tmp_path_factory.mktemp("bench") / "speaker-cv"
    trainer = FakeTrainer()
    result = run_benchmark.main(bench_args(out, "--num_train_epochs", "3"), train_fn=trainer, load=fake_load)
    return out, trainer, result


def test_every_run_once_with_its_folder_and_the_pass_through_options(finished):
    out, trainer, _ = finished
    assert len(trainer.calls) == 6
    assert {call[2] == ["--num_train_epochs", "3"] for call in trainer.calls} == {True}
    folds = pd.read_csv(out / "folds.csv")
    for model, run_dir, _, dsd in trainer.calls:
        run = Path(run_dir)
        assert run.parent.parent.name == model
        fold = int(run.name.removeprefix("fold-"))
        rows = folds[folds["fold"] == fold]
        for split in ("train", "validation", "test"):
            assert sorted(dsd[split]["file"]) == sorted(rows.loc[rows["split"] == split, "file"])
        assert dsd["test"].features["label"].names == ["anger", "happy", "neutral", "sadness"]
        args = json.loads((run / "run_args.json").read_text())
        assert args["fold"]["counts"] == {s: len(dsd[s]) for s in ("train", "validation", "test")}
        assert args["extra_args"] == ["--num_train_epochs", "3"]
        assert (run / "results.json").is_file() and (run / "confusion_matrix.json").is_file()


def test_runs_csv_and_leaderboard_means(finished):
    out, _, _ = finished
    runs = pd.read_csv(out / "runs.csv", dtype={"test_speakers": str})
    assert list(runs.columns) == list(RUNS_COLUMNS)
    assert len(runs) == 6
    # Every speaker of the corpus is tested once per model.
    for _, rows in runs.groupby("model"):
        speakers = " ".join(rows["test_speakers"]).split()
        assert sorted(speakers) == sorted(f"synthetic/{g}{i:02d}" for g in "FM" for i in range(1, 7))
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board.columns) == list(LEADERBOARD_COLUMNS)
    assert len(board) == 2 and set(board["folds"]) == {3}
    for _, row in board.iterrows():
        mine = runs[(runs["model"] == row["model"]) & (runs["corpus"] == row["corpus"])]
        for name in ("uar", "accuracy", "macro_f1"):
            assert row[f"{name}_mean"] == pytest.approx(mine[f"test_{name}"].mean(), abs=1e-12)
            assert row[f"{name}_std"] == pytest.approx(mine[f"test_{name}"].std(ddof=1), abs=1e-12)
    text = (out / "leaderboard.md").read_text()
    cnn = board[board["model"] == "cnn"].iloc[0]
    assert f"| cnn | synthetic | 3 | {cnn['uar_mean']:.3f} ± {cnn['uar_std']:.3f} |" in text
    assert (out / "leaderboard.png").stat().st_size > 10_000


def test_a_finished_benchmark_rerun_only_rewrites_the_reports(finished):
    out, _, _ = finished
    before = pd.read_csv(out / "runs.csv")
    for name in ("leaderboard.md", "leaderboard.csv", "runs.csv"):
        (out / name).unlink()
    run_benchmark.main(bench_args(out, "--num_train_epochs", "3"), train_fn=refuse, load=refuse)
    pd.testing.assert_frame_equal(pd.read_csv(out / "runs.csv"), before)
    assert (out / "leaderboard.md").is_file()


def test_a_run_finished_under_other_folds_or_options_is_an_error(finished):
    out, _, _ = finished
    with pytest.raises(run_benchmark.UsageError, match="results.json was made with other folds or options"):
        run_benchmark.main(bench_args(out, "--num_train_epochs", "5"), train_fn=refuse, load=refuse)
    with pytest.raises(run_benchmark.UsageError, match="other folds or options"):
        run_benchmark.main(bench_args(out, "--split_seed", "1", "--num_train_epochs", "3"), train_fn=refuse)


def test_shards_by_fold_and_collect_equal_the_whole_run(finished, tmp_path):
    out, _, _ = finished
    shards = []
    for k in (1, 2, 3):
        shard = tmp_path / f"machine-{k}"
        trainer = FakeTrainer()
        run_benchmark.main(bench_args(shard, "--fold", str(k), "--num_train_epochs", "3"), train_fn=trainer,
                           load=fake_load)  # fmt: skip
        assert [Path(c[1]).name for c in trainer.calls] == [f"fold-{k}", f"fold-{k}"]
        assert (shard / f"runs-fold-{k}.csv").is_file()
        assert not (shard / "leaderboard.csv").exists()
        shards.append(shard)
    merged = run_benchmark.main(
        ["collect", "--output_dir", str(shards[0]), "--shards", *map(str, shards[1:])]
    )
    board = pd.read_csv(shards[0] / "leaderboard.csv")
    pd.testing.assert_frame_equal(board, pd.read_csv(out / "leaderboard.csv"))
    # run_dir points at the shard's folder, relative to the merged output folder.
    assert (shards[0] / merged["runs"]["run_dir"].iloc[-1] / "results.json").is_file()
    assert "incomplete" not in (shards[0] / "leaderboard.md").read_text()


def test_the_figure_s_confusion_matrices_come_from_the_runs_file_alone(finished, tmp_path):
    """Each run's test confusion matrix is in its row of runs.csv: a collect over a copy whose run folders
    are gone (shards from other machines, deleted runs) sums the same matrices, with no note."""
    out, _, _ = finished
    runs = read_runs(out / "runs.csv")
    expected, notes = summed_confusions(runs.assign(confusion_matrix=""), out)  # from the run folders
    assert not notes and len(expected) == 2
    folds = pd.read_csv(out / "folds.csv")
    tested = (folds["split"] == "test").sum()
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "runs")
    got, notes = summed_confusions(read_runs(copy / "runs.csv"), copy)
    assert not notes
    assert got.keys() == expected.keys()
    for key, (classes, matrix) in expected.items():
        assert got[key][0] == classes == ["anger", "happy", "neutral", "sadness"]
        np.testing.assert_array_equal(got[key][1], matrix)
        assert matrix.sum() == tested  # each clip once, over the folds
    run_benchmark.main(["collect", "--output_dir", str(copy)])
    assert "confusion matrix" not in (copy / "leaderboard.md").read_text()


def test_runs_without_their_confusion_matrix_are_counted_in_the_notes(finished, tmp_path, caplog):
    """A runs file from before the confusion_matrix column, collected where some run folders are gone:
    the reports are still written, and say which figure panels are partial or missing instead of leaving
    them out silently."""
    out, _, _ = finished
    assert "confusion matrix" not in (out / "leaderboard.md").read_text()  # every run has its matrix
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    runs = pd.read_csv(copy / "runs.csv", dtype=str, keep_default_na=False)
    runs.drop(columns="confusion_matrix").to_csv(copy / "runs.csv", index=False)
    (copy / "runs" / "cnn" / "synthetic" / "fold-2" / "confusion_matrix.json").unlink()
    shutil.rmtree(copy / "runs" / "s4")
    with caplog.at_level(logging.WARNING, logger="evaluation.reports"):
        run_benchmark.main(["collect", "--output_dir", str(copy)])
    text = (copy / "leaderboard.md").read_text()
    assert (
        "cnn on synthetic: 1 of 3 runs have no confusion matrix, neither in the runs file nor as "
        "confusion_matrix.json in their run folder (a runs file from before the column with the folder gone, "
        "or a training function that returned no matrix); its confusion matrix in the figure is summed over "
        "the other 2"
    ) in text
    assert "s4 on synthetic: 3 of 3 runs have no confusion matrix" in text and "is left out" in text
    assert sum("no confusion matrix" in r.getMessage() for r in caplog.records) == 2
    # The collected runs.csv took the matrices that were still in run folders, and only those.
    collected = pd.read_csv(copy / "runs.csv", keep_default_na=False).set_index(["model", "fold"])
    recorded = runs.set_index(["model", "fold"])["confusion_matrix"]
    for (model, fold), cell in collected["confusion_matrix"].items():
        assert cell == ("" if model == "s4" or fold == 2 else recorded[(model, str(fold))])


def test_shards_sharing_one_output_folder(tmp_path, capsys):
    out = tmp_path / "shared"
    for k in (3, 1):
        run_benchmark.main(bench_args(out, "--fold", str(k)), train_fn=FakeTrainer(), load=fake_load)
        # a shard says how its output is finished
        assert f"Fold {k} done. When every fold is: python run_benchmark.py collect --output_dir {out}" in (
            capsys.readouterr().out
        )
    run_benchmark.main(["collect", "--output_dir", str(out)])
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["folds"]) == {2}
    assert "2 of 3 (incomplete)" in (out / "leaderboard.md").read_text()


def test_collect_refuses_conflicting_results(finished, tmp_path):
    out, _, _ = finished
    other = tmp_path / "other"
    other.mkdir()
    runs = pd.read_csv(out / "runs.csv")
    runs.loc[0, "test_uar"] = 0.0
    runs.to_csv(other / "runs.csv", index=False)
    with pytest.raises(run_benchmark.UsageError, match="different results"):
        run_benchmark.main(["collect", "--output_dir", str(out), "--shards", str(other)])


def test_dry_run_writes_folds_only(tmp_path):
    out = tmp_path / "dry"
    run_benchmark.main(bench_args(out, "--dry_run"), train_fn=refuse, load=refuse)
    assert sorted(p.name for p in out.iterdir()) == ["folds.csv", "folds.json"]
    folds = pd.read_csv(out / "folds.csv")
    assert list(folds.columns) == ["corpus", "fold", "split", "file", "run"]
    assert sorted(folds["fold"].unique()) == [1, 2, 3]


def test_the_placeholder_training_function_refuses_before_any_data(finished, tmp_path):
    with pytest.raises(NotImplementedError, match="training runs land with the training library"):
        train_not_available("cnn", datasets.DatasetDict(), Path("."), [])
    # --train_fn of the placeholder: a clear error before any data is loaded, unless every run is finished.
    placeholder = ["--train_fn", "evaluation.runner:train_not_available"]
    with pytest.raises(run_benchmark.UsageError, match="6 runs to train, but --train_fn evaluation.runner"):
        run_benchmark.main(bench_args(tmp_path / "new", *placeholder), load=refuse)
    out, _, _ = finished
    run_benchmark.main(bench_args(out, "--num_train_epochs", "3", *placeholder), load=refuse)
    # The default (the real training function) also loads nothing for a finished benchmark.
    run_benchmark.main(bench_args(out, "--num_train_epochs", "3"), load=refuse)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "cnn", "lstm", "--corpora", "synthetic"], "--models: unknown model"),
        (["--models", "cnn", "cnn", "--corpora", "synthetic"], "names a model twice"),
        (["--corpora", "emodb", "--data_root", "/nonexistent"], "--data_root /nonexistent does not exist"),
        (["--corpora", "synthetic", "--protocol", "emobox"], "no EmoBox folds"),
        (["--corpora", "synthetic", "--fold", "9"], "--fold 9: the speaker-cv folds"),
        (["--corpora", "synthetic", "--folds", "1"], "--folds 1"),
        (["--corpora", "synthetic", "--emotions", "joy"], "--emotions: unknown emotion"),
        (["--corpora", "synthetic", "--protocol", "loco"], "at least 2 corpora"),
        (["--corpora", "synthetic", "--validation_fraction", "0"], "--validation_fraction 0.0: give a share"),
        (["--corpora", "synthetic", "--validation_fraction", "1"], "--validation_fraction 1.0: give a share"),
    ],
)
def test_bad_arguments_stop_before_anything_is_written(tmp_path, args, message):
    with pytest.raises(run_benchmark.UsageError, match=message):
        run_benchmark.main([*args, "--output_dir", str(tmp_path / "out")], train_fn=refuse, load=refuse)
    assert not (tmp_path / "out").exists()


def test_bad_arguments_on_the_command_line_are_one_line_rc_2(tmp_path):
    for args, message in [
        (
            ["--train_fn", "nowhere:train"],
            "run_benchmark.py: error: --train_fn 'nowhere:train': cannot import",
        ),
        (["--protocol", "random"], "run_benchmark.py: error: argument --protocol: invalid choice"),
    ]:
        result = subprocess.run(
            [
                sys.executable,
                "run_benchmark.py",
                "--corpora",
                "synthetic",
                *args,
                "--output_dir",
                str(tmp_path),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message)
        assert "Traceback" not in result.stderr
        assert not any(tmp_path.iterdir())


def test_a_kill_loses_only_the_run_in_progress(tmp_path):
    """SIGKILL a real benchmark process in its third run; the re-run trains only what is missing."""
    # SAVEE's 4 speakers (4 folds x 2 models), 3 files per speaker and emotion: quick to prepare.
    rows, seen = [], {}
    for row in fixtures.read_manifest():
        key = (row["corpus"], row["speaker"], row["emotion"])
        seen[key] = seen.get(key, 0) + 1
        if row["corpus"] == "savee" and seen[key] <= 3:
            rows.append(row)
    fixtures.build_download("savee", tmp_path / "data", manifest=rows, quirks=False)
    out = tmp_path / "out"
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
        "FAKE_TRAIN_LOG": str(log),
        "FAKE_TRAIN_SECONDS": "1.0",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    command = [
        sys.executable, "run_benchmark.py", "--models", "cnn", "s4", "--corpora", "savee",
        "--data_root", str(tmp_path / "data"), "--output_dir", str(out),
        "--dataset_cache_dir", str(tmp_path / "cache"), "--preprocessing_num_workers", "1",
        "--train_fn", "test_evaluation_runner:slow_fake_train",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while len(list(out.glob("runs/*/*/*/results.json"))) < 2:
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "the benchmark never finished two runs"
        time.sleep(0.1)
    time.sleep(0.5)  # into the third run
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = sorted(p.parent for p in out.glob("runs/*/*/*/results.json"))
    assert 2 <= len(finished) < 8
    # runs.csv is never behind the finished runs (rewritten after each one).
    assert len(pd.read_csv(out / "runs.csv")) == len(finished)
    first = log.read_text().splitlines()
    assert len(first) == len(finished) + 1  # the finished ones and the one killed

    env["FAKE_TRAIN_SECONDS"] = "0"
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
    calls = log.read_text().splitlines()
    again = calls[len(first) :]
    # Finished runs never again; the killed run redone; 8 runs in all.
    assert not set(again) & {" ".join([p.parts[-3], "/".join(p.parts[-2:])]) for p in finished}
    assert first[-1] in again
    assert len(set(calls)) == 8 and len(calls) == 9
    assert len(pd.read_csv(out / "runs.csv")) == 8
    assert (out / "leaderboard.md").is_file()
