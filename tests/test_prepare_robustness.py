"""`python -m loaders prepare` under abuse: bad input is one line (rc 2) before any work, a damaged cache is
rebuilt, a full disk is one line, and its worker processes die with it (SIGTERM, SIGKILL)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from loaders import builder as builder_module
from loaders import fixtures
from loaders.__main__ import main
from loaders.loading import load_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    fixtures.build_download("emodb", root, per_emotion=2, seconds=0.1)
    return root


def prepare(data_root: Path, cache: Path, *extra: str) -> int:
    return main(["prepare", str(data_root), "--cache_dir", str(cache), *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") or ": error: " in err, err
    return err


def arrow_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*.arrow") if ".incomplete" not in str(p))


# ---- one-line errors, before any work ----


def test_broken_audio_in_strict_mode_is_one_line_before_any_work(data_root, tmp_path, capsys, monkeypatch):
    (data_root / "emodb" / "wav" / "03a01Wa.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(300))
    decoded = []
    monkeypatch.setattr(builder_module, "decode_audio", lambda path: decoded.append(path))
    assert prepare(data_root, tmp_path / "cache", "--num_proc", "1") == 2
    err = one_line_error(capsys)
    assert "03a01Wa.wav: cannot read audio header" in err and "--lenient" in err
    assert decoded == [] and arrow_files(tmp_path / "cache") == []


def test_sampling_rate_and_num_proc_must_be_positive(data_root, tmp_path, capsys):
    for option in (["--sampling_rate", "0"], ["--sampling_rate", "-8000"], ["--num_proc", "0"]):
        with pytest.raises(SystemExit) as info:
            prepare(data_root, tmp_path / "cache", *option)
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"argument {option[0]}" in err and "not a positive integer" in err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("kind", ["ancestor", "self"])
def test_symlink_loop_in_a_corpus_folder_is_one_line(data_root, tmp_path, capsys, kind):
    wav = data_root / "emodb" / "wav"
    link = wav / "loop"
    link.symlink_to(".." if kind == "ancestor" else "loop")
    assert prepare(data_root, tmp_path / "cache", "--num_proc", "1") == 2
    err = one_line_error(capsys)
    assert f"{link}: symbolic link loop" in err and "remove the link" in err
    assert not (tmp_path / "cache").exists() or arrow_files(tmp_path / "cache") == []


def test_full_disk_is_one_line(data_root, tmp_path, capsys, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_examples_on_file", full)
    assert prepare(data_root, tmp_path / "cache", "--num_proc", "1") == 2
    err = one_line_error(capsys)
    assert "error: emodb: no space left on device writing" in err and "--cache_dir" in err
    assert arrow_files(tmp_path / "cache") == []  # no partial cache that would later look complete


def test_full_disk_reaches_python_callers_as_a_value_error(data_root, tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_examples_on_file", full)
    with pytest.raises(ValueError, match="no space left on device"):  # run_train.py's one-line errors
        load_corpus("emodb", data_root, cache_dir=tmp_path / "cache", num_proc=2)


# ---- damaged caches ----


@pytest.mark.parametrize(
    ("num_proc", "damage"), [(1, "truncate"), (1, "delete"), (2, "delete"), (2, "truncate")]
)
def test_damaged_cache_is_rebuilt_and_said(data_root, tmp_path, capsys, num_proc, damage):
    cache = tmp_path / "cache"
    fixtures.build_download("emodb", data_root, per_emotion=8, seconds=0.1)  # enough rows for 2 shards
    assert prepare(data_root, cache, "--num_proc", str(num_proc)) == 0
    first = capsys.readouterr().out
    shards = arrow_files(cache)
    assert len(shards) == num_proc
    victim = shards[-1]
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:
        victim.unlink()
    assert prepare(data_root, cache, "--num_proc", str(num_proc)) == 0
    out = capsys.readouterr().out
    count = first.split(" files at")[0]
    assert out.startswith(count + " files at")
    assert (
        f"damaged cache rebuilt: {victim.name} is " + ("truncated" if damage == "truncate" else "missing")
        in out
    )
    ds = load_corpus("emodb", data_root, cache_dir=cache, num_proc=num_proc)
    assert all(np.isfinite(row["audio"]["array"]).all() for row in ds)  # every row readable again
    assert prepare(data_root, cache, "--num_proc", str(num_proc)) == 0
    assert "damaged cache" not in capsys.readouterr().out  # intact now: reused as is


# ---- worker processes die with their parent ----


def _children(pid: int) -> dict[int, str]:
    """pid -> state of every live process whose parent is `pid` (from /proc)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found[int(entry)] = fields[0]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def slow_root(tmp_path_factory) -> Path:
    """RAVDESS (48 kHz: every file resampled) large enough to keep two workers busy for a few seconds."""
    root = tmp_path_factory.mktemp("slow")
    fixtures.build_download("ravdess", root, per_emotion=60, seconds=2.0, quirks=False)
    return root


# Loaded first by every Python started with this folder on PYTHONPATH: each decode takes 0.1 s more, so a
# signal sent once the workers are up always lands while the corpus is being prepared, however fast the
# machine (on an idle one the fixture is prepared before the signal arrives).
SLOW_DECODING = """
import time

import loaders.audio

_decode_audio = loaders.audio.decode_audio


def _slow_decode_audio(*args, **kwargs):
    time.sleep(0.1)
    return _decode_audio(*args, **kwargs)


loaders.audio.decode_audio = _slow_decode_audio
"""


@pytest.fixture(scope="module")
def slow_decoding(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("slow_decoding")
    (folder / "sitecustomize.py").write_text(SLOW_DECODING)
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_end_with_the_prepare_process(slow_root, slow_decoding, tmp_path, sig):
    env = {**os.environ, "PYTHONPATH": f"{slow_decoding}{os.pathsep}{REPO_ROOT}"}
    command = [sys.executable, "-m", "loaders", "prepare", str(slow_root), "--num_proc", "2"]
    process = subprocess.Popen(
        [*command, "--cache_dir", str(tmp_path / "cache")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        # Two pool workers and datasets' Manager process, all forked by prepare.
        while len(seen) < 3 and process.poll() is None and time.monotonic() < deadline:
            seen |= set(_children(process.pid))
            time.sleep(0.05)
        assert len(seen) >= 3 and process.poll() is None, f"workers never seen: {process.communicate()}"
        time.sleep(0.5)  # well inside the preparation
        seen |= set(_children(process.pid))
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid in seen if _alive(pid)]
        assert survivors == [], f"{len(survivors)} worker processes outlived prepare"
        if sig == signal.SIGTERM:
            assert process.returncode == 128 + signal.SIGTERM
            assert "stopped by SIGTERM" in err and "Traceback" not in err
        assert not list((tmp_path / "cache").rglob("dataset_info.json"))  # nothing half-done looks complete
    finally:
        for pid in seen | {process.pid}:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
