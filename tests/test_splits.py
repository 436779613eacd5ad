"""Split strategies on the real corpora's metadata (manifest.csv), without any audio."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from loaders.emotions import DEFAULT_EMOTIONS
from loaders.splits import SPLITS, split_dataset

MANIFEST = Path("/work/shared/corpora/manifest.csv")
if not MANIFEST.exists():  # the copy kept in the repository
    MANIFEST = Path(__file__).resolve().parents[1] / "loaders" / "data" / "manifest.csv"

SEEDS = (0, 1, 7, 42)


def make_dataset(table: pd.DataFrame, label_names=DEFAULT_EMOTIONS, audio: bool = False) -> datasets.Dataset:
    """A corpus-schema Dataset of `table`'s metadata; with `audio`, paths to files that do not exist."""
    columns = {
        "label": [label_names.index(e) for e in table["emotion"]],
        "emotion": list(table["emotion"]),
        "corpus": list(table["corpus"]),
        "speaker": list(table["speaker"]),
        "gender": list(table["gender"]),
        "file": list(table["file"]),
    }
    features = {"label": datasets.ClassLabel(names=list(label_names))}
    features |= {name: datasets.Value("string") for name in columns if name != "label"}
    ds = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    if audio:
        paths = ["/nonexistent/" + name for name in columns["file"]]
        ds = ds.add_column("audio", paths).cast_column("audio", datasets.Audio(sampling_rate=16000))
    return ds


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    table = pd.read_csv(MANIFEST, dtype=str, keep_default_na=False)
    table = table[table["emotion"].isin(DEFAULT_EMOTIONS)].rename(columns={"path": "file"})
    table["speaker"] = table["corpus"] + "/" + table["speaker"]
    return table.reset_index(drop=True)


@pytest.fixture(scope="module")
def full(manifest) -> datasets.Dataset:
    return make_dataset(manifest)


def values(split: datasets.Dataset, column: str) -> list[str]:
    """One metadata column as a list (read as one Arrow column, not row by row)."""
    return split.select_columns([column]).to_pandas()[column].tolist()


def frame(split: datasets.Dataset) -> pd.DataFrame:
    return split.select_columns(["corpus", "speaker", "gender", "emotion", "file"]).to_pandas()


def assert_speaker_disjoint(parts: datasets.DatasetDict) -> None:
    speakers = {name: set(values(parts[name], "speaker")) for name in SPLITS}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not speakers[a] & speakers[b], f"speakers in both {a} and {b}: {speakers[a] & speakers[b]}"


@pytest.mark.parametrize("seed", SEEDS)
def test_speaker_split_keeps_every_speaker_in_one_split(full, seed):
    parts = split_dataset(full, "speaker", seed=seed)
    assert_speaker_disjoint(parts)
    assert sum(len(parts[name]) for name in SPLITS) == len(full)
    assert set().union(*(values(parts[name], "file") for name in SPLITS)) == set(values(full, "file"))


@pytest.mark.parametrize("seed", SEEDS)
def test_speaker_split_is_gender_stratified_and_near_the_fractions(full, seed):
    parts = {name: frame(split) for name, split in split_dataset(full, "speaker", seed=seed).items()}
    for corpus in ("cremad", "emodb", "ravdess", "shemo"):  # two genders, enough speakers of each
        for name in SPLITS:
            rows = parts[name][parts[name]["corpus"] == corpus]
            assert set(rows["gender"]) == {"female", "male"}, (corpus, name)
    # ~90 speakers: file shares within 2% of 70 / 20 / 10; RAVDESS (24 speakers of 60 files): within 5%.
    for corpus, tolerance in (("cremad", 0.02), ("shemo", 0.02), ("ravdess", 0.05)):
        sizes = {name: (parts[name]["corpus"] == corpus).sum() for name in SPLITS}
        total = sum(sizes.values())
        for name, target in zip(("train", "test", "validation"), (0.7, 0.2, 0.1), strict=True):
            assert abs(sizes[name] / total - target) < tolerance, (corpus, name, sizes)


def test_random_split_is_stratified_by_corpus_and_emotion(full, manifest):
    parts = {name: frame(split) for name, split in split_dataset(full, "random", seed=3).items()}
    groups = manifest.groupby(["corpus", "emotion"]).size()
    for name, share in zip(("train", "test", "validation"), (0.7, 0.2, 0.1), strict=True):
        counts = parts[name].groupby(["corpus", "emotion"]).size().reindex(groups.index, fill_value=0)
        # Largest-remainder rounding: each (corpus, emotion) group is within one file of its target.
        assert (np.abs(counts - groups * share) < 1).all(), name


@pytest.mark.parametrize("strategy", ["random", "speaker", "corpus"])
def test_split_does_not_depend_on_row_order(manifest, strategy):
    kwargs = {"test_corpora": ["emodb"]} if strategy == "corpus" else {}
    reference = split_dataset(make_dataset(manifest), strategy, seed=5, **kwargs)
    shuffled = manifest.sample(frac=1.0, random_state=123).reset_index(drop=True)
    again = split_dataset(make_dataset(shuffled), strategy, seed=5, **kwargs)
    for name in SPLITS:
        assert values(reference[name], "file") == values(again[name], "file")
        assert values(reference[name], "speaker") == values(again[name], "speaker")
    other_seed = split_dataset(make_dataset(manifest), strategy, seed=6, **kwargs)
    assert values(other_seed["train"], "file") != values(reference["train"], "file") or strategy == "corpus"


def test_a_corpus_splits_the_same_alone_or_with_others(manifest, full):
    alone = split_dataset(make_dataset(manifest[manifest["corpus"] == "ravdess"]), "speaker", seed=9)
    together = split_dataset(full, "speaker", seed=9)
    for name in SPLITS:
        ravdess = {s for s in values(together[name], "speaker") if s.startswith("ravdess/")}
        assert set(values(alone[name], "speaker")) == ravdess


def test_tess_two_speakers_train_and_test_only(manifest, caplog):
    tess = make_dataset(manifest[manifest["corpus"] == "tess"])
    with caplog.at_level(logging.WARNING, logger="loaders.splits"):
        parts = split_dataset(tess, "speaker", seed=0)
    assert len(set(values(parts["train"], "speaker"))) == 1
    assert len(set(values(parts["test"], "speaker"))) == 1
    assert len(parts["validation"]) == 0
    assert_speaker_disjoint(parts)
    assert "'tess'" in caplog.text and "validation" in caplog.text


def test_savee_four_speakers_give_every_split_one(manifest, caplog):
    savee = make_dataset(manifest[manifest["corpus"] == "savee"])
    for seed in SEEDS:
        with caplog.at_level(logging.WARNING, logger="loaders.splits"):
            parts = split_dataset(savee, "speaker", seed=seed)
        counts = {name: len(set(values(parts[name], "speaker"))) for name in SPLITS}
        assert counts == {"train": 2, "validation": 1, "test": 1}
        assert_speaker_disjoint(parts)
    assert "savee" not in caplog.text


def test_three_speakers_give_one_to_each_split(manifest):
    table = manifest[(manifest["corpus"] == "savee") & (manifest["speaker"] != "savee/DC")]
    parts = split_dataset(make_dataset(table), "speaker", seed=2)
    assert {name: len(set(values(parts[name], "speaker"))) for name in SPLITS} == dict.fromkeys(SPLITS, 1)


def test_empty_dataset_is_an_error(full):
    with pytest.raises(ValueError, match="empty dataset"):
        split_dataset(full.select([]), "random")


def test_leave_one_corpus_out(full, manifest):
    parts = split_dataset(full, "corpus", test_corpora=["ravdess", "tess"], seed=4)
    test = frame(parts["test"])
    assert set(test["corpus"]) == {"ravdess", "tess"}
    assert len(test) == manifest["corpus"].isin(["ravdess", "tess"]).sum()
    rest = pd.concat([frame(parts["train"]), frame(parts["validation"])])
    assert set(rest["corpus"]) == {"cremad", "emodb", "savee", "shemo"}
    assert_speaker_disjoint(parts)
    share = len(parts["validation"]) / len(rest)
    assert abs(share - 0.1 / 0.8) < 0.04  # train:validation keeps the 0.7 : 0.1 ratio


def test_audio_is_never_decoded(manifest, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("split_dataset decoded audio")

    monkeypatch.setattr(datasets.Audio, "decode_example", refuse)
    ds = make_dataset(manifest[manifest["corpus"] == "emodb"], audio=True)
    with pytest.raises(AssertionError, match="decoded audio"):  # the guard works
        ds[0]["audio"]
    for strategy in ("random", "speaker"):
        parts = split_dataset(ds, strategy, seed=0)
        assert sum(len(parts[name]) for name in SPLITS) == len(ds)


def test_unknown_strategy_lists_the_valid_ones(full):
    with pytest.raises(ValueError, match=r"'speakers'.*\['random', 'speaker', 'corpus'\]"):
        split_dataset(full, "speakers")


@pytest.mark.parametrize("fractions", [(0.7, 0.2, 0.2), (0.5, 0.2), (1.0, 0.0, 0.0), (0.8, -0.1, 0.3)])
def test_bad_fractions(full, fractions):
    with pytest.raises(ValueError, match="fractions"):
        split_dataset(full, "random", fractions=fractions)


def test_validation_may_be_empty(full):
    parts = split_dataset(full, "speaker", fractions=(0.8, 0.2, 0.0))
    assert len(parts["validation"]) == 0 and len(parts["test"]) > 0
    assert_speaker_disjoint(parts)


def test_class_left_empty_in_test_is_an_error(manifest):
    # One file of 'calm' cannot be both in train and test.
    table = manifest[manifest["corpus"] == "emodb"].copy()
    table.iloc[0, table.columns.get_loc("emotion")] = "calm"
    ds = make_dataset(table, label_names=(*DEFAULT_EMOTIONS, "calm"))
    with pytest.raises(ValueError, match=r"class 'calm' with no example in the test split.*--emotions"):
        split_dataset(ds, "random")


def test_class_only_in_the_held_out_corpus_is_an_error(manifest):
    table = manifest[manifest["corpus"].isin(["emodb", "savee"])].copy()
    table.loc[table["corpus"] == "savee", "emotion"] = "surprise"
    ds = make_dataset(table, label_names=(*DEFAULT_EMOTIONS, "surprise"))
    with pytest.raises(ValueError, match=r"class 'surprise' with no example in the train split"):
        split_dataset(ds, "corpus", test_corpora=["savee"])


@pytest.mark.parametrize(
    ("test_corpora", "message"),
    [
        (None, "needs test_corpora"),
        ([], "needs test_corpora"),
        (["iemocap"], r"\['iemocap'\] are not in the dataset"),
        (["cremad", "emodb", "ravdess", "savee", "shemo", "tess"], "nothing is left to train on"),
    ],
)
def test_bad_test_corpora(full, test_corpora, message):
    with pytest.raises(ValueError, match=message):
        split_dataset(full, "corpus", test_corpora=test_corpora)


def test_test_corpora_with_another_strategy_is_an_error(full):
    with pytest.raises(ValueError, match="only used by the 'corpus' strategy"):
        split_dataset(full, "speaker", test_corpora=["tess"])


def test_the_same_file_twice_is_an_error(manifest):
    table = manifest[manifest["corpus"] == "emodb"]
    ds = make_dataset(pd.concat([table, table.iloc[:2]]))
    with pytest.raises(ValueError, match="de-duplicate"):
        split_dataset(ds, "random")


def test_missing_metadata_column_is_named(full):
    with pytest.raises(ValueError, match=r"\['speaker'\]"):
        split_dataset(full.remove_columns("speaker"), "speaker")
