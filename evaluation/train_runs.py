"""The benchmark's default training function: one (model, fold) run with the training library or the
openSMILE baseline.

    train_run(model, dataset_dict, run_dir, extra_args) -> {test_accuracy, test_uar, test_macro_f1,
                                                           confusion_matrix, ...}

- the neural models (`training.run_config.MODEL_KINDS`: cnn, s4, encoder, ensemble) go to `training.train`
  on the fold's `DatasetDict` (no corpus is loaded or split again), with the pass-through options parsed by
  `training.parse_args` over the model kind's recipe: `--num_train_epochs 3` sets the epochs of every
  neural run. The model, checkpoints and Trainer outputs go to `<run_dir>/model/`.
- the openSMILE baselines (`opensmile-egemaps`, `opensmile-compare` and their `-logreg` variants: their
  recipes in `evaluation.opensmile_baseline.BASELINE_MODELS`) go to `train_baseline` (seed from
  `--seed`, else the training default), which writes `model.joblib` and its own `results.json` into
  `<run_dir>/baseline/`: the run folder's `results.json` is the runner's finished-run marker, and must
  appear only when the runner writes it.

Options that choose the data or the output place (`--corpora`, `--emotions`, `--output_dir`, ...) belong to
the benchmark (its folds decide them), so they are refused in the pass-through options (`validate_args`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from .opensmile_baseline import BASELINE_MODELS

MODEL_SUBDIR = "model"
BASELINE_SUBDIR = "baseline"

# Pass-through options the benchmark decides itself (flag -> what to use instead).
BENCHMARK_OWNED: dict[str, str] = {
    "model": "--models",
    "corpora": "--corpora",
    "data_root": "--data_root",
    "emotions": "--emotions (of run_benchmark.py)",
    "merge": "the protocol's class mapping",
    "split_strategy": "--protocol",
    "test_corpora": "--protocol loco / cross-corpus",
    "download": "`python -m loaders download` before the benchmark",
    "output_dir": "--output_dir (of run_benchmark.py)",
    "overwrite_output_dir": "another --output_dir, or deleting the run folder",
    "resume_from_checkpoint": "re-running the benchmark (an unfinished run resumes from its checkpoints)",
    "push_to_hub": "pushing the chosen run's model/ folder afterwards",
    "lenient": "--lenient (of run_benchmark.py)",
    "dataset_cache_dir": "--dataset_cache_dir (of run_benchmark.py)",
}


def _model_kinds() -> tuple[str, ...]:
    from training.run_config import MODEL_KINDS

    return tuple(MODEL_KINDS)


def known_models() -> tuple[str, ...]:
    """Every model this training function trains: the library's model kinds, then the baselines."""
    return (*_model_kinds(), *BASELINE_MODELS)


def _parse(model: str, extra_args: Sequence[str], corpora: Sequence[str], output_dir: str):
    from training import parse_args

    values = {"model": model, "corpora": list(corpora), "output_dir": output_dir}
    return parse_args(list(extra_args), values=values)


def _check_owned(model: str, extra_args: Sequence[str]) -> None:
    """Refuse the options the benchmark decides: compared as parsed (so `--corp x` or `--model=s4` are
    caught too) with the values the benchmark would set."""
    corpora, output_dir = ["synthetic"], "__benchmark_run__"
    reference = _parse(model, [], corpora, output_dir)
    parsed = _parse(model, extra_args, corpora, output_dir)
    for ours, theirs in zip(reference, parsed, strict=True):
        for name, instead in BENCHMARK_OWNED.items():
            if not hasattr(ours, name):
                continue
            if getattr(ours, name) != getattr(theirs, name):
                raise ValueError(
                    f"pass-through option --{name}: the benchmark sets it for every run; use {instead}"
                )


def validate_args(extra_args: Sequence[str], models: Sequence[str] | None = None) -> None:
    """Parse the pass-through options as every neural model of `models` (default: cnn) would, before any
    data is read: an unknown option, a bad value or an option the benchmark owns is a ValueError (one
    line)."""
    from training import UsageError

    kinds = [m for m in (models or ["cnn"]) if m in _model_kinds()] or ["cnn"]
    for model in kinds:
        try:
            _check_owned(model, extra_args)
            if any(flag.startswith("--config_overrides") for flag in extra_args):
                from training.run_config import parse_config_overrides

                model_args, _, _ = _parse(model, extra_args, ["synthetic"], "__benchmark_run__")
                parse_config_overrides(model_args.config_overrides, model)
        except UsageError as err:
            raise ValueError(f"pass-through options ({model}): {err}") from err
        except SystemExit as err:  # argparse: unknown option or bad value, already printed on stderr
            raise ValueError(
                f"pass-through options {' '.join(extra_args)}: not options of run_benchmark.py nor of the "
                f"{model} training (see `python run_train.py --help`)"
            ) from err


def _metrics(test_metrics: Mapping[str, Any], confusion: Sequence[Sequence[int]]) -> dict[str, Any]:
    scalars = {k: v for k, v in test_metrics.items() if isinstance(v, int | float)}
    return {**scalars, "confusion_matrix": [list(map(int, row)) for row in confusion]}


def train_neural(
    model: str, dataset_dict: datasets.DatasetDict, run_dir: Path, extra_args: Sequence[str]
) -> dict[str, Any]:
    """`training.train` on the fold's splits; the model goes to `<run_dir>/model/`."""
    from training import train
    from training.run import FINISHED_RUN_FILES

    out = Path(run_dir) / MODEL_SUBDIR
    corpora = sorted({c for split in dataset_dict.values() for c in split.unique("corpus")})
    model_args, data_args, training_args = _parse(model, extra_args, corpora, str(out))
    if any((out / name).exists() for name in FINISHED_RUN_FILES):
        # Training finished but the runner was stopped before it wrote results.json: train again (the
        # result must come from this command's options, and the folder cannot tell whether they match).
        training_args.overwrite_output_dir = True
    result = train(model_args, data_args, training_args, dataset=dataset_dict)
    return _metrics(result.test_metrics, result.confusion_matrix)


def train_opensmile(
    model: str, dataset_dict: datasets.DatasetDict, run_dir: Path, extra_args: Sequence[str]
) -> dict[str, Any]:
    """The openSMILE baseline on the fold's splits; its files go to `<run_dir>/baseline/`."""
    from .opensmile_baseline import train_baseline

    _, _, training_args = _parse("cnn", extra_args, ["synthetic"], "__benchmark_run__")
    recipe = BASELINE_MODELS[model]
    result = train_baseline(
        dataset_dict["train"],
        dataset_dict["validation"],
        dataset_dict["test"],
        dataset_dict["train"].features["label"].names,
        feature_set=recipe.feature_set,
        classifier=recipe.classifier,
        criterion=recipe.criterion,
        seed=training_args.seed,
        run_dir=Path(run_dir) / BASELINE_SUBDIR,
    )
    metrics = {
        "test_accuracy": result["accuracy"],
        "test_uar": result["uar"],
        "test_macro_f1": result["macro_f1"],
        "validation_uar": result["validation_uar"],
        "chosen_C": result["chosen_C"],
        "test_samples": result["num_examples"],
    }
    return {**metrics, "confusion_matrix": result["confusion_matrix"]}


def train_run(
    model: str, dataset_dict: datasets.DatasetDict, run_dir: Path, extra_args: list[str]
) -> dict[str, Any]:
    """The benchmark's default training function (see the module docstring)."""
    if model in BASELINE_MODELS:
        return train_opensmile(model, dataset_dict, run_dir, extra_args)
    if model in _model_kinds():
        return train_neural(model, dataset_dict, run_dir, extra_args)
    raise ValueError(f"model {model!r}: not one of {', '.join(known_models())}")


train_run.MODELS = known_models()  # type: ignore[attr-defined]
train_run.validate_args = validate_args  # type: ignore[attr-defined]


def accepts_models(function: Any) -> bool:
    """Whether a `validate_args` takes the benchmarked models (`models=`)."""
    try:
        return "models" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
