"""benchmarks/bench_streaming.py: it builds the S4 that `run_train.py --streaming` trains, streams a clip and
prints its cost and how far the streamed logits are from the offline ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_streaming.py"


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_a_small_run_streams_to_the_offline_logits(pooling):
    sizes = ["--seconds", "0.5", "--d_model", "8", "--n_layers", "1", "--d_state", "4", "--repeats", "1"]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *sizes, "--pooling", pooling],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"streaming: [\d.]+ ms per chunk", result.stdout)
    difference = re.search(r"offline logits: max \|difference\| (\S+)", result.stdout)
    assert difference is not None and float(difference.group(1)) < 1e-4
