"""`CORPORA`: corpus name -> builder class, and the one place that turns a name into a builder."""

from __future__ import annotations

import importlib
import os

from .builder import EmotionCorpusBuilder
from .cremad import CremaD
from .discovery import find_corpus_dir
from .emodb import EmoDB
from .ravdess import Ravdess
from .savee import Savee
from .shemo import Shemo
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
}


def _register_synthetic() -> None:
    """Add the generated demo corpus when its module is present (it needs no download)."""
    try:
        module = importlib.import_module(".synthetic", __package__)
    except ModuleNotFoundError as err:
        if err.name != f"{__package__}.synthetic":
            raise
        return
    if hasattr(module, "Synthetic"):
        CORPORA["synthetic"] = module.Synthetic


_register_synthetic()


def get_builder_class(name: str) -> type[EmotionCorpusBuilder]:
    """The builder class of corpus `name`; a clear error listing the valid names otherwise."""
    try:
        return CORPORA[name]
    except KeyError:
        raise ValueError(f"unknown corpus {name!r}; valid corpora: {', '.join(CORPORA)}") from None


def validate_corpus_names(names: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [n for n in names if n not in CORPORA]
    if unknown:
        raise ValueError(f"unknown corpus name(s) {unknown}; valid corpora: {', '.join(CORPORA)}")
    if not names:
        raise ValueError(f"choose at least one corpus from: {', '.join(CORPORA)}")
    return list(names)


def resolve_corpus_dir(name: str, data_dir: str | os.PathLike) -> str:
    """The corpus folder for `name` given either the corpus folder itself or a data root holding
    `<name>/` (or the original project's `<Kaggle slug>/`)."""
    builder_class = get_builder_class(name)
    try:
        return str(find_corpus_dir(data_dir, name, builder_class.KAGGLE_SLUG))
    except FileNotFoundError:
        if os.path.isdir(data_dir):
            return str(data_dir)
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
