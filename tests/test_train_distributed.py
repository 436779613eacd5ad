"""Two CPU processes train one model with DDP over gloo through `accelerate launch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loaders.fixtures import build_download

ROOT = Path(__file__).resolve().parents[1]
TINY_CNN = (
    '{"conv_channels": [8, 16], "attention_size": 8, "classifier_hidden_size": 8, "n_mfcc": 13, "n_mels": 24}'
)


@pytest.mark.slow
def test_two_cpu_processes_train_one_model(tmp_path):
    data_root = tmp_path / "data"
    build_download("emodb", data_root, per_emotion=8, seconds=0.5, quirks=False)
    out = tmp_path / "run"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate),
        "launch",
        "--config_file",
        str(ROOT / "accelerate_config_cpu.yaml"),
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "29533",
        str(ROOT / "run_train.py"),
        "--corpora",
        "emodb",
        "--data_root",
        str(data_root),
        "--dataset_cache_dir",
        str(tmp_path / "cache"),
        "--output_dir",
        str(out),
        "--config_overrides",
        TINY_CNN,
        "--split_strategy",
        "random",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "4",
        "--disable_tqdm",
        "true",
        "--preprocessing_num_workers",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # each rank trained, in one process group of two
    assert "rank 0 of 2: trained" in run.stdout and "rank 1 of 2: trained" in run.stdout
    train = json.loads((out / "train_results.json").read_text())
    assert train["world_size"] == 2
    # the data was shared out: each optimisation step took 2 x 4 clips
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == -(-train["train_samples"] // 8)
    # only rank 0 wrote the outputs, once
    assert run.stdout.count("Model, results, confusion_matrix.png") == 1
    files = sorted(p.name for p in out.iterdir())
    assert files.count("model.safetensors") == 1 and "README.md" in files and "test_results.json" in files
    assert not [name for name in files if "rank" in name or name.endswith(".1")]
