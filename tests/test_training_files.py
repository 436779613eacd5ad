"""training.files: a file is written whole or not at all, and a failed write leaves nothing behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from training import files
from training.files import write_json_atomic, write_text_atomic


def test_a_write_that_fails_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run_args.json"
    write_json_atomic(target, {"seed": 1})

    def disk_full(self: Path, text: str, encoding: str | None = None) -> int:
        with open(self, "w", encoding=encoding) as f:
            f.write(text[: len(text) // 2])  # half of it reached the disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_json_atomic(target, {"seed": 2, "corpora": ["emodb"]})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"seed": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_args.json"]


def test_the_rename_is_the_only_way_in(tmp_path, monkeypatch):
    """Until os.replace, the target is untouched: a kill before it loses only the new text."""
    target = tmp_path / "notes.md"
    target.write_text("old")

    def killed(src: str | os.PathLike, dst: str | os.PathLike) -> None:
        assert Path(src).read_text() == "new, complete" and target.read_text() == "old"
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic("new, complete", target)
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["notes.md"]
    write_text_atomic("new, complete", target)
    assert target.read_text() == "new, complete"


def test_json_keeps_the_layout_asked_for(tmp_path):
    write_json_atomic(tmp_path / "all_results.json", {"b": 1, "a": 2}, indent=4, sort_keys=True)
    assert (tmp_path / "all_results.json").read_text() == json.dumps({"a": 2, "b": 1}, indent=4)
