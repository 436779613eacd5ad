"""Load corpora as `datasets` objects: one corpus whole, or several with a choice of emotions and a split."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import datasets
import numpy as np

from .builder import EmotionCorpusBuilder
from .discovery import find_corpus_dir
from .emotions import resolve_emotions
from .registry import get_builder_class, make_builder, validate_corpus_names
from .schema import TARGET_SAMPLING_RATE

logger = logging.getLogger(__name__)

# Below this many files per worker, starting processes costs more than it saves.
MIN_FILES_PER_PROCESS = 200


def prepare_corpus(
    name: str,
    data_dir: str | os.PathLike | None,
    *,
    sampling_rate: int | None = TARGET_SAMPLING_RATE,
    lenient: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> EmotionCorpusBuilder:
    """Build (or find in the cache) the prepared data of corpus `name` and return its builder."""
    builder = make_builder(
        name,
        data_dir,
        sampling_rate=sampling_rate,
        lenient=lenient,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    builder.download_and_prepare(num_proc=_num_proc(builder, num_proc))
    return builder


def load_corpus(
    name: str,
    data_dir: str | os.PathLike | None,
    *,
    sampling_rate: int | None = TARGET_SAMPLING_RATE,
    lenient: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """The whole corpus `name` as one Dataset in the common schema, `label` over all ten emotions.

    `data_dir` is the corpus folder, or a data root holding `<name>/` (or the Kaggle slug's folder).
    The first call decodes and resamples every file (on `num_proc` processes, default: all cores); later
    calls read the Arrow cache. With `lenient`, files with unknown codes or undecodable audio are skipped
    and reported in the log instead of raising an error.
    """
    builder = prepare_corpus(
        name, data_dir, sampling_rate=sampling_rate, lenient=lenient, cache_dir=cache_dir, num_proc=num_proc
    )
    dataset = builder.as_dataset(split="train")
    _report_skipped(builder, dataset)
    return dataset


def load_corpora(
    names: Sequence[str] | str,
    data_root: str | os.PathLike | None,
    *,
    emotions: Sequence[str] | None = None,
    merge: Mapping[str, str] | None = None,
    sampling_rate: int | None = TARGET_SAMPLING_RATE,
    split: str | None = "random",
    test_corpora: Sequence[str] | None = None,
    seed: int = 42,
    lenient: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> datasets.DatasetDict | datasets.Dataset:
    """Several corpora in one dataset, restricted to the chosen emotions, optionally split.

    Files whose emotion is neither chosen nor merged (see `loaders.emotions.resolve_emotions`) are left
    out; `label` becomes a ClassLabel over the chosen emotions (merges applied) while `emotion` keeps each
    file's original emotion. With `split` (a strategy of `loaders.splits`: "random", "speaker", "corpus")
    the result is a DatasetDict(train, validation, test); with `split=None` one Dataset.
    """
    names = validate_corpus_names([names] if isinstance(names, str) else list(names))
    class_names, mapping = resolve_emotions(emotions, merge)
    if any(get_builder_class(n).NEEDS_DATA_DIR for n in names):
        _check_data_root(data_root)
    loaded = {
        name: load_corpus(
            name,
            _corpus_dir(name, data_root),
            sampling_rate=sampling_rate,
            lenient=lenient,
            cache_dir=cache_dir,
            num_proc=num_proc,
        )
        for name in names
    }
    _check_emotions_present(loaded, class_names, mapping)
    parts = [select_emotions(ds, class_names, mapping) for ds in loaded.values()]
    combined = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if split is None:
        return combined
    from .splits import split_dataset

    return split_dataset(combined, split, seed=seed, test_corpora=test_corpora)


def select_emotions(
    dataset: datasets.Dataset, class_names: Sequence[str], mapping: Mapping[str, str]
) -> datasets.Dataset:
    """Keep the rows whose emotion `mapping` covers; relabel them over `class_names`.

    The new label column is added before selecting rows, so neither step rewrites the audio: the result
    is the cached Arrow data plus a small label column and an index mapping.
    """
    class_ids = {source: class_names.index(target) for source, target in mapping.items()}
    labels = np.array([class_ids.get(e, -1) for e in dataset["emotion"]], dtype=np.int64)
    label_column = datasets.Dataset.from_dict(
        {"label": labels}, features=datasets.Features({"label": datasets.ClassLabel(names=list(class_names))})
    )
    # Side by side in schema order (audio, label, metadata): no column is copied.
    relabelled = datasets.concatenate_datasets(
        [dataset.select_columns(["audio"]), label_column, dataset.remove_columns(["audio", "label"])], axis=1
    )
    return relabelled.select(np.flatnonzero(labels >= 0))


def _corpus_dir(name: str, data_root: str | os.PathLike | None) -> str | None:
    builder_class = get_builder_class(name)
    if not builder_class.NEEDS_DATA_DIR:
        return None
    return str(find_corpus_dir(data_root, name, builder_class.KAGGLE_SLUG))


def _check_data_root(data_root: str | os.PathLike | None) -> None:
    if data_root is None or not os.path.isdir(data_root):
        raise FileNotFoundError(
            f"data root {data_root} does not exist. Download corpora into it with "
            f"`python -m loaders download {data_root or 'DATA_ROOT'} --corpora NAME ...`."
        )
    if not any(os.scandir(data_root)):
        raise FileNotFoundError(
            f"data root {data_root} is empty. Download corpora into it with "
            f"`python -m loaders download {data_root} --corpora NAME ...`."
        )


def _check_emotions_present(
    loaded: Mapping[str, datasets.Dataset], class_names: Sequence[str], mapping: Mapping[str, str]
) -> None:
    present = {name: set(ds.unique("emotion")) for name, ds in loaded.items()}
    available = set().union(*present.values())
    for target in class_names:
        sources = {source for source, t in mapping.items() if t == target}
        if not sources & available:
            raise ValueError(
                f"emotion {target!r}: none of the corpora {list(loaded)} has it"
                + (f" (nor {sorted(sources - {target})}, merged into it)" if len(sources) > 1 else "")
                + f". They have: {sorted(available)}. Choose other emotions or add a corpus that has it."
            )


def _num_proc(builder: EmotionCorpusBuilder, num_proc: int | None) -> int:
    if num_proc is not None:
        return max(1, num_proc)
    num_files = len(builder.scan.files) if builder.scan is not None else 0
    return max(1, min(os.cpu_count() or 1, num_files // MIN_FILES_PER_PROCESS))


def _report_skipped(builder: EmotionCorpusBuilder, dataset: datasets.Dataset) -> None:
    if builder.scan is None:
        return
    scan = builder.scan
    if scan.skipped:
        logger.info("%s: skipped %d files that are not corpus files", builder.NAME, len(scan.skipped))
    unknown = [path for path, reason in scan.skipped if reason.startswith("unknown code")]
    if unknown:
        logger.warning(
            "%s: skipped %d files with unknown codes (lenient): %s", builder.NAME, len(unknown), unknown
        )
    if len(dataset) < len(scan.files):
        missing = builder.missing_files()
        logger.warning(
            "%s: skipped %d undecodable audio files (lenient): %s", builder.NAME, len(missing), missing
        )
