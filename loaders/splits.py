"""Train / validation / test splits of a corpus dataset: `random`, `speaker` and `corpus` strategies.

Every strategy reads only metadata columns (audio is never decoded) and is deterministic for a seed:
rows are first put in the canonical order (corpus, file), and each corpus draws from its own numpy
Generator seeded with ``(seed, crc32(corpus))``. The split of one corpus is therefore the same whatever the
row order, the file-system order, the machine, or which other corpora were loaded beside it.

Only the speaker-independent strategies (`speaker`, `corpus`) give honest figures: with `random`, the same
speaker is in train and test and accuracies on these acted corpora are inflated (often 97-100%).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import datasets
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = ("random", "speaker", "corpus")
SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Metadata read by every strategy; `label` (or `emotion` where a dataset has no label) is the class.
_KEY_COLUMNS: tuple[str, ...] = ("corpus", "file", "speaker", "gender")


def split_dataset(
    ds: datasets.Dataset,
    strategy: str,
    *,
    seed: int = 42,
    test_corpora: Sequence[str] | None = None,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
) -> datasets.DatasetDict:
    """Split `ds` into a DatasetDict with keys ``train``, ``validation``, ``test``.

    `fractions` are the (train, test, validation) shares of files, in that order, as the original project
    wrote its 70/20/10 train/test/validation split; they must sum to 1 (validation may be 0).

    Strategies:

    - ``random``: files are drawn at random, stratified by class within each corpus, so every split holds
      each (corpus, class) group in the target proportions (rounded by largest remainder). Speakers are
      shared between splits: use it only to reproduce papers that did so.
    - ``speaker``: speaker-independent, per corpus. Whole speakers (never single files) go to one split.
      Speakers drawn in seeded random order first give each split one speaker (of each gender where the
      corpus has enough), then the others go, largest first, to the split whose share of that gender's
      files is furthest below its target, so file counts (not speaker counts) follow the fractions.
      A corpus with 3 or more speakers gives every split (with a fraction > 0) at least one speaker.
      With 2 speakers (TESS) one goes to train and one to test, none to validation; with 1 speaker all of
      it is train. Few or unequal speakers make the shares coarse: SAVEE's 4 speakers give 2/1/1
      speakers, i.e. 50/25/25 of its files. A warning names each corpus that leaves a split without any
      of its speakers.
    - ``corpus``: leave-corpora-out. The corpora in `test_corpora` are the test set; the other corpora are
      split speaker-independently (as ``speaker``) into train and validation, with the train:validation
      ratio of `fractions` (0.7:0.1 by default, i.e. 87.5% / 12.5%). A remaining corpus with 2 speakers
      gives one to train and one to validation.

    Rows of each split come in the canonical (corpus, file) order.

    Raises ValueError for an unknown strategy, bad fractions or seed, missing metadata columns, a file
    listed twice, bad `test_corpora`, or a split that leaves a class present in the data without any
    example in train or test.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"split strategy {strategy!r} is unknown; choose one of {list(STRATEGIES)}")
    if strategy != "corpus" and test_corpora:
        raise ValueError(
            f"test_corpora={list(test_corpora)} is only used by the 'corpus' strategy, not {strategy!r}"
        )
    shares = _check_fractions(fractions)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if len(ds) == 0:
        raise ValueError("cannot split an empty dataset; check the corpora and emotions chosen")
    meta = _metadata(ds)
    if strategy == "random":
        assignment = _random_assignment(meta, shares, seed)
    elif strategy == "speaker":
        assignment = _speaker_assignment(meta, shares, seed)
    else:
        assignment = _corpus_assignment(meta, shares, seed, test_corpora)
    _check_classes(meta, assignment, strategy, seed)
    return datasets.DatasetDict(
        {name: ds.select(meta.index[assignment == name].to_numpy()) for name in SPLITS}
    )


def _check_fractions(fractions: Sequence[float]) -> dict[str, float]:
    """(train, test, validation) -> {split: share}, checked."""
    values = [float(f) for f in fractions]
    if len(values) != 3 or any(not np.isfinite(f) or f < 0 for f in values):
        raise ValueError(
            f"fractions must be three non-negative numbers (train, test, validation), got {fractions}"
        )
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions (train, test, validation) must sum to 1, got {fractions} (sum {sum(values):g})"
        )
    train, test, validation = values
    if train == 0 or test == 0:
        raise ValueError(f"fractions {fractions}: train and test need a share above 0 (validation may be 0)")
    return {"train": train, "validation": validation, "test": test}


def _metadata(ds: datasets.Dataset) -> pd.DataFrame:
    """The metadata table in canonical (corpus, file) order, indexed by row position in `ds`."""
    class_column = "label" if "label" in ds.column_names else "emotion"
    missing = [c for c in (*_KEY_COLUMNS, class_column) if c not in ds.column_names]
    if missing:
        raise ValueError(f"cannot split: the dataset has no column(s) {missing} (columns: {ds.column_names})")
    meta = ds.select_columns([*_KEY_COLUMNS, class_column]).to_pandas()
    feature = ds.features[class_column]
    if isinstance(feature, datasets.ClassLabel):
        meta["class"] = [feature.int2str(int(i)) for i in meta[class_column]]
    else:
        meta["class"] = meta[class_column].astype(str)
    meta = meta.sort_values(["corpus", "file"], kind="stable")
    twice = meta.duplicated(["corpus", "file"], keep=False)
    if twice.any():
        examples = meta.loc[twice, ["corpus", "file"]].head(3).to_records(index=False).tolist()
        raise ValueError(
            f"cannot split: {int(twice.sum())} rows share a (corpus, file) with another row, "
            f"e.g. {examples}; "
            "the same file in two splits would leak into the test set: de-duplicate the dataset first"
        )
    return meta


def _corpus_rng(seed: int, corpus: str) -> np.random.Generator:
    # crc32, not hash(): Python's string hash changes from one process to the next.
    return np.random.default_rng([int(seed), zlib.crc32(corpus.encode("utf-8"))])


def _random_assignment(meta: pd.DataFrame, shares: dict[str, float], seed: int) -> pd.Series:
    """Files to splits at random, stratified by (corpus, class)."""
    assignment = pd.Series("", index=meta.index, dtype=object)
    for corpus, rows in meta.groupby("corpus", sort=True):
        rng = _corpus_rng(seed, str(corpus))
        for _, group in rows.groupby("class", sort=True):
            counts = _largest_remainder(len(group), shares)
            labels = np.repeat(list(counts), list(counts.values()))
            assignment.loc[group.index[rng.permutation(len(group))]] = labels
    return assignment


def _largest_remainder(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split `total` items into integer counts proportional to `shares` (ties go to the larger share)."""
    exact = {name: total * share for name, share in shares.items()}
    counts = {name: int(np.floor(value)) for name, value in exact.items()}
    order = sorted(shares, key=lambda name: (counts[name] - exact[name], -shares[name], SPLITS.index(name)))
    for name in order[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def _speaker_assignment(meta: pd.DataFrame, shares: dict[str, float], seed: int) -> pd.Series:
    """Whole speakers to splits, per corpus, gender-stratified by file counts."""
    assignment = pd.Series("", index=meta.index, dtype=object)
    for corpus, rows in meta.groupby("corpus", sort=True):
        speaker_split = _deal_speakers(rows, shares, _corpus_rng(seed, str(corpus)))
        assignment.loc[rows.index] = rows["speaker"].map(speaker_split).to_numpy()
        empty = [name for name in SPLITS if shares[name] > 0 and name not in speaker_split.values()]
        if empty:
            logger.warning(
                "speaker split: corpus %r has %d speaker(s), so split(s) %s get none of its files",
                corpus,
                len(speaker_split),
                empty,
            )
    return assignment


def _deal_speakers(rows: pd.DataFrame, shares: dict[str, float], rng: np.random.Generator) -> dict[str, str]:
    """Speaker -> split for one corpus (see `split_dataset`, strategy ``speaker``).

    First, speakers in seeded random order fill the splits that still lack any speaker, or any speaker of
    that gender (the largest such split first). The rest go largest first (a stable sort of the random
    order) to the split whose file count of their gender, then of all files, is furthest below its target:
    placing big speakers early and small ones last keeps the file shares close to the fractions.
    """
    speakers = rows.groupby("speaker", sort=True).agg(files=("file", "size"), gender=("gender", "first"))
    speakers = speakers.iloc[rng.permutation(len(speakers))]
    # Ranked by share: with fewer speakers than splits, the largest splits get them (2 speakers: train, test).
    splits = sorted((name for name in SPLITS if shares[name] > 0), key=lambda name: -shares[name])
    needed = splits[: len(speakers)]
    gender_total = speakers.groupby("gender")["files"].sum()
    files = {name: 0 for name in splits}
    gender_files = {(name, g): 0 for name in splits for g in gender_total.index}
    result: dict[str, str] = {}

    def place(speaker: str, split: str) -> None:
        result[speaker] = split
        files[split] += speakers.at[speaker, "files"]
        gender_files[split, speakers.at[speaker, "gender"]] += speakers.at[speaker, "files"]

    for speaker, gender in speakers["gender"].items():
        empty = [name for name in needed if files[name] == 0] or [
            name for name in splits if gender_files[name, gender] == 0
        ]
        if empty:
            place(speaker, empty[0])
    rest = speakers.drop(index=list(result)).sort_values("files", ascending=False, kind="stable")
    for speaker, gender in rest["gender"].items():

        def shortfall(name: str, gender: str = gender) -> tuple[float, float, float]:
            # Files missing to the target, by gender, then overall: the largest shortfall is the split
            # where this speaker reduces the squared error against the targets most.
            by_gender = shares[name] * gender_total[gender] - gender_files[name, gender]
            overall = shares[name] * len(rows) - files[name]
            return by_gender, overall, shares[name]

        place(speaker, max(splits, key=shortfall))
    return result


def _corpus_assignment(
    meta: pd.DataFrame, shares: dict[str, float], seed: int, test_corpora: Sequence[str] | None
) -> pd.Series:
    """Named corpora to test; the rest split speaker-independently into train and validation."""
    present = sorted(meta["corpus"].unique())
    if not test_corpora:
        raise ValueError(f"the 'corpus' strategy needs test_corpora: one or more of {present}")
    unknown = [c for c in test_corpora if c not in present]
    if unknown:
        raise ValueError(f"test_corpora {unknown} are not in the dataset; it holds corpora {present}")
    held_out = meta["corpus"].isin(list(test_corpora))
    if held_out.all():
        raise ValueError(
            f"test_corpora {list(test_corpora)} are all the corpora in the dataset: nothing is left to "
            "train on; load at least one more corpus"
        )
    rest = shares["train"] + shares["validation"]
    rest_shares = {"train": shares["train"] / rest, "validation": shares["validation"] / rest, "test": 0.0}
    assignment = pd.Series("test", index=meta.index, dtype=object)
    assignment.loc[~held_out] = _speaker_assignment(meta.loc[~held_out], rest_shares, seed)
    return assignment


def _check_classes(meta: pd.DataFrame, assignment: pd.Series, strategy: str, seed: int) -> None:
    """Every class in the data must have examples in train and in test."""
    for split in ("train", "test"):
        found = set(meta.loc[assignment == split, "class"])
        for name in sorted(set(meta["class"]) - found):
            where = meta.loc[meta["class"] == name, "corpus"].value_counts().to_dict()
            raise ValueError(
                f"split strategy {strategy!r} (seed {seed}) leaves class {name!r} with no example in the "
                f"{split} split (it has {sum(where.values())} files: {where}); drop or merge that emotion "
                "(--emotions / --merge), choose emotions all corpora share, or try another seed or strategy"
            )
