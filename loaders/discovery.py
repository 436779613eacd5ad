"""Walk a corpus folder and find its audio files: one entry per recording, whatever the download holds.

Real downloads carry more than the corpus: OS metadata (`__MACOSX/`, `._x.wav`, `.DS_Store`), readmes and
licences, empty folders, extra folder levels added by the download tool (`<slug>/`, `versions/1/`) and whole
duplicate trees (RAVDESS, TESS, SAVEE). `scan_folder` keeps each recording once, skips the rest with a reason,
and never decodes audio. It knows no corpus: the file-name grammar comes in as `parse_file` (each corpus's
lives in its builder), and `loaders.registry` is where a corpus name becomes a folder and a scan.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

AUDIO_SUFFIXES = (".wav",)
OS_METADATA_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
MACOS_FOLDER = "__MACOSX"
# Folder levels that download tools put above the corpus layout (kagglehub: `<slug>/versions/1/`).
WRAPPER_FOLDERS = frozenset({"versions", "archive", "download", "data"})

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024


class CorpusNotFoundError(FileNotFoundError):
    """The corpus folder does not exist (the corpus was not downloaded)."""


class GitLfsPointerError(RuntimeError):
    """A file is a git-lfs pointer (a ~130-byte text stub), not audio: the clone was made without git-lfs."""


class SymlinkLoopError(ValueError):
    """A symbolic link in a corpus folder leads back into itself: the walk would never end."""


class UnknownCodeError(ValueError):
    """A file name fits a corpus grammar but holds a code the corpus does not define."""

    def __init__(self, file: str, message: str):
        super().__init__(f"{file}: {message}")
        self.file = file


@dataclass(frozen=True)
class FileInfo:
    """What a corpus file name (and folder) says about the recording: the result of `parse_file`.

    `speaker` is the code as the corpus writes it (the builder prefixes the corpus name). `utterance`
    identifies the recording inside the corpus, whatever copy of the download it sits in; two files with the
    same utterance are copies of one recording.
    """

    emotion: str
    speaker: str
    gender: str
    utterance: str
    text: str = ""
    intensity: str = ""


@dataclass(frozen=True)
class CorpusFile:
    """One recording: `path` is where it lies on disk, `file` its identity relative to the corpus layout."""

    path: str
    file: str
    info: FileInfo


@dataclass
class ScanResult:
    """What a walk of a corpus folder found.

    `files`: each recording once, sorted by `file`. `skipped`: (path relative to the corpus folder, reason)
    for everything that is not a corpus file. `duplicates`: how many extra copies of recordings were seen.
    `fingerprint`: changes whenever a kept file is added, removed, resized or touched (cache key).
    """

    corpus: str
    corpus_dir: Path
    files: list[CorpusFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    fingerprint: str = ""


ParseFile = Callable[[str], "FileInfo | None"]


def lfs_pointer_message(path: str | os.PathLike) -> str:
    return (
        f"{path} is a git-lfs pointer (a small text stub), not audio: the repository was cloned without "
        "git-lfs. In the CREMA-D clone run `git lfs install && git lfs pull`, or download the corpus from "
        "Kaggle instead: `python -m loaders download DATA_ROOT --corpora cremad`."
    )


def is_lfs_pointer(path: str | os.PathLike, size: int | None = None) -> bool:
    """True if `path` is a git-lfs pointer file; only small files are opened."""
    size = os.path.getsize(path) if size is None else size
    if size > LFS_POINTER_MAX_BYTES:
        return False
    with open(path, "rb") as f:
        return f.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def scan_folder(
    name: str,
    corpus_dir: str | os.PathLike,
    parse_file: ParseFile,
    wrappers: frozenset[str] = WRAPPER_FOLDERS,
    lenient: bool = False,
) -> ScanResult:
    """Walk `corpus_dir`, classify every file, parse the corpus files with `parse_file`, de-duplicate.

    Raises `CorpusNotFoundError` if the folder is missing, `GitLfsPointerError` on a git-lfs stub (always),
    `UnknownCodeError` on a name that fits the grammar with an unknown code (with `lenient`: skipped and
    reported instead). `name` is the corpus's, for messages and `ScanResult.corpus`.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusNotFoundError(
            f"corpus {name!r}: {corpus_dir} is not a folder. Download it with "
            f"`python -m loaders download {corpus_dir.parent} --corpora {name}`."
        )
    result = ScanResult(corpus=name, corpus_dir=corpus_dir)
    copies: dict[str, list[CorpusFile]] = {}
    stamps = []
    for entry, rel in _walk(corpus_dir, result.skipped):
        reason = _metadata_reason(rel)
        if reason:
            result.skipped.append((rel, reason))
            continue
        stat = entry.stat()
        if stat.st_size <= LFS_POINTER_MAX_BYTES and is_lfs_pointer(entry.path, stat.st_size):
            raise GitLfsPointerError(lfs_pointer_message(entry.path))
        layout_rel = strip_wrappers(rel, wrappers)
        try:
            info = parse_file(layout_rel)
        except UnknownCodeError as err:
            if not lenient:
                raise
            result.skipped.append((rel, f"unknown code: {err}"))
            continue
        if info is None:
            result.skipped.append((rel, f"name does not fit the {name} file-name grammar"))
            continue
        copies.setdefault(info.utterance, []).append(CorpusFile(entry.path, layout_rel, info))
        stamps.append(f"{rel}\t{stat.st_size}\t{stat.st_mtime_ns}")
    for group in copies.values():
        # The shallowest copy is the canonical one (RAVDESS `Actor_01/` over `audio_speech_actors_01-24/`).
        group.sort(key=lambda f: (f.file.count("/"), f.file))
        result.files.append(group[0])
        result.duplicates += len(group) - 1
    result.files.sort(key=lambda f: f.file)
    result.skipped.sort()
    result.fingerprint = hashlib.sha256("\n".join(sorted(stamps)).encode()).hexdigest()[:16]
    return result


def strip_wrappers(rel: str, wrappers: frozenset[str]) -> str:
    """Drop the folder levels a download tool put above the corpus layout (`<slug>/`, `versions/1/`)."""
    parts = PurePosixPath(rel).parts
    start = 0
    while start < len(parts) - 1 and (parts[start].lower() in wrappers or parts[start].isdigit()):
        start += 1
    return "/".join(parts[start:])


def _metadata_reason(rel: str) -> str:
    """Why a file is not a corpus file ('' if it may be one)."""
    parts = rel.split("/")
    filename = parts[-1]
    if MACOS_FOLDER in parts[:-1]:
        return "macOS metadata (__MACOSX/)"
    if filename.startswith("._"):
        return "macOS AppleDouble metadata (._*)"
    if filename in OS_METADATA_FILES:
        return f"OS metadata ({filename})"
    if not filename.lower().endswith(AUDIO_SUFFIXES):
        return "not audio (readme, licence or other file)"
    return ""


def _walk(root: Path, skipped: list[tuple[str, str]]):
    """Yield (DirEntry, posix path relative to root) of every file, in sorted order; record empty folders.

    Symbolic links are followed (downloads are sometimes linked in), but one leading back to a folder above
    it, or to itself, is a `SymlinkLoopError` naming the link, not an endless walk ending in
    `OSError: Too many levels of symbolic links`."""
    root_stat = root.stat()
    stack = [(str(root), "", frozenset({(root_stat.st_dev, root_stat.st_ino)}))]
    while stack:
        folder, rel_folder, ancestors = stack.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        if not entries and rel_folder:
            skipped.append((rel_folder + "/", "empty folder"))
        subfolders = []
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError as err:
                if err.errno != errno.ELOOP:
                    raise
                raise SymlinkLoopError(_loop_message(root, entry.path)) from None
            if is_dir:
                stat = entry.stat(follow_symlinks=True)
                key = (stat.st_dev, stat.st_ino)
                if key in ancestors:
                    raise SymlinkLoopError(_loop_message(root, entry.path))
                subfolders.append((entry.path, rel, ancestors | {key}))
            elif is_file:
                yield entry, rel
        stack.extend(reversed(subfolders))


def _loop_message(root: Path, link: str) -> str:
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return (
        f"{link}: symbolic link loop (it points to {target}, which leads back to itself) in the corpus "
        f"folder {root}; remove the link or replace it with the folder it should hold"
    )


def file_stem(relpath: str) -> str:
    """The file name without folders and extension: `AudioWAV/1001_DFA_ANG_XX.wav` -> `1001_DFA_ANG_XX`."""
    return PurePosixPath(relpath).stem


def lookup_code(table: dict[str, str], code: str, relpath: str, what: str) -> str:
    """`table[code]`, or an `UnknownCodeError` naming the file, the field and the valid codes."""
    try:
        return table[code]
    except KeyError:
        raise UnknownCodeError(relpath, f"unknown {what} {code!r} (valid: {', '.join(table)})") from None
