"""The openSMILE baseline: feature widths, the per-clip feature cache, C chosen on validation only, the
scaler fitted on train only, and a clear win over chance on a separable toy corpus."""

from __future__ import annotations

import json
import logging
import sys

import datasets
import joblib
import numpy as np
import pytest

pytest.importorskip("opensmile")

from evaluation import opensmile_baseline as ob  # noqa: E402
from loaders.audio import encode_wav  # noqa: E402

SR = 16_000
TOY_LABELS = ["anger", "happy", "sadness"]
TOY_PITCH = {0: 220.0, 1: 330.0, 2: 110.0}  # Hz per class: an easy, separable toy task
SCHEMA = datasets.Features(
    {
        "audio": datasets.Audio(sampling_rate=SR),
        "label": datasets.ClassLabel(names=TOY_LABELS),
        "corpus": datasets.Value("string"),
        "speaker": datasets.Value("string"),
        "file": datasets.Value("string"),
    }
)


def tone(pitch: float, seconds: float, seed: int, level: float = 0.1) -> np.ndarray:
    """A buzzy harmonic tone with vibrato and a little noise (openSMILE finds a pitch in it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 6))
    return (level * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def toy_dataset(
    speakers: list[int], reps: int = 2, seconds: float = 0.5, corpus: str = "toy"
) -> datasets.Dataset:
    rows = {name: [] for name in SCHEMA}
    for s in speakers:
        for label, pitch in TOY_PITCH.items():
            for r in range(reps):
                seed = 1000 * s + 10 * label + r
                samples = tone(pitch * (1 + 0.04 * (s - 2)), seconds, seed, level=0.05 + 0.02 * r)
                rows["audio"].append({"bytes": encode_wav(samples, SR), "path": None})
                rows["label"].append(label)
                rows["corpus"].append(corpus)
                rows["speaker"].append(f"{corpus}/S{s}")
                rows["file"].append(f"S{s}/{TOY_LABELS[label]}_{r}.wav")
    return datasets.Dataset.from_dict(rows, features=SCHEMA)


@pytest.fixture(scope="module")
def toy():
    return {"train": toy_dataset([0, 1, 2, 3]), "validation": toy_dataset([4]), "test": toy_dataset([5])}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("opensmile-cache")


@pytest.fixture
def count_extractions(monkeypatch):
    calls = []
    real = ob.functionals

    def counting(samples, feature_set):
        calls.append(feature_set)
        return real(samples, feature_set)

    monkeypatch.setattr(ob, "functionals", counting)
    return calls


# --- features ----------------------------------------------------------------------------------------------


def test_feature_widths(toy, shared_cache):
    egemaps = ob.extract_functionals(toy["train"], "egemaps", shared_cache)
    assert egemaps.shape == (len(toy["train"]), 88) and egemaps.dtype == np.float32
    assert np.isfinite(egemaps).all()
    # ComParE is slow-ish: two clips.
    compare = ob.extract_functionals(toy["test"].select([0, 2]), "ComParE_2016", shared_cache)
    assert compare.shape == (2, 6373) and np.isfinite(compare).all()
    assert ob.feature_width("eGeMAPSv02") == 88 and ob.feature_width("compare") == 6373
    # Different pitches give different F0 functionals (the first eGeMAPS column is the F0 mean).
    by_class = {c: egemaps[np.asarray(toy["train"]["label"]) == c, 0].mean() for c in TOY_PITCH}
    assert by_class[2] < by_class[0] < by_class[1]


def test_cache_reuses_every_clip_across_calls_and_subsets(toy, tmp_path, count_extractions):
    clips = toy["test"]
    first = ob.extract_functionals(clips, "egemaps", tmp_path)
    assert len(count_extractions) == len(clips)
    assert any((tmp_path / "opensmile").iterdir())

    again = ob.extract_functionals(clips, "egemaps", tmp_path)
    assert len(count_extractions) == len(clips)  # nothing extracted the second time
    np.testing.assert_array_equal(again, first)

    # Another split of the same clips (other rows, other order) is read from the same cache.
    subset = ob.extract_functionals(clips.select([4, 1]), "egemaps", tmp_path)
    assert len(count_extractions) == len(clips)
    np.testing.assert_array_equal(subset, first[[4, 1]])

    # Same file name, other samples: the audio is part of the key, so that one clip is extracted again.
    changed = clips.map(
        lambda row, i: (
            {"audio": {"bytes": encode_wav(tone(500.0, 0.5, 7), SR), "path": None}} if i == 0 else {}
        ),
        with_indices=True,
        features=SCHEMA,
    )
    redone = ob.extract_functionals(changed, "egemaps", tmp_path)
    assert len(count_extractions) == len(clips) + 1
    np.testing.assert_array_equal(redone[1:], first[1:])
    assert not np.array_equal(redone[0], first[0])

    # The other feature set has its own cache.
    ob.extract_functionals(clips.select([0]), "compare", tmp_path)
    assert count_extractions[-1] == "compare" and len(count_extractions) == len(clips) + 2


def test_too_short_clip_is_nan_and_counted(tmp_path, caplog):
    rows = {
        "audio": [{"bytes": encode_wav(np.zeros(50, np.float32), SR), "path": None}],
        "label": [0],
        "corpus": ["toy"],
        "speaker": ["toy/S0"],
        "file": ["short.wav"],
    }
    with caplog.at_level(logging.WARNING, logger=ob.__name__):
        features = ob.extract_functionals(
            datasets.Dataset.from_dict(rows, features=SCHEMA), "egemaps", tmp_path
        )
    assert features.shape == (1, 88) and np.isnan(features).all()
    assert "1 of 1 clip(s) too short" in caplog.text


def test_missing_opensmile_names_the_extra_and_the_licence(monkeypatch, toy, tmp_path):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # `import opensmile` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'ser-toolkit\[opensmile\]'.*not commercial use"):
        ob.extract_functionals(toy["test"], "egemaps", tmp_path)
    with pytest.raises(ImportError, match="research and education"):
        ob.train_baseline(toy["train"], toy["validation"], toy["test"], TOY_LABELS, cache_dir=tmp_path)


# --- the classifier on real features -----------------------------------------------------------------------


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_baseline_beats_chance_and_saves_the_run(toy, shared_cache, tmp_path, classifier):
    result = ob.train_baseline(
        toy["train"],
        toy["validation"],
        toy["test"],
        TOY_LABELS,
        feature_set="egemaps",
        classifier=classifier,
        seed=0,
        cache_dir=shared_cache,
        run_dir=tmp_path / "run",
    )
    assert result["uar"] >= 0.9 and result["accuracy"] >= 0.9  # chance: 1/3
    assert {"accuracy", "uar", "macro_f1", "recall", "f1", "support", "confusion_matrix"} <= set(result)
    assert result["chosen_C"] in ob.C_GRID and result["tuned_on"] == "validation"
    assert result["refit_on"] == "train" and result["classifier"] == classifier
    assert result["counts"] == {"train": 24, "validation": 6, "test": 6}
    assert result["support"] == {"anger": 2, "happy": 2, "sadness": 2}

    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["uar"] == result["uar"] and saved["chosen_C"] == result["chosen_C"]
    pipeline = joblib.load(tmp_path / "run" / "model.joblib")
    test_x = ob.extract_functionals(toy["test"], "egemaps", shared_cache)
    predictions = pipeline.predict(test_x)
    accuracy = float(np.mean(predictions == np.asarray(toy["test"]["label"])))
    assert accuracy == pytest.approx(result["accuracy"])


def test_per_corpus_figures_when_test_holds_two_corpora(toy, shared_cache):
    two = datasets.concatenate_datasets([toy["test"], toy_dataset([5], corpus="other")])
    result = ob.train_baseline(toy["train"], toy["validation"], two, TOY_LABELS, cache_dir=shared_cache)
    assert set(result["per_group"]) == {"other", "toy"}
    assert result["per_group"]["toy"]["num_examples"] == 6


# --- the classifier on given features (the tuning protocol, fast) -----------------------------------------


WIDTH = 12


def feature_splits(seed: int = 0, shift: float = 0.0) -> dict[str, datasets.Dataset]:
    """Overlapping Gaussian classes (UAR depends on C), features in an `x` column; `shift` moves the
    validation and test features away from train."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, WIDTH)) * 0.6
    splits = {}
    for split, (n, speakers) in {"train": (90, 6), "validation": (45, 2), "test": (45, 2)}.items():
        labels = np.arange(n) % 3
        x = centres[labels] + rng.normal(size=(n, WIDTH)) + (shift if split != "train" else 0.0)
        splits[split] = datasets.Dataset.from_dict(
            {
                "x": x.tolist(),
                "label": labels.tolist(),
                "corpus": ["toy"] * n,
                "speaker": [f"{split}/S{i % speakers}" for i in range(n)],
                "file": [f"{split}/{i}.wav" for i in range(n)],
            }
        )
    return splits


@pytest.fixture
def given_features(monkeypatch):
    """extract_functionals reads the `x` column instead of running openSMILE."""
    calls = []

    def fake(dataset, feature_set, cache_dir=None, *, num_proc=None):
        calls.append(len(dataset))
        return np.asarray(dataset["x"][:], dtype=np.float32).reshape(len(dataset), WIDTH)

    monkeypatch.setattr(ob, "extract_functionals", fake)
    return calls


def relabel(ds: datasets.Dataset, seed: int) -> datasets.Dataset:
    labels = np.random.default_rng(seed).permutation(np.asarray(ds["label"]))
    return ds.remove_columns("label").add_column("label", labels.tolist())


def test_c_is_chosen_on_validation_never_on_test(given_features):
    splits = feature_splits()
    base = ob.train_baseline(splits["train"], splits["validation"], splits["test"], TOY_LABELS, seed=0)
    uars = [row["uar"] for row in base["c_search"]]
    assert len(set(uars)) > 1  # the grid matters on this data, so the protocol below is a real check
    assert base["validation_uar"] == max(uars)

    shuffled_test = ob.train_baseline(
        splits["train"], splits["validation"], relabel(splits["test"], 1), TOY_LABELS, seed=0
    )
    assert shuffled_test["c_search"] == base["c_search"] and shuffled_test["chosen_C"] == base["chosen_C"]
    assert shuffled_test["confusion_matrix"] != base["confusion_matrix"]  # the test labels were used to score

    shuffled_validation = ob.train_baseline(
        splits["train"], relabel(splits["validation"], 1), splits["test"], TOY_LABELS, seed=0
    )
    assert [row["uar"] for row in shuffled_validation["c_search"]] != uars


def test_scaler_is_fitted_on_train_only(given_features, tmp_path):
    splits = feature_splits(shift=5.0)
    ob.train_baseline(splits["train"], splits["validation"], splits["test"], TOY_LABELS, run_dir=tmp_path)
    scaler = joblib.load(tmp_path / "model.joblib").named_steps["scale"]
    train_x = np.asarray(splits["train"]["x"][:])
    np.testing.assert_allclose(scaler.mean_, train_x.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(scaler.scale_, train_x.std(axis=0), rtol=1e-4)


def test_empty_validation_tunes_on_speaker_grouped_folds(given_features, monkeypatch):
    folds = []

    class RecordingGroupKFold(ob.GroupKFold):
        def split(self, x, y=None, groups=None):
            for fit_rows, held_out in super().split(x, y, groups):
                folds.append((set(groups[fit_rows].tolist()), set(groups[held_out].tolist())))
                yield fit_rows, held_out

    monkeypatch.setattr(ob, "GroupKFold", RecordingGroupKFold)
    splits = feature_splits()
    empty = splits["validation"].select([])
    result = ob.train_baseline(splits["train"], empty, splits["test"], TOY_LABELS)
    assert "GroupKFold by speaker" in result["tuned_on"] and result["chosen_C"] in ob.C_GRID
    assert len(folds) == 5 * len(ob.C_GRID)
    assert all(fit.isdisjoint(held_out) for fit, held_out in folds)  # no speaker on both sides of a fold
    assert result["counts"]["validation"] == 0


def separable_arrays(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(features, labels) per split of three classes far apart: every C of the grid but the smallest few
    separates the validation clips, so UAR ties while the cross-entropy still falls with C."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, WIDTH)) * 3.0
    arrays = {}
    for split, n in (("train", 60), ("validation", 30)):
        labels = np.arange(n) % 3
        arrays[split] = (centres[labels] + rng.normal(size=(n, WIDTH)), labels)
    return arrays


def test_log_loss_keeps_the_c_of_the_lowest_validation_cross_entropy():
    """`criterion="log_loss"`: each C is scored by the validation clips' mean cross-entropy and the lowest
    kept, where UAR keeps the smallest of the Cs it ties on."""
    from sklearn.metrics import log_loss

    (x_train, y_train), (x_validation, y_validation) = separable_arrays().values()
    args = (x_train, y_train, x_validation, y_validation, TOY_LABELS)
    _, by_uar, uar_search, _ = ob.select_c(*args, classifier="logreg")
    pipeline, by_log_loss, search, tuned_on = ob.select_c(*args, classifier="logreg", criterion="log_loss")
    expected = []
    for c in ob.C_GRID:
        fitted = ob.make_pipeline("logreg", c, 42).fit(x_train, y_train)
        expected.append(log_loss(y_validation, fitted.predict_proba(x_validation), labels=[0, 1, 2]))
    np.testing.assert_allclose([row["log_loss"] for row in search], expected, rtol=1e-9)
    assert by_log_loss == ob.C_GRID[int(np.argmin(expected))] and tuned_on == "validation"
    assert [row["uar"] for row in search] == [row["uar"] for row in uar_search]
    assert sum(row["uar"] == 1.0 for row in uar_search) > 1 and by_log_loss != by_uar  # the criteria differ
    assert pipeline.named_steps["classify"].C == by_log_loss


def test_the_logistic_regression_baseline_chooses_c_by_cross_entropy(given_features, tmp_path):
    """`opensmile-compare-logreg`'s recipe through `train_baseline`: the C of the lowest validation
    cross-entropy, recorded with the criterion and under the leaderboard's name."""
    splits = feature_splits()
    recipe = ob.BASELINE_MODELS["opensmile-compare-logreg"]
    result = ob.train_baseline(
        splits["train"],
        splits["validation"],
        splits["test"],
        TOY_LABELS,
        feature_set=recipe.feature_set,
        classifier=recipe.classifier,
        criterion=recipe.criterion,
        run_dir=tmp_path,
    )
    losses = [row["log_loss"] for row in result["c_search"]]
    assert len(set(losses)) == len(losses)
    assert result["chosen_C"] == ob.C_GRID[int(np.argmin(losses))]
    assert (result["model"], result["classifier"], result["criterion"]) == (
        "opensmile-compare-logreg",
        "logreg",
        "log_loss",
    )
    assert json.loads((tmp_path / "results.json").read_text())["criterion"] == "log_loss"
    svm = ob.train_baseline(splits["train"], splits["validation"], splits["test"], TOY_LABELS)
    assert (svm["model"], svm["criterion"]) == ("opensmile-egemaps", "uar")


def test_log_loss_on_speaker_grouped_folds_of_train():
    """Without validation clips, the cross-entropy of the pooled out-of-fold probabilities scores each C."""
    (x_train, y_train), _ = separable_arrays().values()
    speakers = [f"S{i % 6}" for i in range(len(y_train))]
    empty = (np.zeros((0, WIDTH)), np.zeros(0, dtype=int))
    _, c, search, tuned_on = ob.select_c(
        x_train, y_train, *empty, TOY_LABELS, classifier="logreg", speakers=speakers, criterion="log_loss"
    )
    assert "GroupKFold by speaker" in tuned_on
    losses = [row["log_loss"] for row in search]
    assert len(set(losses)) == len(losses) and c == ob.C_GRID[int(np.argmin(losses))]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classifier": "svm", "criterion": "log_loss"}, "criterion log_loss needs probabilities: use"),
        ({"classifier": "logreg", "criterion": "f1"}, "criterion: unknown 'f1'; choose one of uar, log_loss"),
    ],
)
def test_a_criterion_the_classifier_cannot_give_is_refused(kwargs, message):
    (x_train, y_train), (x_validation, y_validation) = separable_arrays().values()
    with pytest.raises(ValueError, match=message):
        ob.select_c(x_train, y_train, x_validation, y_validation, TOY_LABELS, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_set": "mfcc"}, "feature_set: unknown 'mfcc'"),
        ({"classifier": "rbf"}, "classifier: unknown 'rbf'"),
        ({"c_grid": [0.1, -1.0]}, "c_grid"),
        ({"criterion": "log_loss"}, "criterion log_loss needs probabilities: use classifier 'logreg'"),
        ({"classifier": "logreg", "criterion": "f1"}, "criterion: unknown 'f1'"),
    ],
)
def test_bad_arguments_fail_before_any_extraction(given_features, kwargs, message):
    splits = feature_splits()
    with pytest.raises(ValueError, match=message):
        ob.train_baseline(splits["train"], splits["validation"], splits["test"], TOY_LABELS, **kwargs)
    assert given_features == []


def test_a_fit_that_does_not_converge_is_recorded_not_hidden():
    splits = feature_splits()
    x, y = np.asarray(splits["train"]["x"][:]), np.asarray(splits["train"]["label"])
    assert ob._fit(ob.make_pipeline("svm", 1.0, 0), x, y) is True
    starved = ob.make_pipeline("svm", 10.0, 0).set_params(classify__max_iter=1)
    assert ob._fit(starved, x, y) is False
