"""Download the corpora: Kaggle datasets by slug, or CREMA-D from its git-lfs repository.

Each corpus is written to ``<data_root>/.<name>.partial`` first, counted with `scan_corpus` (it must hold
exactly the builder's ``EXPECTED_FILES`` audio files, and no git-lfs pointer stubs), and only then renamed
to ``<data_root>/<name>``. A failed transfer or check removes the partial folder, so nothing half-written
ever looks like a corpus. A corpus already complete is skipped unless ``force``.

Kaggle credentials are looked up in this order (the first found wins):

1. the environment: ``KAGGLE_API_TOKEN`` (new-style access token), or ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``;
   then an access token saved in ``~/.kaggle/access_token``;
2. ``$KAGGLE_CONFIG_DIR/kaggle.json``, ``~/.kaggle/kaggle.json``, ``~/.config/kaggle/kaggle.json``;
3. ``kaggle.json`` in the current directory (as the original project allowed);
4. a prompt for username and key, only when stdin is a terminal.

The credentials are handed to the Kaggle client through its environment variables for the duration of the
login only; no file is copied or written.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .discovery import CorpusNotFoundError, GitLfsPointerError
from .registry import CORPORA, CORPUS_NAMES, find_corpus_dir, scan_corpus, validate_corpus_names

logger = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("kaggle", "git")
# Corpora with a git-lfs repository, and the folder of it that holds the audio we keep.
GIT_SOURCES: dict[str, tuple[str, str]] = {
    "cremad": ("https://github.com/CheyneyComputerScience/CREMA-D.git", "AudioWAV"),
}

_MISSING_CREDENTIALS = (
    "no Kaggle credentials found. Provide them in one of three ways:\n"
    "  1. put kaggle.json (from kaggle.com > Settings > API > Create New Token) in ~/.kaggle/ (chmod 600);\n"
    "  2. put kaggle.json in the current directory;\n"
    "  3. set the environment variables KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN).\n"
    "Running in a terminal, you would also be asked for them."
)


@dataclass(frozen=True)
class KaggleCredentials:
    """What logs in to Kaggle: a username + key, or an access token; `source` says where they came from."""

    username: str = ""
    key: str = ""
    token: str = ""
    source: str = ""

    def environment(self) -> dict[str, str]:
        """The Kaggle client's environment variables for these credentials."""
        if self.token:
            return {"KAGGLE_API_TOKEN": self.token}
        return {"KAGGLE_USERNAME": self.username, "KAGGLE_KEY": self.key}


class DownloadError(RuntimeError):
    """A corpus could not be downloaded or failed its check; nothing was left behind under its name."""


def download_corpora(
    data_root: str | os.PathLike,
    corpora: Sequence[str] | None = None,
    *,
    source: str = "kaggle",
    force: bool = False,
) -> dict[str, dict]:
    """Download `corpora` (default: every corpus with a download) into ``<data_root>/<name>``.

    `source` is ``kaggle`` (all corpora) or ``git`` (CREMA-D only, from its git-lfs repository; needs
    ``git`` and ``git-lfs`` installed). Corpora already complete are skipped unless `force`; a corpus folder
    that exists but is incomplete is an error (pass `force` to replace it). The synthetic corpus is
    generated on the fly and needs no download.

    Returns ``{name: {"status": "downloaded" | "present" | "generated", "path": str | None, "files": int}}``.
    Raises DownloadError (transfer or check failed; that corpus's folder is untouched) or ValueError. It stops
    at the first failure: corpora finished before it stay, and a new call skips them.
    """
    root = Path(data_root)
    names = _choose_corpora(corpora, source)
    root.mkdir(parents=True, exist_ok=True)
    credentials: KaggleCredentials | None = None
    report: dict[str, dict] = {}
    for name in names:
        builder = CORPORA[name]
        if not builder.KAGGLE_SLUG:
            logger.info("%s is generated on the fly: no download needed", name)
            report[name] = {"status": "generated", "path": None, "files": 0}
            continue
        folder = _existing_folder(root, name)
        present = _existing_count(name, folder) if folder else None
        if present == builder.EXPECTED_FILES and not force:
            logger.info("%s: complete in %s (%d files), skipped", name, folder, present)
            report[name] = {"status": "present", "path": str(folder), "files": present}
            continue
        if present is not None and not force:
            raise DownloadError(
                f"{folder} exists but holds {present} of the {builder.EXPECTED_FILES} {name} files; "
                "move it away or pass --force to replace it with a fresh download"
            )
        if source == "kaggle" and credentials is None:
            credentials = find_kaggle_credentials()
        count = _download_one(name, root, source, credentials)
        report[name] = {"status": "downloaded", "path": str(root / name), "files": count}
    return report


def _choose_corpora(corpora: Sequence[str] | None, source: str) -> list[str]:
    if source not in SOURCES:
        raise ValueError(f"source {source!r} is unknown; choose one of {list(SOURCES)}")
    if corpora is None:
        if source == "git":
            return list(GIT_SOURCES)
        return list(CORPUS_NAMES)
    validate_corpus_names(list(corpora))
    if source == "git":
        no_git = [name for name in corpora if name not in GIT_SOURCES]
        if no_git:
            raise ValueError(
                f"--source git serves only {list(GIT_SOURCES)}, not {no_git}; use --source kaggle for those"
            )
    return list(dict.fromkeys(corpora))


def _existing_folder(root: Path, name: str) -> Path | None:
    """`<root>/<name>`, or the original project's folder named after the Kaggle slug; None if neither."""
    try:
        return find_corpus_dir(root, name)
    except CorpusNotFoundError:
        return None


def _existing_count(name: str, folder: Path) -> int:
    """Number of corpus files in `folder` (0 when it cannot be read as the corpus, e.g. it holds stubs)."""
    try:
        return len(scan_corpus(name, folder).files)
    except Exception as error:  # whatever makes it unreadable makes it incomplete
        logger.warning("%s: %s cannot be read as the corpus (%s)", name, folder, error)
        return 0


def _download_one(name: str, root: Path, source: str, credentials: KaggleCredentials | None) -> int:
    """Fetch into ``.<name>.partial``, check, then rename to `<name>`; returns the file count."""
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # left over from an interrupted run
    partial.mkdir()
    try:
        if source == "git":
            url, keep = GIT_SOURCES[name]
            _git_download(url, keep, partial)
        else:
            _kaggle_download(CORPORA[name].KAGGLE_SLUG, partial, credentials)
        count = check_download(name, partial)
        _replace(partial, root / name)
    except BaseException as error:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(error, DownloadError) or not isinstance(error, Exception):
            raise
        raise DownloadError(f"{name}: download from {source} failed: {error}; nothing was kept") from error
    logger.info("%s: %d files in %s", name, count, root / name)
    return count


def check_download(name: str, folder: Path) -> int:
    """Raise DownloadError unless `folder` holds exactly the expected number of `name` files."""
    expected = CORPORA[name].EXPECTED_FILES
    try:
        found = len(scan_corpus(name, folder).files)
    except GitLfsPointerError as error:
        raise DownloadError(
            f"{name}: the download holds git-lfs pointer stubs, not audio ({error}); install git-lfs "
            "(https://git-lfs.com, then `git lfs install`) or use --source kaggle"
        ) from error
    except Exception as error:
        raise DownloadError(f"{name}: the download cannot be read as the corpus: {error}") from error
    if found != expected:
        raise DownloadError(
            f"{name}: the download holds {found} corpus files, expected {expected}; "
            "the source may have changed or the transfer broke off: nothing was kept, try again"
        )
    return found


def _replace(partial: Path, target: Path) -> None:
    """Rename `partial` to `target`; an old `target` (forced re-download) is removed only after."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# ---- Kaggle ----------------------------------------------------------------------------------------


def find_kaggle_credentials(*, cwd: Path | None = None, interactive: bool | None = None) -> KaggleCredentials:
    """Kaggle credentials, looked up in the order given in the module docstring.

    `interactive` (default: whether stdin is a terminal) allows the final prompt. Raises DownloadError
    naming the three ways to provide credentials when none is found.
    """
    env = os.environ
    if env.get("KAGGLE_API_TOKEN"):
        return KaggleCredentials(token=env["KAGGLE_API_TOKEN"], source="environment (KAGGLE_API_TOKEN)")
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return KaggleCredentials(env["KAGGLE_USERNAME"], env["KAGGLE_KEY"], source="environment")
    for path in (Path.home() / ".kaggle" / "access_token", Path.home() / ".kaggle" / "access_token.txt"):
        if path.is_file() and path.read_text().strip():
            return KaggleCredentials(token=path.read_text().strip(), source=str(path))
    for path in _kaggle_json_candidates(cwd or Path.cwd()):
        if path.is_file():
            return _read_kaggle_json(path)
    if interactive is None:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        print("Kaggle credentials (kaggle.com > Settings > API > Create New Token):", file=sys.stderr)
        username = input("Kaggle username: ").strip()
        key = getpass.getpass("Kaggle key: ").strip()
        if username and key:
            return KaggleCredentials(username, key, source="prompt")
    raise DownloadError(_MISSING_CREDENTIALS)


def _kaggle_json_candidates(cwd: Path) -> list[Path]:
    home = Path.home()
    candidates = [home / ".kaggle" / "kaggle.json", home / ".config" / "kaggle" / "kaggle.json"]
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        candidates.insert(0, Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json")
    return [*candidates, cwd / "kaggle.json"]


def _read_kaggle_json(path: Path) -> KaggleCredentials:
    try:
        data = json.loads(path.read_text())
        username, key = str(data["username"]).strip(), str(data["key"]).strip()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DownloadError(
            f'{path} is not a valid kaggle.json ({error!r}); it must read {{"username": "...", "key": "..."}}'
        ) from error
    if not username or not key:
        raise DownloadError(f"{path}: username or key is empty; download a fresh kaggle.json from kaggle.com")
    if os.name != "nt" and path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
    return KaggleCredentials(username, key, source=str(path))


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _kaggle_download(slug: str, target: Path, credentials: KaggleCredentials | None) -> None:
    """Download and unzip the Kaggle dataset `slug` into `target` (the network call)."""
    if credentials is None:
        raise DownloadError(_MISSING_CREDENTIALS)
    # Importing `kaggle` logs in at import time, so it is imported only here, with the credentials set.
    with _environment(credentials.environment()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi
        except ImportError as error:  # e.g. kaggle 2.2.4 imports `six` without declaring it
            raise DownloadError(
                f"the kaggle package cannot be imported ({error}); install what it names "
                "(`pip install six` for kaggle 2.2.4) or reinstall it: `pip install -U kaggle`"
            ) from error

        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit as error:  # the client exits instead of raising when it cannot log in
            raise DownloadError(f"Kaggle login failed (credentials from {credentials.source})") from error
    logger.info("downloading kaggle dataset %s into %s", slug, target)
    api.dataset_download_files(slug, path=str(target), unzip=True, quiet=False)


# ---- git-lfs -----------------------------------------------------------------------------------------


def _git_download(url: str, keep: str, target: Path) -> None:
    """Clone `url` without LFS content, pull only `keep`'s LFS files, and move `keep` into `target`."""
    _require_git_lfs()
    clone = target / ".clone"
    _run_git(["clone", "--depth", "1", url, str(clone)], env={"GIT_LFS_SKIP_SMUDGE": "1"})
    _run_git(["lfs", "pull", "--include", f"{keep}/**"], cwd=clone)
    if not (clone / keep).is_dir():
        raise DownloadError(f"the repository {url} has no folder {keep!r}")
    (clone / keep).rename(target / keep)
    shutil.rmtree(clone)


def _require_git_lfs() -> None:
    if shutil.which("git") is None:
        raise DownloadError("git is not installed; install git and git-lfs, or use --source kaggle")
    probe = subprocess.run(["git", "lfs", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise DownloadError(
            "git-lfs is not installed (`git lfs version` failed); without it a clone holds 130-byte pointer "
            "stubs instead of audio. Install it (https://git-lfs.com, e.g. `apt install git-lfs`) or use "
            "--source kaggle"
        )


def _run_git(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    """Run one git command (the network call of the git source); raise DownloadError on failure."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise DownloadError(f"`git {' '.join(args)}` failed: {result.stderr.strip()[-2000:]}")


# ---- command line ----------------------------------------------------------------------------------


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``download DATA_ROOT [--corpora ...] [--source kaggle|git] [--force]``."""
    parser = subparsers.add_parser(
        "download",
        help="download the corpora (Kaggle, or CREMA-D from git-lfs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data_root", type=Path, help="folder that gets one subfolder per corpus")
    parser.add_argument("--corpora", nargs="+", metavar="NAME", help=f"default: all of {list(CORPUS_NAMES)}")
    parser.add_argument(
        "--source", choices=SOURCES, default="kaggle", help="git: CREMA-D from its git-lfs repository"
    )
    parser.add_argument("--force", action="store_true", help="download again even if a corpus is complete")
    parser.set_defaults(func=_main)
    return parser


def _main(args: argparse.Namespace) -> int:
    report = download_corpora(args.data_root, args.corpora, source=args.source, force=args.force)
    for name, entry in report.items():
        where = entry["path"] or "(generated on the fly, no download needed)"
        print(f"{name:10s} {entry['status']:10s} {entry['files']:6d} files  {where}")
    return 0
