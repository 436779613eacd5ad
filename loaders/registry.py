"""The corpus API: which corpora there are, where each one's folder is, which are present, and their scans.

Every caller looks corpora up here: `CORPORA` (name -> builder class), `validate_corpus_names`,
`find_corpus_dir(data_root, name)` (the Kaggle slug's folder name is handled inside), `locate_corpora` /
`corpora_present` (which corpora a data root holds), `scan_corpus` and `make_builder`. A corpus's grammar
and folder names live in its builder module; `loaders.discovery` only walks folders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .builder import EmotionCorpusBuilder
from .cremad import CremaD
from .discovery import CorpusNotFoundError, ScanResult
from .emodb import EmoDB
from .ravdess import Ravdess
from .savee import Savee
from .shemo import Shemo
from .synthetic import Synthetic
from .tess import Tess

# The six downloadable corpora, in the order tables list them.
CORPUS_NAMES: tuple[str, ...] = ("cremad", "emodb", "ravdess", "savee", "shemo", "tess")

CORPORA: dict[str, type[EmotionCorpusBuilder]] = {
    "cremad": CremaD,
    "emodb": EmoDB,
    "ravdess": Ravdess,
    "savee": Savee,
    "shemo": Shemo,
    "tess": Tess,
    # Generated on the fly: no download, no folder (but `write_synthetic_corpus` can write one).
    "synthetic": Synthetic,
}


def get_builder_class(name: str) -> type[EmotionCorpusBuilder]:
    """The builder class of corpus `name`; a clear error listing the valid names otherwise."""
    try:
        return CORPORA[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; valid corpora: {', '.join(CORPORA)}") from None


def validate_corpus_names(names: Sequence[str]) -> list[str]:
    """`names` as a list, or a ValueError naming the unknown ones (or asking for one) and the valid ones."""
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        raise ValueError(f"unknown corpus name(s) {unknown}; valid corpora: {', '.join(CORPORA)}")
    if not names:
        raise ValueError(f"choose at least one corpus from: {', '.join(CORPORA)}")
    return list(names)


def find_corpus_dir(data_root: str | os.PathLike, name: str) -> Path:
    """The folder of corpus `name` under `data_root`: `<data_root>/<name>`, or the original project's
    `<data_root>/<last part of the Kaggle slug>`; a non-empty one wins over an empty one.

    `CorpusNotFoundError` (saying how to download it) when there is neither; ValueError for an unknown name.
    """
    root = Path(data_root)
    candidates = [root / folder for folder in get_builder_class(name).folder_names()]
    existing = [folder for folder in candidates if folder.is_dir()]
    for folder in existing:
        if _non_empty(folder):
            return folder
    if existing:
        return existing[0]
    raise CorpusNotFoundError(
        f"corpus {name!r}: no folder {candidates[0]}"
        + "".join(f" (nor {folder})" for folder in candidates[1:])
        + f". Download it with `python -m loaders download {root} --corpora {name}`."
    )


def locate_corpora(
    data_root: str | os.PathLike, names: Sequence[str] = CORPUS_NAMES
) -> tuple[dict[str, Path], dict[str, str]]:
    """(found, missing): the corpora of `names` with a non-empty folder under `data_root` (name -> folder),
    and why each other one is missing (name -> message). An empty folder is a corpus not downloaded."""
    found, missing = {}, {}
    for name in validate_corpus_names(list(names)):
        try:
            folder = find_corpus_dir(data_root, name)
        except CorpusNotFoundError as err:
            missing[name] = str(err)
            continue
        if _non_empty(folder):
            found[name] = folder
        else:
            missing[name] = (
                f"corpus {name!r}: the folder {folder} is empty. Download it with "
                f"`python -m loaders download {data_root} --corpora {name}`."
            )
    return found, missing


def corpora_present(data_root: str | os.PathLike, names: Sequence[str] = CORPUS_NAMES) -> list[str]:
    """The corpora of `names` (default: the six downloadable ones) with a non-empty folder under
    `data_root`, in the order of `names`."""
    return list(locate_corpora(data_root, names)[0])


def scan_corpus(name: str, corpus_dir: str | os.PathLike, lenient: bool = False) -> ScanResult:
    """Find the files of corpus `name` in its folder `corpus_dir` (never decodes audio).

    Raises `CorpusNotFoundError` if the folder is missing, `GitLfsPointerError` on a git-lfs stub (always),
    `UnknownCodeError` on a name that fits the grammar with an unknown code (with `lenient`: skipped and
    reported instead).
    """
    return get_builder_class(name).scan_corpus(corpus_dir, lenient=lenient)


def resolve_corpus_dir(name: str, data_dir: str | os.PathLike) -> str:
    """The corpus folder for `name` given either the corpus folder itself or a data root holding it.

    A folder bearing one of the corpus folder's names (`<name>`, or the Kaggle slug's last part) is taken
    as it without looking inside, so a folder found by `find_corpus_dir` is not looked up a second time.
    Any other folder is searched for the corpus, and taken as the corpus folder itself when that fails."""
    folder = Path(data_dir)
    if folder.name in get_builder_class(name).folder_names() and folder.is_dir():
        return str(folder)
    try:
        return str(find_corpus_dir(folder, name))
    except CorpusNotFoundError:
        if folder.is_dir():
            return str(folder)
        raise


def make_builder(name: str, data_dir: str | os.PathLike | None = None, **config) -> EmotionCorpusBuilder:
    """A builder for corpus `name`; `data_dir` is its folder or a data root (ignored for generated corpora).
    `config` goes to the builder: sampling_rate, lenient, cache_dir, ..."""
    builder_class = get_builder_class(name)
    if not builder_class.NEEDS_DATA_DIR:
        return builder_class(**config)
    if data_dir is None:
        raise ValueError(
            f"corpus {name!r} needs a data folder; download it with "
            f"`python -m loaders download DATA_ROOT --corpora {name}`"
        )
    return builder_class(data_dir=resolve_corpus_dir(name, data_dir), **config)


def _non_empty(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)
