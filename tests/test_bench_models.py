"""benchmarks/bench_models.py: every model name builds what it names, an unknown one is refused before any
work, and a run prints one row per model with its time and page faults per clip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bench_models
from modeling import CNNForAudioClassification, S4ForAudioClassification

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


@pytest.mark.parametrize("name", [*bench_models.CNN_VARIANTS, *bench_models.S4_VARIANTS])
def test_every_variant_is_its_configuration(tmp_path, name):
    model = bench_models.build(name, tmp_path)
    kind = CNNForAudioClassification if name.startswith("cnn") else S4ForAudioClassification
    assert isinstance(model, kind)
    overrides = {**bench_models.CNN_VARIANTS, **bench_models.S4_VARIANTS}[name]
    assert {key: getattr(model.config, key) for key in overrides} == overrides


def test_the_ensemble_is_the_cnn_and_the_s4_defaults(tmp_path):
    from modeling.ensemble import EnsembleForAudioClassification

    ensemble = bench_models.build("ensemble", tmp_path)
    assert isinstance(ensemble, EnsembleForAudioClassification)
    cnn, s4 = ensemble.members
    assert cnn.config.to_diff_dict() == bench_models.build("cnn", tmp_path).config.to_diff_dict()
    assert s4.config.to_diff_dict() == bench_models.build("s4", tmp_path).config.to_diff_dict()


def test_the_earlier_cnn_defaults_have_neither_pitch_nor_head(tmp_path):
    earlier, now = (bench_models.build(name, tmp_path) for name in ("cnn-earlier-defaults", "cnn"))
    assert earlier.functionals_head is None and earlier.features.pitch is None
    assert now.functionals_head is not None and now.features.pitch is not None


def test_an_unknown_model_is_refused_before_any_work():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "cnn-typo"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2 and "invalid choice: 'cnn-typo'" in run.stderr and not run.stdout


def test_a_run_prints_a_row_per_model():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--models", "cnn", "cnn-earlier-defaults", "--repeats", "1"]
        + ["--train-steps", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    header = next(line for line in run.stdout.splitlines() if line.startswith("model"))
    assert "ms / 3 s clip" in header and "faults / clip" in header
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("cnn")]
    assert [row[0] for row in rows] == ["cnn", "cnn-earlier-defaults"]
    for row in rows:  # name, params, ms, best ms, faults per clip, ...
        median_ms, best_ms, faults = (float(value) for value in row[2:5])
        assert 0 < best_ms <= median_ms and faults >= 0
