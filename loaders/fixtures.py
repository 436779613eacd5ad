"""Fake corpus downloads laid out exactly like the real ones, built from the file manifest.

`build_download("ravdess", root)` writes `<root>/ravdess/` holding every file name of the real Kaggle
download (both RAVDESS trees, both TESS trees, ...) as valid WAV files at each file's native sampling rate.
By default each file holds a few milliseconds of audio, enough for discovery and header tests; with
`full_length=True` each file has its real length (from the manifest's `num_frames`, or drawn
deterministically from the corpus's typical range where unknown), for benchmarks. Duplicate trees are hard
links where the file system allows, so a full-size copy takes the space of one.

`quirks=True` adds what real downloads also hold: readme and licence files, `.DS_Store`, `._x.wav`
AppleDouble files, a `__MACOSX/` tree, an empty folder, and for SAVEE the nested `AudioData/AudioData/` copy.
"""

from __future__ import annotations

import csv
import os
import shutil
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .builder import encode_wav

MANIFEST_PATH = Path(__file__).resolve().parent / "data" / "manifest.csv"
# The shared copy next to the corpora README, for checkouts that lack the packaged one.
SHARED_MANIFEST_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "corpora" / "manifest.csv"

TINY_SECONDS = 0.005

# Typical clip lengths (seconds) of the corpora whose manifest rows lack `num_frames` (corpora README).
TYPICAL_SECONDS = {"cremad": (1.3, 3.8), "shemo": (0.4, 7.2)}
SHEMO_LONG_SECONDS = (15.0, 33.0)  # ShEMO's rare long outliers (1% of the files)

# The copies of the corpus tree a real download holds besides the manifest's first copy.
DUPLICATE_TREES = {
    "ravdess": [("", "audio_speech_actors_01-24/")],
    "tess": [("", "tess toronto emotional speech set data/")],
}
SAVEE_NESTED_COPY = ("AudioData/", "AudioData/AudioData/")
SILENT_FILES = frozenset({"AudioWAV/1076_MTI_SAD_XX.wav"})  # CREMA-D: holds no signal
# RAVDESS files carry an `FLLR` padding chunk before `data`.
FILLER_CHUNK = {"ravdess": b"FLLR"}


def read_manifest(path: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """Rows of the manifest (corpus, path, emotion, speaker, gender, sample_rate, num_frames, source)."""
    if path is None:
        path = MANIFEST_PATH if MANIFEST_PATH.exists() else SHARED_MANIFEST_PATH
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def expected_counts(manifest: Iterable[dict[str, str]] | None = None) -> dict[str, dict[str, int]]:
    """corpus -> emotion -> number of files, as the manifest lists them."""
    counts: dict[str, Counter] = {}
    for row in read_manifest() if manifest is None else manifest:
        counts.setdefault(row["corpus"], Counter())[row["emotion"]] += 1
    return {corpus: dict(c) for corpus, c in counts.items()}


def build_download(
    corpus: str,
    root: str | os.PathLike,
    *,
    manifest: str | os.PathLike | list[dict[str, str]] | None = None,
    full_length: bool = False,
    quirks: bool = True,
    extra_levels: str = "",
    savee_flat: bool = False,
    per_emotion: int | None = None,
    seconds: float | None = None,
) -> Path:
    """Write a fake download of `corpus` to `<root>/<corpus>/` and return that folder.

    Args:
        manifest: a manifest path or its rows (default: the packaged manifest.csv).
        full_length: real clip lengths instead of `TINY_SECONDS` (or `seconds`).
        quirks: add readmes, OS metadata, an empty folder, SAVEE's nested duplicate tree.
        extra_levels: folders a download tool puts above the layout, e.g. "versions/1".
        savee_flat: SAVEE as the flat public copy `ALL/DC_a01.wav` instead of `AudioData/DC/a01.wav`.
        per_emotion: keep only the first N files (by path) of each emotion: small fixtures.
        seconds: length of every file (overrides `full_length`).
    """
    rows = manifest if isinstance(manifest, list) else read_manifest(manifest)
    rows = sorted((r for r in rows if r["corpus"] == corpus), key=lambda r: r["path"])
    if not rows:
        raise ValueError(f"build_download: the manifest lists no files of corpus {corpus!r}")
    if per_emotion is not None:
        rows = _first_per_emotion(rows, per_emotion)
    corpus_dir = Path(root) / corpus
    layout_dir = corpus_dir / extra_levels if extra_levels else corpus_dir
    layout_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row in rows:
        relpath = _savee_flat_path(row["path"]) if corpus == "savee" and savee_flat else row["path"]
        target = layout_dir / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_wav_for(row, full_length, seconds, FILLER_CHUNK.get(corpus)))
        written.append(relpath)
    copies = list(DUPLICATE_TREES.get(corpus, []))
    if quirks and corpus == "savee" and not savee_flat:
        copies.append(SAVEE_NESTED_COPY)
    for old_prefix, new_prefix in copies:
        for relpath in written:
            _link_or_copy(layout_dir / relpath, layout_dir / (new_prefix + relpath[len(old_prefix) :]))
    if quirks:
        add_download_clutter(layout_dir, written)
    return corpus_dir


def add_download_clutter(layout_dir: Path, relpaths: list[str]) -> list[str]:
    """Add what real downloads hold besides the corpus; returns the paths added (relative to layout_dir)."""
    first = relpaths[0]
    folder = os.path.dirname(first)
    name = os.path.basename(first)
    clutter = {
        "README.md": b"# Corpus\nDownloaded from Kaggle.\n",
        "LICENSE.txt": b"Licence text.\n",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        f"{folder}/.DS_Store": b"\x00\x00\x00\x01Bud1",
        f"{folder}/._{name}": b"\x00\x05\x16\x07AppleDouble",
        f"__MACOSX/{folder}/._{name}": b"\x00\x05\x16\x07AppleDouble",
        f"__MACOSX/{folder}/.DS_Store": b"\x00\x00\x00\x01Bud1",
    }
    for relpath, content in clutter.items():
        target = layout_dir / relpath.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (layout_dir / "unused").mkdir(exist_ok=True)
    return [*clutter, "unused/"]


def num_frames_of(row: dict[str, str], full_length: bool, seconds: float | None = None) -> int:
    """Length in samples of a fake file: given, real (manifest), typical (drawn from the path), or tiny."""
    rate = int(row["sample_rate"])
    if seconds is not None:
        return max(1, round(seconds * rate))
    if not full_length:
        return max(1, round(TINY_SECONDS * rate))
    if row["num_frames"]:
        return int(row["num_frames"])
    u = _unit(row["path"])
    low, high = TYPICAL_SECONDS[row["corpus"]]
    if row["corpus"] == "shemo" and u < 0.01:
        low, high, u = *SHEMO_LONG_SECONDS, u / 0.01
    return round((low + (high - low) * u) * rate)


_SIGNALS: dict[int, np.ndarray] = {}


def _wav_for(
    row: dict[str, str], full_length: bool, seconds: float | None, extra_chunk: bytes | None
) -> bytes:
    rate = int(row["sample_rate"])
    frames = num_frames_of(row, full_length, seconds)
    if row["path"] in SILENT_FILES:
        return encode_wav(np.zeros(frames, dtype=np.float32), rate, extra_chunk)
    return encode_wav(_signal(rate, frames, _unit(row["path"])), rate, extra_chunk)


def _signal(rate: int, frames: int, phase: float) -> np.ndarray:
    """Low-level noise plus a 220 Hz tone, cut from one cached buffer per rate (fast for 15k files)."""
    if rate not in _SIGNALS or len(_SIGNALS[rate]) < 2 * frames:
        length = max(2 * frames, 40 * rate)
        t = np.arange(length) / rate
        rng = np.random.default_rng(rate)
        tone = 0.2 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * rng.standard_normal(length)
        _SIGNALS[rate] = tone.astype(np.float32)
    start = int(phase * (len(_SIGNALS[rate]) - frames))
    return _SIGNALS[rate][start : start + frames]


def _first_per_emotion(rows: list[dict[str, str]], n: int) -> list[dict[str, str]]:
    kept, seen = [], Counter()
    for row in rows:
        seen[row["emotion"]] += 1
        if seen[row["emotion"]] <= n:
            kept.append(row)
    return kept


def _unit(key: str) -> float:
    """A number in [0, 1) fixed by `key`: deterministic lengths and offsets."""
    return zlib.crc32(key.encode()) / 2**32


def _savee_flat_path(path: str) -> str:
    """`AudioData/DC/a01.wav` -> `ALL/DC_a01.wav` (the flat public copy of SAVEE)."""
    _, speaker, name = path.split("/")
    return f"ALL/{speaker}_{name}"


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return  # case-insensitive file systems merge the two TESS trees
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
