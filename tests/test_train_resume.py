"""run_train.py runs that survive a kill: incomplete checkpoints skipped, checkpoints of another run refused,
one writer per output folder. The kill test uses real processes and signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train_run import run_train

from loaders.fixtures import build_download

ROOT = Path(__file__).resolve().parents[1]
TINY_CNN = (
    '{"conv_channels": [8, 16], "attention_size": 8, "classifier_hidden_size": 8, "n_mfcc": 13, "n_mels": 24}'
)

# Runs run_train.py as `python run_train.py ARGS`, except that the process stops itself with a real SIGSTOP
# in the middle of writing the checkpoint of step STOP_AT (weights written, optimizer and trainer state
# not yet): the moment a kill leaves a truncated checkpoint-N behind.
STOPPING_LAUNCHER = """
import os, runpy, signal, sys
from transformers import Trainer

stop_at = int(os.environ["STOP_AT_STEP"])
save = Trainer._save_optimizer_and_scheduler

def save_then_stop(self, output_dir):
    if self.state.global_step == stop_at:
        os.kill(os.getpid(), signal.SIGSTOP)
    return save(self, output_dir)

Trainer._save_optimizer_and_scheduler = save_then_stop
sys.argv = ["run_train.py", *sys.argv[1:]]
runpy.run_path(os.path.join(os.getcwd(), "run_train.py"), run_name="__main__")
"""


UsageError = run_train.UsageError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    build_download("emodb", root, per_emotion=10, seconds=0.6, quirks=False)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def args_for(data_root, cache_dir, out, *extra) -> list[str]:
    # 16 training clips in batches of 8: 2 steps and one checkpoint per epoch.
    return [
        "--corpora",
        "emodb",
        "--split_strategy",
        "random",
        "--data_root",
        str(data_root),
        "--dataset_cache_dir",
        str(cache_dir),
        "--output_dir",
        str(out),
        "--config_overrides",
        TINY_CNN,
        "--per_device_train_batch_size",
        "8",
        "--max_train_samples",
        "16",
        "--max_eval_samples",
        "8",
        "--eval_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--disable_tqdm",
        "true",
        "--preprocessing_num_workers",
        "1",
        *extra,
    ]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def wait_until_stopped(process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the run ended (rc {process.returncode}) before stopping:\n{process.stdout.read()}"
            )
        with open(f"/proc/{process.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the run did not reach its checkpoint in time")


def finished_files(out: Path) -> None:
    """Make a finished run look like one killed after its last checkpoint."""
    for name in ("all_results.json", "train_results.json", "test_results.json", "model.safetensors"):
        (out / name).unlink(missing_ok=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process state from /proc")
def test_killed_mid_checkpoint_the_same_command_resumes_from_the_last_complete_one(
    data_root, cache_dir, tmp_path
):
    out = tmp_path / "run"
    args = args_for(data_root, cache_dir, out, "--num_train_epochs", "3")
    launcher = tmp_path / "launch.py"
    launcher.write_text(STOPPING_LAUNCHER)
    first = subprocess.Popen(
        [sys.executable, str(launcher), *args],
        cwd=ROOT,
        env={**subprocess_env(), "STOP_AT_STEP": "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_stopped(first)
        assert (out / "checkpoint-4" / "model.safetensors").exists()
        assert not (out / "checkpoint-4" / "trainer_state.json").exists()

        # While it lives, a second run into the same folder is refused, and touches nothing.
        lock = json.loads((out / "_run_train.lock").read_text())
        assert lock["pid"] == first.pid and lock["host"] == socket.gethostname()
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(
            UsageError, match=rf"another run_train.py \(process {first.pid} on .*choose another"
        ):
            run_train.main(args)
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
        first.stdout.close()

    # The same command again: takes over the dead run's lock, skips the cut-off checkpoint-4 and resumes
    # from checkpoint-2 (without the fix: "Can't find a valid checkpoint at .../checkpoint-4").
    again = subprocess.run(
        [sys.executable, "run_train.py", *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = again.stdout + again.stderr
    assert again.returncode == 0, log
    assert f"Taking over the lock of {out}" in log and f"process {first.pid}" in log
    assert f"Skipping {out / 'checkpoint-4'}: incomplete checkpoint (no trainer_state.json" in log
    assert f"Resuming from {out / 'checkpoint-2'}" in log  # at the default log level
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and state["log_history"][-1]["epoch"] == 3.0
    assert not (out / "_run_train.lock").exists()


def test_a_truncated_checkpoint_is_skipped(data_root, cache_dir, tmp_path, caplog):
    out = tmp_path / "run"
    run_train.main(args_for(data_root, cache_dir, out, "--num_train_epochs", "2"))
    finished_files(out)
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    # without the fix: SafetensorError from the Trainer
    run_train.main(args_for(data_root, cache_dir, out, "--num_train_epochs", "3"))
    assert any(
        "Skipping" in r.getMessage() and "checkpoint-4" in r.getMessage() and "truncated" in r.getMessage()
        for r in caplog.records
    )
    assert any(r.getMessage().startswith(f"Resuming from {out / 'checkpoint-2'}") for r in caplog.records)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6


@pytest.fixture(scope="module")
def interrupted_run(data_root, cache_dir, tmp_path_factory) -> Path:
    """A one-epoch run (checkpoint-2) that looks killed before its end."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    run_train.main(args_for(data_root, cache_dir, out, "--num_train_epochs", "1"))
    finished_files(out)
    return out


@pytest.mark.parametrize(
    "changed, message",
    [
        (
            ["--emotions", "anger", "happy", "neutral", "fear"],
            "--emotions: it was trained for anger happy neutral sadness, not anger happy neutral fear",
        ),
        (
            ["--emotions", "anger", "happy", "neutral"],
            "--emotions: it was trained for anger happy neutral sadness, not anger happy neutral)",
        ),
        (["--split_strategy", "speaker"], "--split_strategy: it was random, not speaker"),
        (["--data_seed", "7"], "--data_seed/--seed: it was 42, not 7"),
        (
            ["--config_overrides", TINY_CNN.replace('"n_mels": 24', '"n_mels": 32')],
            "it has n_mels=24, not 32",
        ),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_with_advice(
    data_root, cache_dir, interrupted_run, tmp_path, changed, message
):
    out = tmp_path / "run"
    shutil.copytree(interrupted_run, out)
    state_before = (out / "checkpoint-2" / "trainer_state.json").read_text()
    with pytest.raises(UsageError, match="belongs to another run") as error:
        run_train.main(args_for(data_root, cache_dir, out, "--num_train_epochs", "2", *changed))
    assert message in str(error.value) and "--overwrite_output_dir to start afresh" in str(error.value)
    assert (out / "checkpoint-2" / "trainer_state.json").read_text() == state_before
    assert not (out / "_run_train.lock").exists()


def test_an_explicit_incomplete_checkpoint_is_refused(data_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    run_train.main(args_for(data_root, cache_dir, out, "--num_train_epochs", "2"))
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "log_hi')
    with pytest.raises(
        UsageError,
        match=r"checkpoint-4: incomplete checkpoint \(trainer_state.json is truncated\); "
        r"resume from .*checkpoint-2 instead",
    ):
        run_train.main(
            args_for(
                data_root,
                cache_dir,
                tmp_path / "other",
                "--resume_from_checkpoint",
                str(out / "checkpoint-4"),
            )
        )


def test_a_stale_lock_on_another_host_is_refused_and_a_dead_pid_here_taken_over(tmp_path, caplog):
    from training.run_config import LOCK_FILE, OutputDirLock

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "yesterday"}))
    with pytest.raises(UsageError, match="process 1 on elsewhere, started yesterday"):
        OutputDirLock(out).acquire()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    import logging

    with OutputDirLock(out, logging.getLogger("test")):
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"process {dead.pid}" in caplog.text and "no longer running" in caplog.text
    assert not (out / LOCK_FILE).exists() and sorted(os.listdir(out)) == []


def test_only_the_main_process_takes_the_lock(data_root, cache_dir, tmp_path, monkeypatch):
    # Another rank finds the main process's lock in place and must not refuse because of it.
    from training.run_config import LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    monkeypatch.setattr(run_train.SERTrainingArguments, "process_index", property(lambda self: 1))
    with pytest.raises(UsageError, match="--emotions: unknown emotion"):  # got past the lock
        run_train.main(args_for(data_root, cache_dir, out, "--emotions", "joy"))


def test_the_default_output_folder_names_model_corpora_split_and_emotions():
    from training.run import default_output_dir
    from training.run_config import run_setup

    def folder(emotions, split="speaker", test=None, merge=None, streaming=False):
        setup = run_setup("cnn", emotions, ["emodb", "savee"], split, test, merge or {}, 42, {})
        return default_output_dir(setup, streaming)

    four = folder(["anger", "happy", "neutral", "sadness"])
    assert four == os.path.join("outputs", "cnn-emodb+savee-speaker-anger+happy+neutral+sadness")
    assert folder(["anger", "happy", "neutral", "fear"]) != four
    assert folder(["anger", "happy", "neutral", "sadness"], split="random") != four
    assert folder(["anger", "neutral"], merge={"calm": "neutral"}).endswith("-merge_calm_as_neutral")
    assert "-corpus-test_emodb-" in folder(["anger"], split="corpus", test=["emodb"])
