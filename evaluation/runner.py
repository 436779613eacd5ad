"""The benchmark's run loop: every (model, fold) once, resumable, shardable by fold.

A run is one model trained and tested on one `Fold`. It lives in `<output_dir>/runs/<model>/<fold.run>/`
(e.g. `runs/cnn/emodb/fold-3/`) and holds:

- `run_args.json`: the resolved arguments (model, fold, classes, split sizes, pass-through options), written
  before training;
- whatever the training function writes there (checkpoints, model, figures);
- `confusion_matrix.json` (when the training function returns one) and `results.json`, written last and
  atomically (temporary file, then rename): a run folder with `results.json` is finished and is never run
  again. A kill therefore loses at most the run in progress; its folder is left for the training function
  to resume from its checkpoints.

`results.json` records a fingerprint of the run's data (files per split, classes) and options: a folder
finished under other folds or options (another seed, another `--num_train_epochs`) is an error, not a
silently reused result.

The training function is pluggable: `train_fn(model, dataset_dict, run_dir, extra_args) -> metrics`, with
`dataset_dict` the run's `DatasetDict(train, validation, test)` (`label` over `fold.classes`), `run_dir` the
run folder and `extra_args` the options the benchmark passes through unparsed (`--num_train_epochs 3`).
It returns at least `test_accuracy`, `test_uar` and `test_macro_f1`; optionally `confusion_matrix` (rows
true class, columns predicted, in `fold.classes` order). A `validate_args(extra_args)` attribute on it, if
present, is called before anything is loaded or trained, to reject bad options early.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from training.files import write_json_atomic

from .folds import SPLITS, Fold, FoldPlan
from .reports import confusion_matrix_cell

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
ARGS_FILE = "run_args.json"
CONFUSION_FILE = "confusion_matrix.json"
METRIC_KEYS: tuple[str, ...] = ("test_accuracy", "test_uar", "test_macro_f1")

TrainFn = Callable[[str, datasets.DatasetDict, Path, list[str]], Mapping[str, Any]]
LoadFn = Callable[[str], datasets.Dataset]


class RunError(RuntimeError):
    """A run cannot be made or reused (reported in one line)."""


def train_not_available(
    model: str, dataset_dict: datasets.DatasetDict, run_dir: Path, extra_args: list[str]
) -> Mapping[str, Any]:
    """The default training function until the training library provides one."""
    raise NotImplementedError("training runs land with the training library")


def resolve_train_fn(spec: str) -> TrainFn:
    """`module:function` -> the function (a plug-in training function, e.g. `mypackage.train:train_one`)."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise RunError(f"--train_fn {spec!r} is not of the form module:function (e.g. mypkg.train:train_one)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RunError(
            f"--train_fn {spec!r}: cannot import {module_name!r} ({err}); check PYTHONPATH"
        ) from err
    function = getattr(module, name, None)
    if not callable(function):
        raise RunError(f"--train_fn {spec!r}: {module_name} has no function {name!r}")
    return function


@dataclass(frozen=True)
class Run:
    model: str
    fold: Fold

    @property
    def rel_dir(self) -> str:
        return f"runs/{self.model}/{self.fold.run}"

    def fingerprint(self, extra_args: Sequence[str]) -> str:
        """Hash of what makes the run's result: model, classes, files of each split, pass-through options."""
        key = {
            "model": self.model,
            "protocol": self.fold.protocol,
            "classes": list(self.fold.classes),
            "mapping": sorted(self.fold.mapping.items()),
            "files": {split: self.fold.files[split] for split in SPLITS},
            "extra_args": list(extra_args),
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def plan_runs(models: Sequence[str], plan: FoldPlan, only_fold: int | None = None) -> list[Run]:
    """The runs of the benchmark, fold by fold (every model on a fold before the next fold); with
    `only_fold`, those of fold number `only_fold` only (a shard)."""
    return [
        Run(model, fold)
        for fold in plan.folds
        if only_fold is None or fold.fold == only_fold
        for model in models
    ]


def run_row(
    run: Run, metrics: Mapping[str, Any], confusion: Sequence[Sequence[int]] | None = None
) -> dict[str, Any]:
    """The runs.csv row of a finished run (`run_dir` relative to the output folder). The test confusion
    matrix, where the training function gave one, is in the row as JSON (rows true class, columns predicted,
    in the order of `classes`), so that reports made from runs files alone, with the run folders on another
    machine or deleted, still draw it."""
    fold = run.fold
    return {
        "model": run.model,
        "corpus": fold.corpus,
        "protocol": fold.protocol,
        "fold": fold.fold,
        "test_speakers": " ".join(fold.test_speakers),
        **{key: float(metrics[key]) for key in METRIC_KEYS},
        "run_dir": run.rel_dir,
        "train_corpora": " ".join(fold.train_corpora),
        "classes": " ".join(fold.classes),
        "speaker_independent": fold.speaker_independent,
        "confusion_matrix": confusion_matrix_cell(confusion),
    }


def finished_result(run: Run, output_dir: Path, extra_args: Sequence[str]) -> dict[str, Any] | None:
    """The stored result of a finished run, None if the run is not finished; RunError if it was finished
    under other data or options."""
    path = output_dir / run.rel_dir / RESULTS_FILE
    if not path.is_file():
        return None
    with open(path) as f:
        result = json.load(f)
    if result.get("fingerprint") != run.fingerprint(extra_args):
        raise RunError(
            f"{path} was made with other folds or options than this command (seed, corpora, emotions or "
            "pass-through options changed); use another --output_dir, or delete that run folder to redo it"
        )
    return result


def build_dataset_dict(fold: Fold, load: LoadFn) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """(the fold's DatasetDict, split -> files of the fold missing from the loaded data).

    `load(corpus)` returns a whole corpus (`loaders.load_corpus`); rows are relabelled over `fold.classes`
    (`loaders.loading.select_emotions`) and selected by (corpus, file). Files the loader did not give (an
    undecodable file skipped in lenient mode) are counted, not silently dropped.
    """
    from loaders.loading import select_emotions

    splits, missing = {}, {}
    for split in SPLITS:
        wanted: dict[str, set[str]] = {}
        for corpus, file in fold.files[split]:
            wanted.setdefault(corpus, set()).add(file)
        parts = []
        found = 0
        for corpus in sorted(wanted):
            data = select_emotions(load(corpus), list(fold.classes), fold.mapping)
            rows = [i for i, file in enumerate(data["file"]) if file in wanted[corpus]]
            found += len(rows)
            parts.append(data.select(rows))
        missing[split] = len(fold.files[split]) - found
        if parts:
            splits[split] = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        else:  # an empty split keeps the schema of the others
            splits[split] = None
    template = next(ds for ds in splits.values() if ds is not None)
    for split, ds in splits.items():
        if ds is None:
            splits[split] = template.select([])
    return datasets.DatasetDict(splits), missing


def execute(
    runs: Sequence[Run],
    output_dir: str | os.PathLike,
    train_fn: TrainFn,
    load: LoadFn,
    *,
    extra_args: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    on_finished: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Run every run that is not finished yet; return (runs.csv rows of all `runs`, runs trained now).

    Finished runs are checked first (all of them, before any training: a stale folder stops the command
    at once). `on_finished(rows)` is called after each newly finished run with the rows finished so far,
    so runs.csv is always up to date when a kill comes.
    """
    output_dir = Path(output_dir)
    done: dict[str, dict[str, Any]] = {}
    for run in runs:
        result = finished_result(run, output_dir, extra_args)
        if result is not None:
            done[run.rel_dir] = result["row"]
    if done:
        logger.info("%d of %d runs already finished: skipped", len(done), len(runs))
    trained = 0
    for i, run in enumerate(runs, start=1):
        if run.rel_dir in done:
            continue
        run_dir = output_dir / run.rel_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        logger.info("run %d/%d: %s on %s (%s)", i, len(runs), run.model, run.fold.run, run.fold.protocol)
        dataset_dict, missing = build_dataset_dict(run.fold, load)
        if any(missing.values()):
            logger.warning("%s: files of the fold missing from the loaded data: %s", run.rel_dir, missing)
        write_json_atomic(
            run_dir / ARGS_FILE,
            {
                "model": run.model,
                "fold": run.fold.to_dict(),
                "missing_files": missing,
                "extra_args": list(extra_args),
                "settings": dict(settings or {}),
            },
        )
        metrics = dict(train_fn(run.model, dataset_dict, run_dir, list(extra_args)))
        absent = [key for key in METRIC_KEYS if key not in metrics]
        if absent:
            raise RunError(
                f"{run.rel_dir}: the training function returned no {absent} (got {sorted(metrics)})"
            )
        confusion = metrics.pop("confusion_matrix", None)
        if confusion is not None:
            confusion = [[int(v) for v in row] for row in confusion]
            write_json_atomic(
                run_dir / CONFUSION_FILE, {"classes": list(run.fold.classes), "matrix": confusion}
            )
        row = run_row(run, metrics, confusion)
        clean = {k: v for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))}
        write_json_atomic(
            run_dir / RESULTS_FILE,
            {"fingerprint": run.fingerprint(extra_args), "row": row, "metrics": clean},
        )
        done[run.rel_dir] = row
        trained += 1
        if on_finished is not None:
            on_finished([done[r.rel_dir] for r in runs if r.rel_dir in done])
    return [done[r.rel_dir] for r in runs], trained


def corpus_loader(
    data_root: str | os.PathLike | None,
    *,
    lenient: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> LoadFn:
    """`load(corpus)`: `loaders.load_corpus` at 16 kHz, each corpus prepared once and kept (lazily: a
    re-run whose runs are all finished loads nothing)."""
    loaded: dict[str, datasets.Dataset] = {}

    def load(corpus: str) -> datasets.Dataset:
        if corpus not in loaded:
            from loaders.loading import load_corpus
            from loaders.registry import get_builder_class

            folder = data_root if get_builder_class(corpus).NEEDS_DATA_DIR else None
            loaded[corpus] = load_corpus(
                corpus, folder, lenient=lenient, cache_dir=cache_dir, num_proc=num_proc
            )
        return loaded[corpus]

    return load
