"""The classical challenge baseline: openSMILE functionals per utterance, standardised, a linear classifier.

The evaluation suite's baseline models (`BASELINE_MODELS`: ``opensmile-egemaps``, ``opensmile-compare`` and
their ``-logreg`` variants below): the eGeMAPSv02 (88 functionals) or ComParE_2016 (6373 functionals)
feature set of the INTERSPEECH paralinguistics challenges, extracted once per clip at 16 kHz, then

    SimpleImputer (train means) -> StandardScaler (fitted on train only) -> LinearSVC(class_weight="balanced")

(`classifier="logreg"`: LogisticRegression instead), the challenge baseline recipe. The complexity C is
chosen on the validation split's UAR over `C_GRID`; ties go to the smaller C (stronger regularisation).
``opensmile-compare-logreg`` is ComParE with logistic regression and C chosen by the validation clips'
cross-entropy instead (`criterion="log_loss"`): the rule the models' refitted functionals head uses, and on
the development corpora a stronger reference than the challenge's SVM (README, leaderboard), so the
leaderboard's "best openSMILE baseline" holds the models to it too; ``opensmile-egemaps-logreg`` is the same
classifier on eGeMAPS (the issue's own table measured eGeMAPS with logistic regression). The
model that is evaluated on test is the one fitted on **train only** with the chosen C. The challenges refit
on train+devel before testing; here the neural models of the leaderboard train on train only and use
validation for model selection, so the baseline does the same and every row of the leaderboard has seen
the same training files. When the validation split is empty (e.g. TESS's two speakers under the speaker
split), C is chosen on speaker-grouped folds of train instead (`GroupKFold` by `speaker`, up to 5 folds,
UAR of the pooled out-of-fold predictions); the result says which (`tuned_on`).

openSMILE is an optional extra, never a core dependency: its licence (audEERING) allows research and
education only, not commercial use. Install it with ``pip install 'ser-toolkit[opensmile]'``; this module
imports it only when features are extracted (`require_opensmile` checks it up front).

Features are cached per clip, keyed by (feature set, openSMILE version, corpus, file, a hash of the audio
bytes), as `datasets` Arrow folders under ``<cache_dir>/opensmile/<feature set>-...``: any later call that
needs the same clips (another split strategy, another seed, the other classifier) extracts nothing. Clips too
short for openSMILE's windows get NaN functionals (counted and logged); the imputer gives them the train
means.

    from evaluation.opensmile_baseline import train_baseline
    dsd = load_corpora(["emodb"], "data", split="speaker")
    names = dsd["train"].features["label"].names
    result = train_baseline(dsd["train"], dsd["validation"], dsd["test"], names,
                            feature_set="egemaps", run_dir="runs/opensmile-egemaps")
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from loaders.audio import decode_clip
from loaders.schema import SAMPLING_RATE
from training.files import write_json_atomic
from training.metrics import classification_scores

logger = logging.getLogger(__name__)

# Short name -> (openSMILE FeatureSet member, number of functionals).
FEATURE_SETS: dict[str, tuple[str, int]] = {
    "egemaps": ("eGeMAPSv02", 88),
    "compare": ("ComParE_2016", 6373),
}
CLASSIFIERS: tuple[str, ...] = ("svm", "logreg")
# What `select_c` scores each C by: the challenges' UAR, or the cross-entropy of the predicted probabilities
# (logistic regression only), which still ranks the Cs where a few held-out speakers leave UAR tied or a clip
# or two apart.
SELECTION_CRITERIA: tuple[str, ...] = ("uar", "log_loss")


@dataclass(frozen=True)
class BaselineRecipe:
    """A leaderboard baseline: the feature set, the classifier and what chooses its C (`select_c`)."""

    feature_set: str
    classifier: str = "svm"
    criterion: str = "uar"


# Leaderboard model name -> its recipe.
BASELINE_MODELS: dict[str, BaselineRecipe] = {
    "opensmile-egemaps": BaselineRecipe("egemaps"),
    "opensmile-compare": BaselineRecipe("compare"),
    "opensmile-compare-logreg": BaselineRecipe("compare", classifier="logreg", criterion="log_loss"),
    "opensmile-egemaps-logreg": BaselineRecipe("egemaps", classifier="logreg", criterion="log_loss"),
}


def baseline_name(recipe: BaselineRecipe) -> str:
    """The leaderboard's name of `recipe` (`BASELINE_MODELS`), or one that spells it out."""
    for name, known in BASELINE_MODELS.items():
        if known == recipe:
            return name
    return f"opensmile-{recipe.feature_set} ({recipe.classifier}, C by {recipe.criterion})"


# The challenge baselines search C over powers of ten; ComParE's 6373 standardised features want small C.
C_GRID: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
MAX_GROUP_FOLDS = 5
# Bump when what is stored per clip changes, so that old caches are not read.
CACHE_VERSION = 1

INSTALL_HINT = (
    "the openSMILE baseline needs the optional 'opensmile' package; install it with "
    "pip install 'ser-toolkit[opensmile]' (openSMILE's licence allows research and education only, "
    "not commercial use)"
)

_SMILES: dict[str, object] = {}  # one openSMILE extractor per feature set and process, never pickled


def require_opensmile():
    """The `opensmile` module, or an ImportError that says how to install it and what its licence allows."""
    try:
        import opensmile
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return opensmile


def check_feature_set(feature_set: str) -> str:
    """The canonical short name (``egemaps`` / ``compare``) of a feature set or of its openSMILE name."""
    aliases = {key: key for key in FEATURE_SETS} | {
        name.lower(): key for key, (name, _) in FEATURE_SETS.items()
    }
    try:
        return aliases[str(feature_set).lower()]
    except KeyError:
        raise ValueError(
            f"feature_set: unknown {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}"
        ) from None


def feature_width(feature_set: str) -> int:
    """Number of functionals of a feature set (88 for eGeMAPSv02, 6373 for ComParE_2016)."""
    return FEATURE_SETS[check_feature_set(feature_set)][1]


def feature_names(feature_set: str) -> list[str]:
    """The names of a feature set's functionals, in the column order of `functionals` and
    `extract_functionals` (e.g. ``F0final_sma_amean``)."""
    return list(_smile(check_feature_set(feature_set)).feature_names)


def _smile(feature_set: str):
    # Created on first use in each process: Smile objects do not cross process boundaries in every version.
    if feature_set not in _SMILES:
        opensmile = require_opensmile()
        _SMILES[feature_set] = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[feature_set][0]),
            feature_level=opensmile.FeatureLevel.Functionals,
        )
    return _SMILES[feature_set]


def functionals(samples: np.ndarray, feature_set: str) -> np.ndarray:
    """openSMILE functionals (float32, one row) of one 16 kHz mono clip; NaN where the clip is too short."""
    with warnings.catch_warnings():
        # "Segment too short, filling with NaN": counted and reported once per call by extract_functionals.
        warnings.filterwarnings("ignore", message="Segment too short")
        frame = _smile(feature_set).process_signal(samples, SAMPLING_RATE)
    return frame.to_numpy(dtype=np.float32).reshape(-1)


def _audio_bytes(audio: dict) -> bytes:
    if audio.get("bytes"):
        return audio["bytes"]
    if audio.get("path"):
        return Path(audio["path"]).read_bytes()
    raise ValueError("audio value holds neither bytes nor a path")


def _clip_key(corpus: str, file: str, audio: dict) -> str:
    # The audio's own bytes are part of the key: the same file name may hold other samples (a corpus
    # regenerated with another seed, prepared at another sampling rate).
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{corpus}\0{file}\0".encode())
    digest.update(_audio_bytes(audio))
    return digest.hexdigest()


def _extract_batch(batch: dict, feature_set: str) -> dict:
    # A module-level function with plain arguments, so that worker processes can run it.
    keys = [
        _clip_key(c, f, a) for c, f, a in zip(batch["corpus"], batch["file"], batch["audio"], strict=True)
    ]
    rows = [functionals(decode_clip(audio, SAMPLING_RATE), feature_set) for audio in batch["audio"]]
    return {"key": keys, "features": rows}


def _cache_folder(cache_dir: str | os.PathLike | None, feature_set: str, version: str) -> Path:
    root = Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE)
    rate = f"{SAMPLING_RATE // 1000}k"
    return (
        root
        / "opensmile"
        / f"{FEATURE_SETS[feature_set][0]}-functionals-{rate}-opensmile{version}-v{CACHE_VERSION}"
    )


def _load_cache(folder: Path) -> datasets.Dataset | None:
    shards = (
        [datasets.load_from_disk(str(p)) for p in sorted(folder.iterdir()) if p.is_dir() and p.name[0] != "."]
        if folder.is_dir()
        else []
    )
    if not shards:
        return None
    return shards[0] if len(shards) == 1 else datasets.concatenate_datasets(shards)


def extract_functionals(
    dataset: datasets.Dataset,
    feature_set: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    num_proc: int | None = None,
) -> np.ndarray:
    """openSMILE functionals of every clip of `dataset`, in row order: float32, ``(len(dataset), width)``.

    `dataset` has the common schema's `audio` (any sampling rate: clips are decoded to 16 kHz mono),
    `corpus` and `file` columns. `feature_set` is ``egemaps`` (88 columns) or ``compare`` (6373). Clips
    already in the cache under `cache_dir` (default: the `datasets` cache) are read, not extracted; the
    others are extracted (on `num_proc` processes) and added to the cache as one new Arrow folder. Rows of
    clips too short for openSMILE are NaN (their count is logged).
    """
    feature_set = check_feature_set(feature_set)
    opensmile = require_opensmile()
    width = FEATURE_SETS[feature_set][1]
    if len(dataset) == 0:
        return np.zeros((0, width), dtype=np.float32)
    missing_columns = {"audio", "corpus", "file"} - set(dataset.column_names)
    if missing_columns:
        raise ValueError(f"dataset: no column(s) {sorted(missing_columns)}; expected the loaders' schema")
    undecoded = dataset.select_columns(["audio", "corpus", "file"]).cast_column(
        "audio", datasets.Audio(sampling_rate=None, decode=False)
    )
    keys: list[str] = []
    for batch in undecoded.iter(batch_size=256):
        keys.extend(
            _clip_key(c, f, a) for c, f, a in zip(batch["corpus"], batch["file"], batch["audio"], strict=True)
        )

    folder = _cache_folder(cache_dir, feature_set, opensmile.__version__)
    cached = _load_cache(folder)
    index = {key: i for i, key in enumerate(list(cached["key"]))} if cached is not None else {}
    todo: dict[str, int] = {}
    for row, key in enumerate(keys):
        if key not in index and key not in todo:
            todo[key] = row
    logger.info(
        "openSMILE %s: %d clip(s), %d in the cache, %d to extract",
        FEATURE_SETS[feature_set][0],
        len(keys),
        len(keys) - sum(1 for k in keys if k in todo),
        len(todo),
    )
    if todo:
        shard = _extract_shard(undecoded.select(list(todo.values())), feature_set, width, num_proc)
        name = hashlib.blake2b("\n".join(sorted(todo)).encode(), digest_size=16).hexdigest()
        _save_shard(shard, folder, name)
        cached = _load_cache(folder)
        index = {key: i for i, key in enumerate(list(cached["key"]))}
    rows = [index[key] for key in keys]
    features = cached.with_format("numpy", columns=["features"])[rows]["features"]
    features = np.asarray(features, dtype=np.float32).reshape(len(keys), width)
    too_short = int(np.isnan(features).all(axis=1).sum())
    if too_short:
        logger.warning(
            "openSMILE %s: %d of %d clip(s) too short for its analysis windows (NaN functionals)",
            FEATURE_SETS[feature_set][0],
            too_short,
            len(keys),
        )
    return features


def _extract_shard(
    clips: datasets.Dataset, feature_set: str, width: int, num_proc: int | None
) -> datasets.Dataset:
    features = datasets.Features(
        {
            "corpus": datasets.Value("string"),
            "file": datasets.Value("string"),
            "key": datasets.Value("string"),
            "features": datasets.List(datasets.Value("float32"), length=width),
        }
    )
    return clips.map(
        _extract_batch,
        batched=True,
        batch_size=16,
        fn_kwargs={"feature_set": feature_set},
        remove_columns=["audio"],
        features=features,
        keep_in_memory=True,  # written once, below, into the feature cache rather than beside the corpus
        new_fingerprint=hashlib.blake2b(
            f"{clips._fingerprint}{feature_set}".encode(), digest_size=16
        ).hexdigest(),
        num_proc=num_proc if num_proc and num_proc > 1 and len(clips) >= 4 * num_proc else None,
        desc=f"openSMILE {FEATURE_SETS[feature_set][0]}",
    )


def _save_shard(shard: datasets.Dataset, folder: Path, name: str) -> None:
    target = folder / name
    if target.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: a reader (or a concurrent run) never sees half a folder.
    partial = folder / f".{name}.{os.getpid()}.partial"
    shard.save_to_disk(str(partial))
    try:
        partial.rename(target)
    except OSError:  # another run stored the same clips first
        shutil.rmtree(partial, ignore_errors=True)


# --- the classifier ----------------------------------------------------------------------------------------


def make_pipeline(classifier: str, c: float, seed: int) -> Pipeline:
    """Imputer (NaN functionals of too-short clips -> train means), StandardScaler, linear classifier."""
    if classifier == "svm":
        model = LinearSVC(C=c, class_weight="balanced", max_iter=5000, random_state=seed)
    elif classifier == "logreg":
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    else:
        raise ValueError(f"classifier: unknown {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="mean", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("classify", model),
        ]
    )


def _fit(pipeline: Pipeline, x: np.ndarray, y: np.ndarray) -> bool:
    """Fit; returns whether the solver converged (its warning is recorded in the results, not dropped)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        pipeline.fit(x, y)
    converged = True
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            converged = False
        else:  # anything else is passed on as it came
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return converged


def _uar(predictions: np.ndarray, references: np.ndarray, label_names: Sequence[str]) -> float:
    return classification_scores(predictions, references, label_names)["uar"]


def check_criterion(criterion: str, classifier: str) -> None:
    """Refuse a C-selection `criterion` that is unknown or that `classifier` cannot give."""
    if criterion not in SELECTION_CRITERIA:
        raise ValueError(f"criterion: unknown {criterion!r}; choose one of {', '.join(SELECTION_CRITERIA)}")
    if criterion == "log_loss" and classifier != "logreg":
        raise ValueError(
            f"criterion log_loss needs probabilities: use classifier 'logreg', not {classifier!r}"
        )


def select_c(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_validation: np.ndarray,
    y_validation: np.ndarray,
    label_names: Sequence[str],
    *,
    classifier: str = "svm",
    seed: int = 42,
    speakers: Sequence[str] | None = None,
    c_grid: Sequence[float] = C_GRID,
    criterion: str = "uar",
) -> tuple[Pipeline, float, list[dict], str]:
    """Choose C by `criterion` and return (pipeline fitted on train with it, C, search table, how it was
    tuned).

    With validation examples, each C is fitted on train and scored on validation. Without, each C is
    scored on the pooled out-of-fold predictions of a GroupKFold of train by `speakers`. The test split
    never takes part. `criterion` ``uar`` keeps the C of the highest UAR, ``log_loss`` (logistic regression
    only) the C of the lowest mean cross-entropy; ties go to the smaller C. The search table lists
    ``{"C", "uar", "converged"}`` per C, and ``log_loss`` with that criterion."""
    check_criterion(criterion, classifier)
    labels = np.arange(len(label_names))
    search: list[dict] = []
    fitted: dict[float, Pipeline] = {}
    if len(y_validation):
        tuned_on = "validation"
        for c in c_grid:
            pipeline = make_pipeline(classifier, c, seed)
            converged = _fit(pipeline, x_train, y_train)
            uar = _uar(pipeline.predict(x_validation), y_validation, label_names)
            search.append({"C": float(c), "uar": uar, "converged": converged})
            if criterion == "log_loss":
                probabilities = pipeline.predict_proba(x_validation)
                search[-1]["log_loss"] = log_loss(y_validation, probabilities, labels=labels)
            fitted[c] = pipeline
    else:
        groups = np.asarray(list(speakers) if speakers is not None else [], dtype=object)
        n_speakers = len(set(groups.tolist()))
        if len(groups) != len(y_train) or n_speakers < 2:
            raise ValueError(
                "validation: empty, and train has fewer than 2 speakers to tune C on speaker-grouped folds; "
                "use a split strategy that gives a validation split"
            )
        folds = min(MAX_GROUP_FOLDS, n_speakers)
        tuned_on = f"train, {folds}-fold GroupKFold by speaker (validation split empty)"
        for c in c_grid:
            predictions = np.empty_like(y_train)
            probabilities = np.zeros((len(y_train), len(labels)))
            converged = True
            for fit_rows, held_out in GroupKFold(n_splits=folds).split(x_train, y_train, groups):
                pipeline = make_pipeline(classifier, c, seed)
                converged &= _fit(pipeline, x_train[fit_rows], y_train[fit_rows])
                predictions[held_out] = pipeline.predict(x_train[held_out])
                if criterion == "log_loss":  # columns of the classes this fold's training rows have
                    classes = pipeline.classes_
                    probabilities[np.ix_(held_out, classes)] = pipeline.predict_proba(x_train[held_out])
            search.append(
                {"C": float(c), "uar": _uar(predictions, y_train, label_names), "converged": converged}
            )
            if criterion == "log_loss":
                search[-1]["log_loss"] = log_loss(y_train, probabilities, labels=labels)
    if criterion == "log_loss":
        scores = -np.array([row["log_loss"] for row in search], dtype=float)
    else:
        scores = np.array([row["uar"] for row in search], dtype=float)
    if np.isnan(scores).all():
        raise ValueError("validation: no labelled example to score C on")
    best = search[int(np.nanargmax(scores))]["C"]  # first best: the smallest C among ties
    pipeline = fitted.get(best)
    if pipeline is None:
        pipeline = make_pipeline(classifier, best, seed)
        _fit(pipeline, x_train, y_train)
    return pipeline, best, search, tuned_on


def train_baseline(
    train: datasets.Dataset,
    validation: datasets.Dataset,
    test: datasets.Dataset,
    label_names: Sequence[str],
    feature_set: str = "egemaps",
    classifier: str = "svm",
    seed: int = 42,
    *,
    cache_dir: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    c_grid: Sequence[float] = C_GRID,
    criterion: str = "uar",
) -> dict:
    """Train the openSMILE baseline on `train`, choose C on `validation`, score it on `test`.

    The splits have the loaders' schema (`audio`, `label` over `label_names`, `corpus`, `file`,
    `speaker`). C is chosen by validation UAR over `c_grid`, or by the validation cross-entropy with
    `criterion="log_loss"` (logistic regression only; `select_c`), on speaker-grouped folds of train when
    validation is empty; the scored model is fitted on train only (see the module docstring for why).
    Returns the test metrics in the shape of `EmotionClassificationMetric` (accuracy, uar, macro_f1, recall,
    f1, support, confusion_matrix, label_names, num_examples, and `per_group` by corpus when the test split
    holds several corpora), plus ``chosen_C``, ``validation_uar``, ``c_search``, ``tuned_on``,
    ``refit_on`` and the configuration (``criterion`` among it). With `run_dir`, writes ``model.joblib``
    (the fitted sklearn Pipeline) and ``results.json`` (the returned dict) there.
    """
    feature_set = check_feature_set(feature_set)
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier: unknown {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
    if not c_grid or any(not np.isfinite(c) or c <= 0 for c in c_grid):
        raise ValueError(f"c_grid: {list(c_grid)}; give one or more positive, finite values of C")
    check_criterion(criterion, classifier)
    label_names = list(label_names)
    for split, ds in (("train", train), ("test", test)):
        if len(ds) == 0:
            raise ValueError(f"{split}: the split is empty; the baseline needs train and test examples")
    opensmile = require_opensmile()

    x, y, too_short = {}, {}, {}
    for split, ds in (("train", train), ("validation", validation), ("test", test)):
        x[split] = extract_functionals(ds, feature_set, cache_dir, num_proc=num_proc)
        y[split] = np.asarray(list(ds["label"]) if len(ds) else [], dtype=np.int64)
        too_short[split] = int(np.isnan(x[split]).all(axis=1).sum()) if len(ds) else 0
    if len(set(y["train"].tolist())) < 2:
        raise ValueError("train: fewer than 2 classes; a classifier needs at least two")

    pipeline, chosen_c, search, tuned_on = select_c(
        x["train"],
        y["train"],
        x["validation"],
        y["validation"],
        label_names,
        classifier=classifier,
        seed=seed,
        speakers=list(train["speaker"]) if "speaker" in train.column_names else None,
        c_grid=c_grid,
        criterion=criterion,
    )
    predictions = pipeline.predict(x["test"])
    result = classification_scores(predictions, y["test"], label_names)
    corpora = np.asarray(list(test["corpus"]))
    if len(set(corpora.tolist())) > 1:  # as ComputeMetrics: one corpus would only repeat the overall figures
        result["per_group"] = {
            str(corpus): classification_scores(
                predictions[corpora == corpus], y["test"][corpora == corpus], label_names
            )
            for corpus in sorted(set(corpora.tolist()))
        }
    chosen = next(row for row in search if row["C"] == chosen_c)
    if not chosen["converged"]:
        logger.warning("%s did not converge with the chosen C=%g (see c_search)", classifier, chosen_c)
    result.update(
        chosen_C=chosen_c,
        validation_uar=chosen["uar"],
        c_search=search,
        tuned_on=tuned_on,
        refit_on="train",
        model=baseline_name(BaselineRecipe(feature_set, classifier, criterion)),
        feature_set=FEATURE_SETS[feature_set][0],
        num_features=FEATURE_SETS[feature_set][1],
        classifier=classifier,
        criterion=criterion,
        seed=seed,
        opensmile_version=opensmile.__version__,
        counts={
            split: len(ds) for split, ds in (("train", train), ("validation", validation), ("test", test))
        },
        too_short=too_short,
    )
    if run_dir is not None:
        save_run(pipeline, result, run_dir)
    return result


def save_run(pipeline: Pipeline, result: dict, run_dir: str | os.PathLike) -> Path:
    """Write ``model.joblib`` (the fitted Pipeline: ``joblib.load(...).predict(functionals)``) and
    ``results.json`` into `run_dir`; return the folder."""
    import joblib

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, folder / "model.joblib")
    write_json_atomic(folder / "results.json", result)
    return folder
