"""Fold protocols of the benchmark: which files train, validate and test in each run.

Everything here reads metadata only (corpus, file, speaker, gender, emotion, text): `load_metadata` gets
it from the builders' scans (file-name parsing, no audio decoding), so planning the folds of a full data
root takes seconds. Every protocol is deterministic for a seed: speakers and files are put in a canonical
order first, and each corpus (and fold) draws from its own numpy Generator seeded with
``(seed, crc32(name))``.

Protocols (`make_folds`):

- ``speaker-cv``: per corpus, every speaker is tested exactly once. Corpora with up to
  `LOSO_MAX_SPEAKERS` speakers are cross-validated leave-one-speaker-out (SAVEE 4 folds, TESS 2); larger
  ones in `n_folds` speaker-disjoint folds balanced by file count and gender. Validation speakers are
  drawn from the fold's training speakers (about `validation_fraction` of the training files, per gender).
  A fold with a single training speaker (TESS: train on one actress, test on the other) cannot hold
  speakers out for validation: its validation set is a random `validation_fraction` of that speaker's
  files, stratified by emotion, and the fold says so (`validation`).
- ``emobox``: EmoBox's published folds and class sets (`evaluation.emobox`). Validation: a random
  `validation_fraction` of the training files, as EmoBox's recipe draws it (``random``), or whole training
  speakers (``speaker``). Files EmoBox leaves out (162 of ShEMO) are counted in the notes.
- ``loco``: leave one corpus out: each corpus is tested once, after training on the others (validation
  speakers drawn per training corpus).
- ``cross-corpus``: one run per ordered pair (A, B): train on A (validation speakers from A), test on all
  of B, on the emotions both have (EmoBox's cross-corpus table: rows = training corpus, columns = test).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import emobox

logger = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("speaker-cv", "emobox", "loco", "cross-corpus")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
LOSO_MAX_SPEAKERS = 6
EMOBOX_VALIDATION: tuple[str, ...] = ("random", "speaker")
METADATA_COLUMNS: tuple[str, ...] = ("corpus", "file", "speaker", "gender", "emotion", "text")
FOLDS_COLUMNS: tuple[str, ...] = ("corpus", "fold", "split", "file", "run")


class FoldError(ValueError):
    """The protocol cannot be applied to the chosen corpora (reported to the user in one line)."""


@dataclass
class Fold:
    """One train / validation / test assignment: the data of one run (for each model).

    `corpus` is the corpus tested (what the run measures), `fold` its 1-based number within the protocol
    (the `--fold K` of a shard), `train_corpora` the corpora it trains on. `classes` are the class names in
    label order and `mapping` the source emotion -> class (merges such as EMO-DB anxiety -> fear).
    `files[split]` lists (corpus, file) pairs in canonical order.
    """

    protocol: str
    corpus: str
    fold: int
    train_corpora: tuple[str, ...]
    classes: tuple[str, ...]
    mapping: dict[str, str]
    files: dict[str, list[tuple[str, str]]]
    test_speakers: tuple[str, ...]
    validation: str  # how the validation set was drawn, in words
    speaker_independent: bool
    notes: list[str] = field(default_factory=list)

    @property
    def run(self) -> str:
        """The run's folder name (relative, posix), unique within a protocol."""
        if self.protocol == "cross-corpus":
            return f"{self.corpus}/from-{self.train_corpora[0]}"
        return f"{self.corpus}/fold-{self.fold}"

    def counts(self) -> dict[str, int]:
        return {split: len(self.files[split]) for split in SPLITS}

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "corpus": self.corpus,
            "fold": self.fold,
            "run": self.run,
            "train_corpora": list(self.train_corpora),
            "classes": list(self.classes),
            "mapping": dict(self.mapping),
            "test_speakers": list(self.test_speakers),
            "validation": self.validation,
            "speaker_independent": self.speaker_independent,
            "counts": self.counts(),
            "notes": list(self.notes),
        }


@dataclass
class FoldPlan:
    """The folds of a protocol, and what was left out on the way (counted, never silent)."""

    protocol: str
    folds: list[Fold]
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """folds.csv: one row per (run, split, file): corpus (the file's), fold, split, file, run."""
        rows = [
            (corpus, fold.fold, split, file, fold.run)
            for fold in self.folds
            for split in SPLITS
            for corpus, file in fold.files[split]
        ]
        return pd.DataFrame(rows, columns=list(FOLDS_COLUMNS))


# ---- metadata ------------------------------------------------------------------------------------------


def load_metadata(
    corpora: Sequence[str], data_root: str | os.PathLike | None, *, lenient: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """(metadata, notes) of the corpora: columns `METADATA_COLUMNS`, `speaker` as `<corpus>/<code>`.

    Real corpora come from their builder's scan (the folder walk and file-name grammar; no audio is
    read), the synthetic corpus from its plan (the default `load_corpus("synthetic")` corpus). The notes
    count what the scans skipped (readmes, OS metadata, duplicate copies).
    """
    from loaders.registry import get_builder_class, resolve_corpus_dir

    frames, notes = [], []
    for name in corpora:
        builder_class = get_builder_class(name)
        if not builder_class.NEEDS_DATA_DIR:
            from loaders.synthetic import corpus_plan, sentence_code

            rows = [
                (
                    name,
                    u.file,
                    f"{name}/{u.speaker.code}",
                    u.speaker.gender,
                    u.emotion,
                    sentence_code(u.sentence),
                )
                for u in corpus_plan()
            ]
        else:
            if data_root is None:
                raise FoldError(f"corpus {name!r} needs --data_root")
            scan = builder_class.scan_corpus(resolve_corpus_dir(name, data_root), lenient=lenient)
            rows = [
                (name, f.file, f"{name}/{f.info.speaker}", f.info.gender, f.info.emotion, f.info.text)
                for f in scan.files
            ]
            if scan.skipped or scan.duplicates:
                notes.append(
                    f"{name}: {len(scan.files)} files; skipped {len(scan.skipped)} non-corpus entries and "
                    f"{scan.duplicates} duplicate copies"
                )
            if not rows:
                raise FoldError(f"corpus {name!r}: no files found under {data_root}")
        frames.append(pd.DataFrame(rows, columns=list(METADATA_COLUMNS)))
    meta = pd.concat(frames, ignore_index=True)
    return meta.sort_values(["corpus", "file"], kind="stable").reset_index(drop=True), notes


# ---- helpers -------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: object) -> np.random.Generator:
    # crc32, not hash(): Python's string hash changes from one process to the next.
    return np.random.default_rng([int(seed), *(zlib.crc32(str(k).encode("utf-8")) for k in keys)])


def _pairs(rows: pd.DataFrame) -> list[tuple[str, str]]:
    rows = rows.sort_values(["corpus", "file"], kind="stable")
    return list(zip(rows["corpus"], rows["file"], strict=True))


def _speaker_table(rows: pd.DataFrame) -> pd.DataFrame:
    """speaker -> files, gender (sorted by speaker)."""
    return rows.groupby("speaker", sort=True).agg(files=("file", "size"), gender=("gender", "first"))


def _restrict(
    meta: pd.DataFrame, classes: Sequence[str], mapping: Mapping[str, str], notes: list[str]
) -> pd.DataFrame:
    """Rows whose emotion maps to a class; the others are counted in `notes`, per corpus."""
    keep = meta["emotion"].isin(list(mapping))
    for corpus, dropped in meta.loc[~keep].groupby("corpus", sort=True):
        by_emotion = dropped["emotion"].value_counts().sort_index().to_dict()
        notes.append(
            f"{corpus}: {len(dropped)} files of emotions outside the classes {list(classes)} left out "
            f"({by_emotion})"
        )
    return meta.loc[keep]


def _random_validation(rows: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.Index:
    """A random `fraction` of `rows`, stratified by emotion (each emotion's share rounded)."""
    chosen: list = []
    for _, group in rows.groupby("emotion", sort=True):
        count = int(round(fraction * len(group)))
        chosen.extend(group.index[rng.permutation(len(group))[:count]])
    return pd.Index(sorted(chosen))


def _validation_speakers(rows: pd.DataFrame, fraction: float, rng: np.random.Generator) -> list[str]:
    """Whole training speakers for validation: about `fraction` of each gender's files, at least one
    speaker, and at least one speaker left to train on. Empty when `rows` has a single speaker."""
    speakers = _speaker_table(rows)
    if len(speakers) < 2 or fraction <= 0:
        return []
    order = speakers.index[rng.permutation(len(speakers))]
    target = speakers.groupby("gender")["files"].sum() * fraction
    taken = {g: 0 for g in target.index}
    chosen: list[str] = []
    for speaker in order:
        if len(chosen) == len(speakers) - 1:
            break
        gender, files = speakers.at[speaker, "gender"], speakers.at[speaker, "files"]
        # Take the speaker if it brings the gender's validation files closer to the target.
        if abs(taken[gender] + files - target[gender]) < abs(taken[gender] - target[gender]):
            chosen.append(speaker)
            taken[gender] += files
    if not chosen:
        chosen.append(order[0])
    return sorted(chosen)


def _split_train_validation(
    rows: pd.DataFrame, fraction: float, rng: np.random.Generator, by: str = "speaker"
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(train, validation, how): validation speakers from `rows`' speakers, per corpus; a corpus with
    one speaker (or `by="random"`) gives a random share of its files instead."""
    validation_index: list = []
    hows = []
    for corpus, corpus_rows in rows.groupby("corpus", sort=True):
        if by == "speaker":
            speakers = _validation_speakers(corpus_rows, fraction, rng)
            if speakers:
                validation_index.extend(corpus_rows.index[corpus_rows["speaker"].isin(speakers)])
                hows.append(f"{corpus}: speakers {' '.join(speakers)}")
                continue
            how = f"{corpus}: random {fraction:.0%} of the files of its only training speaker"
        else:
            how = f"{corpus}: random {fraction:.0%} of the training files (stratified by emotion)"
        validation_index.extend(_random_validation(corpus_rows, fraction, rng))
        hows.append(how)
    validation = rows.loc[rows.index.isin(validation_index)]
    return rows.loc[~rows.index.isin(validation_index)], validation, "; ".join(hows)


def _fold(
    protocol: str,
    corpus: str,
    number: int,
    classes: Sequence[str],
    mapping: Mapping[str, str],
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    how: str,
) -> Fold:
    seen = set(train["speaker"]) | set(validation["speaker"])
    return Fold(
        protocol=protocol,
        corpus=corpus,
        fold=number,
        train_corpora=tuple(sorted(set(train["corpus"]))),
        classes=tuple(classes),
        mapping=dict(mapping),
        files={"train": _pairs(train), "validation": _pairs(validation), "test": _pairs(test)},
        test_speakers=tuple(sorted(set(test["speaker"]))),
        validation=how,
        speaker_independent=not (set(test["speaker"]) & seen),
    )


def _classes(emotions: Sequence[str] | None, present: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Chosen emotions (default: the four every corpus has) in canonical order, kept where present."""
    from loaders.emotions import DEFAULT_EMOTIONS, EMOTIONS, resolve_emotions

    names, mapping = resolve_emotions(list(emotions) if emotions else list(DEFAULT_EMOTIONS))
    present = set(present)
    names = [e for e in EMOTIONS if e in names and e in present]
    return names, {e: e for e in names}


# ---- protocols -----------------------------------------------------------------------------------------


def assign_speaker_folds(speakers: pd.DataFrame, n_folds: int, rng: np.random.Generator) -> dict[str, int]:
    """speaker -> test fold (1-based) for one corpus; `speakers` is `_speaker_table` (files, gender).

    Up to `LOSO_MAX_SPEAKERS` speakers: one fold per speaker (in speaker order). Otherwise `n_folds`
    folds: speakers in seeded random order, then largest first (a stable sort), each to the fold with the
    fewest files of its gender, then the fewest files: folds end up alike in size and gender mix.
    """
    if len(speakers) <= LOSO_MAX_SPEAKERS:
        return {speaker: i + 1 for i, speaker in enumerate(speakers.index)}
    order = speakers.iloc[rng.permutation(len(speakers))].sort_values("files", ascending=False, kind="stable")
    files = [0] * n_folds
    gender_files = {g: [0] * n_folds for g in speakers["gender"].unique()}
    result = {}
    for speaker, row in order.iterrows():
        best = min(range(n_folds), key=lambda k: (gender_files[row["gender"]][k], files[k], k))
        result[speaker] = best + 1
        files[best] += row["files"]
        gender_files[row["gender"]][best] += row["files"]
    return result


def speaker_cv_folds(
    meta: pd.DataFrame,
    *,
    n_folds: int = 5,
    seed: int = 42,
    validation_fraction: float = 0.2,
    emotions: Sequence[str] | None = None,
) -> FoldPlan:
    """Speaker cross-validation per corpus (see the module docstring)."""
    notes: list[str] = []
    folds = []
    for corpus, corpus_meta in meta.groupby("corpus", sort=True):
        classes, mapping = _classes(emotions, corpus_meta["emotion"])
        rows = _restrict(corpus_meta, classes, mapping, notes)
        speakers = _speaker_table(rows)
        if len(speakers) < 2:
            raise FoldError(
                f"corpus {corpus!r} has {len(speakers)} speaker(s): speaker cross-validation needs at "
                "least 2; use another protocol or add speakers"
            )
        if len(speakers) > LOSO_MAX_SPEAKERS and not 2 <= n_folds <= len(speakers):
            raise FoldError(
                f"--folds {n_folds}: corpus {corpus!r} has {len(speakers)} speakers; choose 2 to "
                f"{len(speakers)} folds"
            )
        fold_of = rows["speaker"].map(assign_speaker_folds(speakers, n_folds, _rng(seed, corpus)))
        if len(speakers) == 2:
            notes.append(
                f"{corpus}: 2 speakers, so each fold trains on one speaker and tests on the other (a "
                "cross-speaker transfer test from a single voice); validation is a random "
                f"{validation_fraction:.0%} of the training speaker's files (speaker-dependent)"
            )
        for number in sorted(fold_of.unique()):
            test = rows.loc[fold_of == number]
            train, validation, how = _split_train_validation(
                rows.loc[fold_of != number], validation_fraction, _rng(seed, corpus, number)
            )
            folds.append(
                _fold("speaker-cv", str(corpus), int(number), classes, mapping, train, validation, test, how)
            )
    return FoldPlan("speaker-cv", folds, notes)


def emobox_folds(
    meta: pd.DataFrame,
    *,
    seed: int = 42,
    validation: str = "random",
    validation_fraction: float = 0.2,
    table: pd.DataFrame | None = None,
) -> FoldPlan:
    """EmoBox's folds and class sets (see the module docstring)."""
    if validation not in EMOBOX_VALIDATION:
        raise FoldError(
            f"emobox validation {validation!r} is unknown; choose one of {list(EMOBOX_VALIDATION)}"
        )
    table = emobox.read_folds() if table is None else table
    notes: list[str] = []
    folds = []
    for corpus, corpus_meta in meta.groupby("corpus", sort=True):
        published = table.loc[table["corpus"] == corpus]
        if published.empty:
            raise FoldError(
                f"corpus {corpus!r} has no EmoBox folds; the emobox protocol covers "
                f"{sorted(table['corpus'].unique())}"
            )
        codes = corpus_meta["speaker"].str.split("/", n=1).str[1]
        names = [
            emobox.emobox_name(str(corpus), f, s, t)
            for f, s, t in zip(corpus_meta["file"], codes, corpus_meta["text"], strict=True)
        ]
        rows = corpus_meta.assign(emobox_file=names)
        joined = rows.merge(
            published[["file", "test_fold", "emotion"]].rename(
                columns={"file": "emobox_file", "emotion": "emobox_emotion"}
            ),
            on="emobox_file",
            how="left",
            validate="one_to_one",
        )
        joined.index = rows.index
        outside = joined["test_fold"].isna()
        if outside.any():
            by_emotion = joined.loc[outside, "emotion"].value_counts().sort_index().to_dict()
            notes.append(f"{corpus}: {int(outside.sum())} files EmoBox does not use left out ({by_emotion})")
        absent = len(published) - int((~outside).sum())
        if absent:
            notes.append(
                f"{corpus}: {absent} of EmoBox's {len(published)} files are not in the data: its fold sizes "
                "will differ from EmoBox's"
            )
        joined = joined.loc[~outside].astype({"test_fold": int})
        merges = emobox.MERGES.get(str(corpus), {})
        ours = joined["emotion"].replace(merges)
        disagree = ours != joined["emobox_emotion"]
        if disagree.any():
            notes.append(
                f"{corpus}: {int(disagree.sum())} files labelled differently by EmoBox and the corpus's "
                f"names left out (e.g. {joined.loc[disagree, 'file'].iloc[0]})"
            )
            joined = joined.loc[~disagree]
        from loaders.emotions import EMOTIONS

        classes = [e for e in EMOTIONS if e in set(joined["emobox_emotion"])]
        mapping = {e: merges.get(e, e) for e in EMOTIONS if merges.get(e, e) in classes}
        corpus_folds = []
        for number in sorted(k for k in joined["test_fold"].unique() if k > 0):
            test = joined.loc[joined["test_fold"] == number]
            pool = joined.loc[joined["test_fold"] != number]
            train, val, how = _split_train_validation(
                pool, validation_fraction, _rng(seed, corpus, number), by=validation
            )
            corpus_folds.append(
                _fold("emobox", str(corpus), int(number), classes, mapping, train, val, test, how)
            )
        folds.extend(corpus_folds)
        if not all(fold.speaker_independent for fold in corpus_folds):
            notes.append(f"{corpus}: EmoBox's folds are not speaker-independent (test speakers also train)")
    return FoldPlan("emobox", folds, notes)


def loco_folds(
    meta: pd.DataFrame,
    *,
    seed: int = 42,
    validation_fraction: float = 0.2,
    emotions: Sequence[str] | None = None,
) -> FoldPlan:
    """Leave one corpus out, in corpus order (fold k tests the k-th corpus)."""
    corpora = sorted(meta["corpus"].unique())
    if len(corpora) < 2:
        raise FoldError(f"the loco protocol needs at least 2 corpora, got {corpora}; add --corpora")
    notes: list[str] = []
    classes, mapping = _classes(emotions, meta["emotion"])
    rows = _restrict(meta, classes, mapping, notes)
    folds = []
    for number, corpus in enumerate(corpora, start=1):
        test = rows.loc[rows["corpus"] == corpus]
        missing = [c for c in classes if c not in set(test["emotion"])]
        if missing:
            notes.append(f"loco fold {number} ({corpus}): classes {missing} have no test file")
        train, validation, how = _split_train_validation(
            rows.loc[rows["corpus"] != corpus], validation_fraction, _rng(seed, "loco", corpus)
        )
        folds.append(_fold("loco", corpus, number, classes, mapping, train, validation, test, how))
    return FoldPlan("loco", folds, notes)


def cross_corpus_folds(
    meta: pd.DataFrame,
    *,
    seed: int = 42,
    validation_fraction: float = 0.2,
    emotions: Sequence[str] | None = None,
) -> FoldPlan:
    """Every ordered pair (train A, test B), on the emotions both have; fold k trains on the k-th corpus."""
    from loaders.emotions import EMOTIONS

    corpora = sorted(meta["corpus"].unique())
    if len(corpora) < 2:
        raise FoldError(f"the cross-corpus protocol needs at least 2 corpora, got {corpora}; add --corpora")
    chosen = set(emotions) if emotions else set(EMOTIONS)
    present = {c: set(meta.loc[meta["corpus"] == c, "emotion"]) for c in corpora}
    notes: list[str] = []
    folds = []
    for number, source in enumerate(corpora, start=1):
        for target in corpora:
            if target == source:
                continue
            classes = [e for e in EMOTIONS if e in chosen and e in present[source] and e in present[target]]
            if len(classes) < 2:
                notes.append(f"{source} -> {target}: {len(classes)} shared emotion(s) {classes}: no run")
                continue
            mapping = {e: e for e in classes}
            pair = meta.loc[meta["corpus"].isin([source, target]) & meta["emotion"].isin(classes)]
            train, validation, how = _split_train_validation(
                pair.loc[pair["corpus"] == source], validation_fraction, _rng(seed, "cross", source)
            )
            test = pair.loc[pair["corpus"] == target]
            folds.append(
                _fold("cross-corpus", target, number, classes, mapping, train, validation, test, how)
            )
    return FoldPlan("cross-corpus", folds, notes)


def make_folds(
    protocol: str,
    meta: pd.DataFrame,
    *,
    n_folds: int = 5,
    seed: int = 42,
    validation_fraction: float = 0.2,
    emotions: Sequence[str] | None = None,
    emobox_validation: str = "random",
) -> FoldPlan:
    """The folds of `protocol` on the metadata `meta` (see the module docstring)."""
    if protocol not in PROTOCOLS:
        raise FoldError(f"protocol {protocol!r} is unknown; choose one of {list(PROTOCOLS)}")
    if not 0 < validation_fraction < 1:
        raise FoldError(f"validation fraction {validation_fraction} must be between 0 and 1")
    if protocol == "speaker-cv":
        return speaker_cv_folds(
            meta, n_folds=n_folds, seed=seed, validation_fraction=validation_fraction, emotions=emotions
        )
    if protocol == "emobox":
        if emotions:
            raise FoldError(
                "the emobox protocol uses EmoBox's class sets (each corpus's own); drop --emotions"
            )
        return emobox_folds(
            meta, seed=seed, validation=emobox_validation, validation_fraction=validation_fraction
        )
    if protocol == "loco":
        return loco_folds(meta, seed=seed, validation_fraction=validation_fraction, emotions=emotions)
    return cross_corpus_folds(meta, seed=seed, validation_fraction=validation_fraction, emotions=emotions)
