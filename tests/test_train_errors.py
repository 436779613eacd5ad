"""run_train.py: bad options, argument files and checkpoints are one-line errors (rc 2) given before any
data is prepared or anything written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_run import run_train

ROOT = Path(__file__).resolve().parents[1]


UsageError = run_train.UsageError


@pytest.fixture
def garbage_checkpoint(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "cnn", "conv_cha')  # cut off mid-write
    return folder


def common(tmp_path) -> list[str]:
    # The synthetic corpus is generated on first use: an empty cache folder shows nothing was prepared.
    return [
        "--corpora",
        "synthetic",
        "--dataset_cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(tmp_path / "out"),
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--learning_rate", "-1"], r"^--learning_rate -1.0: must be >= 0 \(e.g. 1e-3\); give a value"),
        (["--weight_decay", "-0.1"], r"^--weight_decay -0.1: must be >= 0"),
        (
            ["--max_duration_seconds", "-1"],
            r"^--max_duration_seconds -1.0: must be >= 0 \(0 keeps whole clips\)",
        ),
        (["--max_train_samples", "0"], r"^--max_train_samples 0: must be >= 1"),
        (["--early_stopping_start", "1.5"], r"^--early_stopping_start 1.5: must be between 0 and 1"),
        (["--per_device_train_batch_size", "0"], r"^--per_device_train_batch_size 0: must be >= 1"),
        (
            ["--merge", "anger-happy"],
            r"^--merge: 'anger-happy' is not of the form source:target \(e.g. calm:neutral\)",
        ),
        (["--merge", "calm:joy"], r"^--merge: 'calm' -> 'joy', but 'joy' is not among the emotions"),
        (["--emotions", "anger", "joy"], r"^--emotions: unknown emotion\(s\) \['joy'\]"),
        (["--streaming", "--model", "cnn"], r"^--streaming with a cnn model: only the S4 runs as a stream"),
        (
            ["--streaming", "--config_overrides", '{"bidirectional": true}'],
            r'^--streaming with --config_overrides \{"bidirectional": true\}: a streaming S4 must be causal',
        ),
        (
            ["--streaming", "--config_overrides", '{"mel_normalization": "utterance+dataset"}'],
            r'^--streaming with --config_overrides \{"mel_normalization": "utterance\+dataset"\}: '
            "normalising over the whole clip cannot be streamed",
        ),
        (
            ["--streaming", "--config_overrides", '{"functionals_head": true}'],
            r'^--streaming with --config_overrides \{"functionals_head": true\}: the head summarises',
        ),
        (
            ["--streaming", "--config_overrides", '{"energy_peaks_head": true}'],
            r'^--streaming with --config_overrides \{"energy_peaks_head": true\}: the head summarises',
        ),
        (
            ["--resume_from_checkpoint", "/nonexistent/checkpoint-3"],
            r"no such folder; give a checkpoint-N folder",
        ),
    ],
)
def test_bad_options_fail_before_anything_is_prepared(tmp_path, extra, message):
    with pytest.raises(UsageError, match=message):
        run_train.main([*common(tmp_path), *extra])
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_garbage_config_json_names_the_file(tmp_path, garbage_checkpoint):
    config_file = garbage_checkpoint / "config.json"
    with pytest.raises(
        UsageError,
        match=rf"--model_name_or_path {garbage_checkpoint}: {config_file} is not a valid config.json "
        r"\(JSONDecodeError: .*\); restore it",
    ):
        run_train.main([*common(tmp_path), "--model_name_or_path", str(garbage_checkpoint)])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "learning_rate: fast\n",
            r"learning_rate: 'fast' is not a number; write a number \(e.g. learning_rate: 0.001\)",
        ),
        (
            "learning_rte: 0.1\n",
            r"unknown option\(s\) learning_rte \(did you mean learning_rate\?\); use the option names",
        ),
        ("num_train_epochs: 2.5x\n", "num_train_epochs: '2.5x' is not a number"),
        ("model: lstm\n", r"model: 'lstm' is not one of cnn, s4, wav2vec2"),
        ("logging_steps: [1\n", r"not valid YAML \(.* at line \d+, column \d+\); fix the file"),
        ("- a\n- b\n", "holds a list, not option: value pairs"),
        ("learning_rate: -1e-3\n", r"^--learning_rate -0.001: must be >= 0"),
    ],
)
def test_bad_argument_files_are_one_line_errors(tmp_path, text, message):
    args_file = tmp_path / "args.yaml"
    settings = (
        f"corpora: [synthetic]\ndataset_cache_dir: {tmp_path / 'cache'}\noutput_dir: {tmp_path / 'out'}\n"
    )
    args_file.write_text(text if text.startswith("- ") else settings + text)
    with pytest.raises(UsageError, match=message):
        run_train.main([str(args_file)])
    assert not (tmp_path / "out").exists()


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as the string "1e-3": a TypeError at optimiser creation without the fix.
    args_file = tmp_path / "args.yaml"
    args_file.write_text(
        "output_dir: out\nlearning_rate: 1e-3\nweight_decay: 5e-2\nnum_train_epochs: 1e1\n"
        "max_train_samples: 1e2\nspeed_perturbation: [9e-1, 1, 1.1]\nmax_duration_seconds: 2\n"
    )
    _, data_args, training_args = run_train.parse_args([str(args_file)])
    assert training_args.learning_rate == 1e-3 and isinstance(training_args.learning_rate, float)
    assert training_args.weight_decay == 0.05 and training_args.num_train_epochs == 10.0
    assert data_args.max_train_samples == 100 and isinstance(data_args.max_train_samples, int)
    assert data_args.speed_perturbation == [0.9, 1.0, 1.1] and data_args.max_duration_seconds == 2.0


def test_the_command_prints_one_line_and_exits_2(tmp_path):
    # One real process for the path every UsageError takes (the cases above run in-process to stay fast).
    result = subprocess.run(
        [sys.executable, "run_train.py", "--merge", "anger-happy", "--output_dir", str(tmp_path / "out")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "run_train.py: error: --merge: 'anger-happy' is not of the form source:target (e.g. calm:neutral)"
    ]
    assert not (tmp_path / "out").exists()
