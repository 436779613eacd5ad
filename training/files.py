"""Files a run writes, written whole or not at all.

Every JSON or text file that a later run reads back (`run_setup.json` and `run_args.json` for the resume
checks, the benchmark's `results.json`, reports) goes through `write_text_atomic`: a temporary file of this
process, then a rename. A kill, or shards writing the same file at once, never leave a half-written one that
the next run cannot parse.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` to `path` through a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only there when the write or the rename failed


def write_json_atomic(
    path: str | os.PathLike, data: Any, *, indent: int = 2, sort_keys: bool = False
) -> None:
    write_text_atomic(json.dumps(data, indent=indent, sort_keys=sort_keys), path)
