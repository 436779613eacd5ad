"""Load corpora as `datasets` objects: one corpus whole, or several with a choice of emotions and a split."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import datasets
import numpy as np
import pyarrow as pa
from datasets.naming import filenames_for_dataset_split

from .builder import EmotionCorpusBuilder, NoSpaceError, is_no_space, no_space_message
from .discovery import ScanResult
from .emotions import resolve_emotions
from .registry import find_corpus_dir, get_builder_class, make_builder, validate_corpus_names
from .schema import SAMPLING_RATE

logger = logging.getLogger(__name__)

# Below this many files per worker, starting processes costs more than it saves.
MIN_FILES_PER_PROCESS = 200


def prepare_corpus(
    name: str,
    data_dir: str | os.PathLike | None,
    *,
    sampling_rate: int | None = SAMPLING_RATE,
    lenient: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> EmotionCorpusBuilder:
    """Build (or find in the cache) the prepared data of corpus `name` and return its builder.

    A cache found complete is checked shard by shard (present, readable, row counts as recorded); a damaged
    one is rebuilt with a warning, and `builder.cache_rebuilt` says why (None otherwise). Before decoding
    anything, strict mode checks every file's header (`BrokenAudioError` naming the file). A full disk is a
    `NoSpaceError`. Worker processes end with this process, however it ends.
    """
    builder = make_builder(
        name,
        data_dir,
        sampling_rate=sampling_rate,
        lenient=lenient,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    check_before_preparing(builder)
    return prepare_builder(builder, num_proc=num_proc)


def check_before_preparing(builder: EmotionCorpusBuilder) -> None:
    """What `prepare_builder` would fail on late, checked before any audio is decoded: a damaged cache
    (noted in `builder.cache_rebuilt`, rebuilt later) and, in strict mode, undecodable files
    (`BrokenAudioError`). Nothing is checked when an intact cache will be reused."""
    builder.cache_rebuilt = cache_damage(builder)
    if builder.cache_rebuilt is None and _cache_complete(builder):
        return
    if builder.scan is not None and not builder.config.lenient:
        builder.check_audio()


def prepare_builder(builder: EmotionCorpusBuilder, num_proc: int | None = None) -> EmotionCorpusBuilder:
    """Prepare (or reuse the intact cache of) a builder that went through `check_before_preparing`."""
    damage = getattr(builder, "cache_rebuilt", None)
    if damage is not None:
        logger.warning("%s: the cache is damaged (%s); rebuilding it", builder.NAME, damage)
    elif _cache_complete(builder):
        builder.download_and_prepare()  # reads the cached info, decodes nothing
        return builder
    mode = datasets.DownloadMode.FORCE_REDOWNLOAD if damage is not None else None
    try:
        with children_die_with_parent():
            builder.download_and_prepare(num_proc=_num_proc(builder, num_proc), download_mode=mode)
    except OSError as err:
        if is_no_space(err):
            raise NoSpaceError(no_space_message(builder.NAME, builder.cache_dir)) from None
        raise
    return builder


def _cache_complete(builder: EmotionCorpusBuilder) -> bool:
    return os.path.exists(os.path.join(builder.cache_dir, datasets.config.DATASET_INFO_FILENAME))


def cache_damage(builder: EmotionCorpusBuilder) -> str | None:
    """Why the cache of `builder`, recorded as complete, cannot be read ('missing', 'truncated', ...);
    None when it is intact or not there at all.

    datasets trusts `dataset_info.json` alone: a deleted or truncated Arrow shard then surfaces only when
    training reads it (`OSError: Expected to be able to read ... bytes`). Counting each shard's rows reads
    only the record-batch headers (memory-mapped), not the audio."""
    if not _cache_complete(builder):
        return None
    try:
        info = datasets.DatasetInfo.from_directory(builder.cache_dir)
        split = info.splits["train"]
    except Exception as err:  # any unreadable or incomplete info means the same: rebuild
        return f"{datasets.config.DATASET_INFO_FILENAME} unreadable ({err})"
    lengths = split.shard_lengths or [split.num_examples]
    paths = filenames_for_dataset_split(
        builder.cache_dir, builder.dataset_name, "train", "arrow", split.shard_lengths
    )
    if len(paths) != len(lengths):
        return f"{len(paths)} shard files for {len(lengths)} recorded shards"
    for path, expected in zip(paths, lengths, strict=True):
        if not os.path.isfile(path):
            return f"{os.path.basename(path)} is missing"
        try:
            with pa.memory_map(path) as source:
                rows = sum(batch.num_rows for batch in pa.ipc.open_stream(source))
        except (OSError, pa.ArrowException) as err:
            return f"{os.path.basename(path)} is truncated or corrupt ({err})"
        if rows != expected:
            return f"{os.path.basename(path)} holds {rows} rows, not the {expected} recorded"
    return None


def load_corpus(
    name: str,
    data_dir: str | os.PathLike | None,
    *,
    sampling_rate: int | None = SAMPLING_RATE,
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
    sampling_rate: int | None = SAMPLING_RATE,
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
    # Every folder is looked up before any corpus is prepared: a missing last corpus fails at once.
    folders = {name: _corpus_dir(name, data_root) for name in names}
    loaded = {
        name: load_corpus(
            name,
            folders[name],
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
    """The folder of `name` under `data_root` (an error saying how to download it if absent); None for a
    generated corpus. `make_builder` takes the folder found here as it is, without a second lookup."""
    if not get_builder_class(name).NEEDS_DATA_DIR:
        return None
    return str(find_corpus_dir(data_root, name))


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


def skip_report(scan: ScanResult, undecodable: Sequence[str]) -> list[str]:
    """What a preparation left out, as `python -m loaders prepare` prints it: a count line, then one line
    per file skipped for an unknown code or undecodable audio (OS clutter and readmes are only counted)."""
    lines = [
        f"  duplicate copies ignored: {scan.duplicates}; non-corpus files skipped: {len(scan.skipped)}; "
        f"undecodable skipped: {len(undecodable)}"
    ]
    lines += [f"    {path}: {reason}" for path, reason in scan.skipped if reason.startswith("unknown code")]
    lines += [f"    {path}: undecodable audio" for path in undecodable]
    return lines


# ---- worker processes end with their parent ----
#
# datasets prepares with a `multiprocess` Pool (plus a Manager process) when num_proc > 1. Killed without
# cleanup (SIGKILL, or SIGTERM with the default action), the parent leaves those processes running under
# PID 1, holding gigabytes. Every process forked while `children_die_with_parent` is active asks the kernel
# to kill it when its parent dies (Linux), or watches its parent (elsewhere).

_PR_SET_PDEATHSIG = 1
_guard = {"depth": 0, "parent": 0}
_fork_hooks_registered = False


def _before_fork() -> None:
    _guard["parent"] = os.getpid()


def _after_fork_in_child() -> None:
    if _guard["depth"] <= 0:
        return
    # The parent's Python-level SIGTERM handler (the CLI's) is copied into the child: a worker must simply
    # die when the pool terminates it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(_guard["parent"])


def die_with_parent(parent: int) -> None:
    """End this process when process `parent` ends (call it in a child of `parent`)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the request was made
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


@contextlib.contextmanager
def children_die_with_parent() -> Iterator[None]:
    """While active, processes forked by this one end when it ends, even by SIGKILL."""
    global _fork_hooks_registered
    if not _fork_hooks_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _fork_hooks_registered = True
    _guard["depth"] += 1
    try:
        yield
    finally:
        _guard["depth"] -= 1


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
