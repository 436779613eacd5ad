"""Which files a prediction reads: files, folders (walked recursively) and globs, in a stable order."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from .audio_io import AUDIO_EXTENSIONS

# Files a folder walk passes over without comment: OS and editor metadata, never anyone's audio.
_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def _is_metadata(name: str) -> bool:
    return name.lower() in _METADATA_NAMES or name.startswith("._")


def collect_inputs(paths: Iterable[str]) -> list[tuple[str, str | None]]:
    """Expand files, folders (recursive) and globs into ``(path, skip_reason)`` in a stable order.

    A folder's files without an audio extension come back with a skip reason, so they are reported
    rather than silently ignored; OS metadata files (``.DS_Store``, ``._*``) are dropped. A path that
    does not exist and matches no glob comes back as itself, to be reported as failed.
    """
    entries: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, reason: str | None) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            entries.append((path, reason))

    def walk(folder: str) -> None:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if _is_metadata(name):
                    continue
                path = os.path.join(root, name)
                if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                    add(path, None)
                else:
                    add(path, f"not an audio file (extension {os.path.splitext(name)[1] or 'none'!r})")

    for raw in paths:
        if os.path.isdir(raw):
            walk(raw)
        elif os.path.exists(raw):
            add(raw, None)
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                add(raw, None)  # fails later with "no such file"
            for match in matches:
                walk(match) if os.path.isdir(match) else add(match, None)
        else:
            add(raw, None)
    return entries
