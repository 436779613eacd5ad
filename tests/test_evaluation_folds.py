"""Fold protocols: speaker-disjoint cross-validation, EmoBox's published folds, loco, cross-corpus.

Metadata comes from the builders' scans of fixture layouts (file names only), so even full-size layouts
built from manifest.csv are planned in seconds.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import emobox
from evaluation.folds import (
    FoldError,
    assign_speaker_folds,
    load_metadata,
    make_folds,
)
from loaders import fixtures
from loaders.registry import CORPUS_NAMES

# EmoBox's test-fold sizes (shared/corpora/README.md, "EmoBox's folds"): corpus -> [size of fold k].
EMOBOX_TEST_SIZES = {
    "cremad": [1856],
    "emodb": [107] * 5,
    "ravdess": [240] * 6,
    "savee": [120] * 4,
    "shemo": [707],
    "tess": [700],
}


@pytest.fixture(scope="module")
def full_root(tmp_path_factory) -> Path:
    """All six downloads with every real file name (tiny audio, duplicate trees, no clutter)."""
    root = tmp_path_factory.mktemp("full")
    manifest = fixtures.read_manifest()
    for name in CORPUS_NAMES:
        fixtures.build_download(name, root, manifest=manifest, quirks=False)
    return root


@pytest.fixture(scope="module")
def full_meta(full_root) -> pd.DataFrame:
    meta, _ = load_metadata(list(CORPUS_NAMES), full_root)
    return meta


def assert_speaker_cv_invariants(plan, meta: pd.DataFrame) -> None:
    """Every speaker tested exactly once, never in the training or validation part of its own fold, and
    no file in two splits of a fold."""
    speaker_of = dict(zip(zip(meta["corpus"], meta["file"], strict=True), meta["speaker"], strict=True))
    tested = Counter()
    for fold in plan.folds:
        split_speakers = {s: {speaker_of[p] for p in fold.files[s]} for s in ("train", "validation", "test")}
        assert split_speakers["test"] == set(fold.test_speakers)
        assert not split_speakers["test"] & (split_speakers["train"] | split_speakers["validation"]), fold.run
        all_files = [p for s in ("train", "validation", "test") for p in fold.files[s]]
        assert len(all_files) == len(set(all_files))
        assert fold.files["train"] and fold.files["validation"] and fold.files["test"]
        tested.update(split_speakers["test"])
    assert set(tested) == set(meta["speaker"])
    assert set(tested.values()) == {1}


def test_speaker_cv_on_the_synthetic_corpus():
    meta, _ = load_metadata(["synthetic"], None)
    assert meta["speaker"].nunique() == 12
    plan = make_folds("speaker-cv", meta, n_folds=4, seed=3)
    assert_speaker_cv_invariants(plan, meta)
    assert [f.fold for f in plan.folds] == [1, 2, 3, 4]
    # 12 speakers (6 female, 6 male) in 4 folds: 3 speakers each, both genders in every fold.
    gender = dict(zip(meta["speaker"], meta["gender"], strict=True))
    for fold in plan.folds:
        assert len(fold.test_speakers) == 3
        assert {gender[s] for s in fold.test_speakers} == {"female", "male"}
        assert all(fold.speaker_independent for fold in plan.folds)
        # Validation speakers are whole training speakers.
        assert fold.validation.startswith("synthetic: speakers ")


def test_speaker_cv_is_deterministic_for_a_seed():
    meta, _ = load_metadata(["synthetic"], None)
    first = make_folds("speaker-cv", meta, n_folds=4, seed=7).table()
    again = make_folds("speaker-cv", meta.sample(frac=1, random_state=0), n_folds=4, seed=7).table()
    other = make_folds("speaker-cv", meta, n_folds=4, seed=8).table()
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_a_larger_validation_fraction_keeps_each_folds_test_speakers():
    # Runs with two fractions are paired on the same test clips (ROUNDS.md, thirty-third round), so the
    # fraction may only move whole speakers from training to validation.
    meta, _ = load_metadata(["synthetic"], None)
    small = make_folds("speaker-cv", meta, n_folds=4, seed=42, validation_fraction=0.2)
    large = make_folds("speaker-cv", meta, n_folds=4, seed=42, validation_fraction=0.35)
    assert_speaker_cv_invariants(large, meta)
    speaker_of = dict(zip(meta["file"], meta["speaker"], strict=True))
    for a, b in zip(small.folds, large.folds, strict=True):
        speakers = {s: {speaker_of[f] for _, f in b.files[s]} for s in ("train", "validation")}
        assert not speakers["train"] & speakers["validation"], b.run
        assert a.test_speakers == b.test_speakers and a.files["test"] == b.files["test"]
        assert set(a.files["train"]) | set(a.files["validation"]) == set(b.files["train"]) | set(
            b.files["validation"]
        )
        validation_speakers = [len({speaker_of[f] for _, f in fold.files["validation"]}) for fold in (a, b)]
        assert validation_speakers == [2, 3], a.run


def test_speaker_cv_on_full_fixture_layouts(full_meta):
    plan = make_folds("speaker-cv", full_meta, n_folds=5, seed=42)
    assert_speaker_cv_invariants(plan, full_meta)
    folds = Counter(f.corpus for f in plan.folds)
    # Up to 6 speakers: leave one speaker out (SAVEE 4, TESS 2); more: --folds.
    assert folds == {"cremad": 5, "emodb": 5, "ravdess": 5, "savee": 4, "shemo": 5, "tess": 2}
    # Folds balanced by size: CREMA-D's 5 test folds within 10 % of each other.
    sizes = [len(f.files["test"]) for f in plan.folds if f.corpus == "cremad"]
    assert max(sizes) <= 1.1 * min(sizes)
    # TESS: one actress trains, the other tests; validation cannot be speaker-disjoint, and says so.
    tess = [f for f in plan.folds if f.corpus == "tess"]
    assert [f.test_speakers for f in tess] == [("tess/OAF",), ("tess/YAF",)]
    assert all("only training speaker" in f.validation for f in tess)
    assert any("tess: 2 speakers" in note for note in plan.notes)
    # Files of the emotions outside the four default classes are counted, not silently dropped.
    assert any(note.startswith("cremad: 2542 files") for note in plan.notes)


def test_assign_speaker_folds_balances_gender_and_size():
    speakers = pd.DataFrame(
        {"files": [10] * 8 + [5] * 4, "gender": ["female", "male"] * 6},
        index=[f"s{i:02d}" for i in range(12)],
    )

    folds = assign_speaker_folds(speakers, 4, np.random.default_rng(0))
    by_fold = pd.DataFrame({"fold": folds}).join(speakers).groupby("fold")
    assert by_fold["files"].sum().tolist() == [25, 25, 25, 25]
    assert (by_fold["gender"].nunique() == 2).all()


def test_emobox_dry_folds_reproduce_emobox_test_sizes(full_meta):
    plan = make_folds("emobox", full_meta, seed=42)
    sizes = {}
    for fold in plan.folds:
        sizes.setdefault(fold.corpus, []).append(len(fold.files["test"]))
        # No validation in EmoBox: 20 % of the training files, drawn at random.
        pool = len(fold.files["train"]) + len(fold.files["validation"])
        assert abs(len(fold.files["validation"]) - 0.2 * pool) <= 7
    assert sizes == EMOBOX_TEST_SIZES
    # Every file EmoBox uses is found under its Kaggle name (CREMA-D's _X, TESS's OA_, SAVEE's folders).
    table = emobox.read_folds()
    used = Counter()
    for fold in plan.folds:
        if fold.fold == 1:
            used.update(corpus for s in ("train", "validation", "test") for corpus, _ in fold.files[s])
    assert dict(used) == table["corpus"].value_counts().to_dict()
    assert any(note.startswith("shemo: 162 files EmoBox does not use left out") for note in plan.notes)
    # Class sets are each corpus's own; EMO-DB's anxiety is EmoBox's fear.
    classes = {f.corpus: f.classes for f in plan.folds}
    assert classes["emodb"] == ("anger", "bored", "disgust", "fear", "happy", "neutral", "sadness")
    assert {f.corpus: f.mapping.get("anxiety") for f in plan.folds}["emodb"] == "fear"
    assert len(classes["ravdess"]) == 8 and len(classes["shemo"]) == 6
    # Flagged: EmoBox's CREMA-D, EMO-DB, ShEMO and TESS folds share speakers between train and test.
    independent = {f.corpus for f in plan.folds if f.speaker_independent}
    assert independent == {"ravdess", "savee"}


def test_emobox_speaker_validation_and_flat_savee(tmp_path):
    fixtures.build_download("savee", tmp_path, quirks=False, savee_flat=True)
    meta, _ = load_metadata(["savee"], tmp_path)
    plan = make_folds("emobox", meta, emobox_validation="speaker")
    assert [len(f.files["test"]) for f in plan.folds] == [120] * 4
    for fold in plan.folds:
        assert fold.speaker_independent
        assert fold.validation.startswith("savee: speakers savee/")


def test_emobox_rejects_corpora_without_folds_and_emotions():
    meta, _ = load_metadata(["synthetic"], None)
    with pytest.raises(FoldError, match="no EmoBox folds"):
        make_folds("emobox", meta)
    with pytest.raises(FoldError, match="drop --emotions"):
        make_folds("emobox", meta, emotions=["anger"])


def test_loco_and_cross_corpus(full_meta):
    meta = full_meta[full_meta["corpus"].isin(["emodb", "savee", "tess"])]
    loco = make_folds("loco", meta, seed=1)
    assert [(f.fold, f.corpus, f.train_corpora) for f in loco.folds] == [
        (1, "emodb", ("savee", "tess")),
        (2, "savee", ("emodb", "tess")),
        (3, "tess", ("emodb", "savee")),
    ]
    for fold in loco.folds:
        assert {c for c, _ in fold.files["test"]} == {fold.corpus}
        assert fold.corpus not in {c for s in ("train", "validation") for c, _ in fold.files[s]}
        assert fold.classes == ("anger", "happy", "neutral", "sadness")
    cross = make_folds("cross-corpus", meta, seed=1)
    pairs = {(f.train_corpora[0], f.corpus): f for f in cross.folds}
    assert len(pairs) == 6
    # EMO-DB has no fear or surprise: its pairs with SAVEE use the five emotions both have.
    assert pairs["savee", "emodb"].classes == ("anger", "disgust", "happy", "neutral", "sadness")
    assert pairs["savee", "tess"].classes == (
        "anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise",
    )  # fmt: skip
    assert pairs["savee", "emodb"].run == "emodb/from-savee"
    with pytest.raises(FoldError, match="at least 2 corpora"):
        make_folds("loco", meta[meta["corpus"] == "tess"])


def test_folds_table_columns(full_meta):
    savee = ["anger", "disgust", "fear", "happy", "neutral", "sadness", "surprise"]
    plan = make_folds("speaker-cv", full_meta[full_meta["corpus"] == "savee"], emotions=savee)
    table = plan.table()
    assert list(table.columns) == ["corpus", "fold", "split", "file", "run"]
    assert table.groupby(["fold", "split"]).size().unstack().loc[:, "test"].tolist() == [120] * 4


def test_the_fold_table_ships_with_the_package():
    import configparser

    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "evaluation" in config["options.packages.find"]["include"].split()
    assert config["options.package_data"]["evaluation"].strip() == "data/*.csv"
    table = emobox.read_folds()
    assert len(table) == 15535
    # The packaged copy is the shared one, where a checkout has it.
    repo = Path(__file__).resolve().parents[1]
    for shared in (repo.parent / "shared", repo.parent.parent / "shared"):
        if (shared / "corpora" / "emobox_folds.csv").is_file():
            assert emobox.FOLDS_PATH.read_bytes() == (shared / "corpora" / "emobox_folds.csv").read_bytes()
