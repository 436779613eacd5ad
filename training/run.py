"""`train(model_args, data_args, training_args) -> TrainResult`: one training run, as a library call.

Everything a run does, in order: check the arguments (before anything is prepared or written), take the
output folder's lock, decide whether to resume, write `run_args.json`, prepare the data, build the model,
train, evaluate on validation and test, write the results, the confusion matrix and the model card. Called
by run_train.py, the evaluation suite and the tests, in-process and any number of times: it changes nothing
of the caller's (the arguments are copied, no logging handler is added) and seeds every run from `--seed`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from transformers import set_seed

from loaders.emotions import parse_merge, resolve_emotions
from loaders.loading import load_corpora
from loaders.registry import CORPORA
from loaders.schema import SAMPLING_RATE
from modeling import feature_extractor_for

from .arguments import (
    DataTrainingArguments,
    ModelArguments,
    SERTrainingArguments,
    arguments_dict,
    check_arguments,
    non_default_arguments,
    resolve_model_kind,
)
from .calibration import (
    HEAD_C_CRITERION,
    BranchPredictions,
    calibrate_branch_weights,
    correct_class_prior,
    gate_fitted_heads,
    has_branches,
    network_output_layer,
    predict_branches,
    refit_functionals_head,
)
from .data import AudioCollator, class_weights, prepare_model_inputs
from .ensemble import assemble, check_ensemble_options, ensemble_trainer, member_train_metrics, train_members
from .files import write_json_atomic
from .model_card import TrainingSummary, corpus_info, render_model_card
from .plots import plot_confusion_matrix
from .run_config import (
    RUN_SETUP_FILE,
    OutputDirLock,
    UsageError,
    build_model,
    check_model_options,
    checkpoint_mismatches,
    checkpoint_problem,
    find_corpora,
    last_complete_checkpoint,
    min_clip_samples,
    parse_config_overrides,
    run_setup,
    split_counts,
    streaming_overrides,
)
from .trainer import (
    ComputeMetrics,
    PlateauAwareEarlyStopping,
    SERTrainer,
    WeightedCrossEntropy,
    chance_uar_bound,
    detailed_metrics,
    predict_with_details,
)

logger = logging.getLogger(__name__)

RUN_ARGS_FILE = "run_args.json"
FINISHED_RUN_FILES = ("all_results.json", "test_results.json", "model.safetensors")


@dataclass
class TrainResult:
    """What a run produced. The metrics are those of `<split>_results.json` (keys prefixed `train_`, `eval_`,
    `test_`; per corpus `test_corpus_<name>_uar` etc.); the details are the nested metric results (per class,
    per corpus, confusion matrices, rows = true class)."""

    output_dir: str
    model_kind: str
    corpora: list[str]
    label_names: list[str]
    train_metrics: dict[str, float]
    test_metrics: dict[str, float]
    test_details: dict
    eval_metrics: dict[str, float] = field(default_factory=dict)  # empty without a validation split
    eval_details: dict | None = None
    counts: dict = field(default_factory=dict)  # split -> corpus -> emotion -> files
    dropped_too_short: dict[str, int] = field(default_factory=dict)
    run_args: dict = field(default_factory=dict)  # as written to run_args.json
    # The model is no better than chance (see `learning_check`); also in all_results.json and the card.
    did_not_learn: bool = False
    did_not_learn_reason: str | None = None
    # Its network did not learn though the model did (see `network_learning_check`); also in all_results.json
    # and the card.
    network_did_not_learn: bool = False
    network_did_not_learn_reason: str | None = None

    @property
    def confusion_matrix(self) -> list[list[int]]:
        """The test set's confusion matrix (rows = true class, columns = predicted class)."""
        return self.test_details["confusion_matrix"]


def default_output_dir(setup: dict, streaming: bool) -> str:
    """outputs/<model>-<corpora>-<split>-<emotions>[-merge-...]: runs that differ in what they learn do not
    share a folder (and so never resume from each other's checkpoints)."""
    parts = [setup["model"] + ("-streaming" if streaming else ""), "+".join(setup["corpora"])]
    split = setup["split_strategy"]
    if setup["test_corpora"]:
        split += "-test_" + "+".join(setup["test_corpora"])
    parts += [split, "+".join(setup["emotions"])]
    if setup["merge"]:
        parts.append(
            "merge_" + "+".join(f"{source}_as_{target}" for source, target in setup["merge"].items())
        )
    return os.path.join("outputs", "-".join(parts))


def check_output_dir(training_args: SERTrainingArguments, setup: dict) -> str | None:
    """Refuse a finished run unless overwriting; returns the checkpoint to resume from, if any.

    An explicit --resume_from_checkpoint must be complete; otherwise the newest complete checkpoint-N in
    the output folder is used (newer ones cut off by a kill are skipped, with a warning). Either way the
    checkpoint must have been trained for the same model kind, emotions, corpora and split.
    """
    out = Path(training_args.output_dir)
    explicit = training_args.resume_from_checkpoint
    if explicit is not None and explicit.lower() == "true":
        explicit = None  # the Trainer's "resume from the last checkpoint": found below, checked the same way
    elif explicit is not None:
        if not os.path.isdir(explicit):
            raise UsageError(
                f"--resume_from_checkpoint {explicit}: no such folder; give a checkpoint-N folder of an "
                "earlier run"
            )
        problem = checkpoint_problem(explicit)
        if problem:
            parent = os.path.dirname(os.path.abspath(explicit))
            complete, _ = last_complete_checkpoint(parent)
            hint = f"resume from {complete} instead" if complete else "start afresh without it"
            raise UsageError(
                f"--resume_from_checkpoint {explicit}: incomplete checkpoint ({problem}); {hint}"
            )
    if out.is_dir():
        finished = [name for name in FINISHED_RUN_FILES if (out / name).exists()]
        if finished and not training_args.overwrite_output_dir:
            raise UsageError(
                f"--output_dir {out} already holds a finished run ({', '.join(finished)}). Choose another "
                "--output_dir, or pass --overwrite_output_dir to train again into it (its results are "
                "replaced)."
            )
    resume_from = explicit
    if resume_from is None and out.is_dir() and not training_args.overwrite_output_dir:
        resume_from, skipped = last_complete_checkpoint(out)
        for folder, problem in skipped:
            logger.warning(
                "Skipping %s: incomplete checkpoint (%s), probably cut off by a kill while it was written; "
                "it is written again when training reaches that step.",
                folder,
                problem,
            )
    if resume_from is None:
        return None
    differences = checkpoint_mismatches(resume_from, setup)
    if differences:
        advice = (
            "drop --resume_from_checkpoint or give a checkpoint of this run"
            if explicit
            else f"choose another --output_dir, or pass --overwrite_output_dir to start afresh in {out} "
            "(its checkpoints are deleted)"
        )
        raise UsageError(
            f"{'--resume_from_checkpoint' if explicit else '--output_dir'} {resume_from}: the checkpoint "
            f"belongs to another run ({'; '.join(differences)}); {advice}"
        )
    logger.warning(
        "Resuming from %s%s",
        resume_from,
        ""
        if explicit
        else " (the last complete checkpoint in the output folder; pass --overwrite_output_dir "
        "to start afresh)",
    )
    return resume_from


def clear_previous_run(output_dir: str) -> None:
    """--overwrite_output_dir: remove the previous run's checkpoints and results (other files are kept)."""
    out = Path(output_dir)
    if not out.is_dir():
        return
    for path in out.iterdir():
        if path.is_dir() and path.name.startswith("checkpoint-"):
            shutil.rmtree(path)
        elif path.name.endswith("_results.json") or path.name in (
            "trainer_state.json",
            "confusion_matrix.png",
            "test_details.json",
        ):
            path.unlink()


def limit_samples(
    raw: datasets.DatasetDict, data_args: DataTrainingArguments, seed: int
) -> datasets.DatasetDict:
    """--max_train_samples / --max_eval_samples: a seeded random subset of each split."""
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_eval_samples,
    }
    out = {}
    for split, ds in raw.items():
        limit = limits.get(split)
        out[split] = (
            ds.shuffle(seed=seed).select(range(limit)) if limit is not None and limit < len(ds) else ds
        )
    return datasets.DatasetDict(out)


def given_splits(dataset: datasets.DatasetDict) -> None:
    """A `dataset` passed to `train` must have the three splits, a ClassLabel `label` and a `corpus` column
    (`UsageError` otherwise, before anything is prepared)."""
    missing = [split for split in ("train", "validation", "test") if split not in dataset]
    if missing:
        raise UsageError(f"dataset: no {missing} split(s); give a DatasetDict of train, validation and test")
    for split, ds in dataset.items():
        absent = [c for c in ("audio", "label", "corpus") if c not in ds.column_names]
        if absent:
            raise UsageError(f"dataset[{split!r}]: no {absent} column(s); give the loaders' schema")
    if not isinstance(dataset["train"].features["label"], datasets.ClassLabel):
        raise UsageError("dataset['train']: `label` is not a ClassLabel; its names are the classes to learn")
    if len(dataset["train"]) == 0:
        raise UsageError("dataset['train'] is empty; nothing to train on")


def _class_counts(details: dict) -> list[int]:
    return [sum(row) for row in details["confusion_matrix"]]


def learning_check(
    details: dict, label_names: list[str], split: str, test_details: dict | None = None
) -> str | None:
    """Why the kept model did not learn, or None when it did.

    `details` are the nested metrics of the split the run was judged on (validation, or test without one);
    `test_details` those of the test set. The model did not learn when its UAR there is not above
    `chance_uar_bound` (chance plus two standard deviations of a random guesser's UAR on that split), or when
    it gives every clip of the test set the same class.
    """
    reasons = []
    bound = chance_uar_bound(_class_counts(details))
    uar = details.get("uar")
    if uar is not None and not math.isnan(bound) and uar <= bound:
        present = sum(1 for n in _class_counts(details) if n > 0)
        reasons.append(
            f"its {split} UAR {uar:.3f} is not clearly above chance ({1 / present:.3f} for {present} "
            f"classes; up to {bound:.3f} is within luck on {sum(_class_counts(details))} {split} clips)"
        )
    for name, d in ((split, details), ("test", test_details)):
        if d is None or (name == "test" and d is details):
            continue
        matrix = d["confusion_matrix"]
        predicted = [j for j in range(len(matrix)) if any(row[j] for row in matrix)]
        if len(predicted) == 1 and sum(1 for n in _class_counts(d) if n > 0) > 1:
            reasons.append(f"it predicts {label_names[predicted[0]]} for every {name} clip")
    return "; ".join(reasons) or None


def early_stopping(
    data_args: DataTrainingArguments,
    training_args: SERTrainingArguments,
    validation_labels: list[int],
    num_labels: int,
) -> PlateauAwareEarlyStopping | None:
    """The run's early stopping (None when it trains all its epochs): `--early_stopping_patience`
    evaluations without a better validation metric, not before `--early_stopping_start` of the run, and,
    selecting on UAR, not while the validation UAR has never left chance (see the callback)."""
    if not (training_args.load_best_model_at_end and data_args.early_stopping_patience > 0):
        return None
    selects_on_uar = (training_args.metric_for_best_model or "").removeprefix("eval_") == "uar"
    chance_bound = (
        chance_uar_bound([validation_labels.count(i) for i in range(num_labels)]) if selects_on_uar else None
    )
    return PlateauAwareEarlyStopping(
        early_stopping_patience=data_args.early_stopping_patience,
        chance_bound=chance_bound,
        min_progress=data_args.early_stopping_start,
    )


def network_learning_check(branches: BranchPredictions, label_names: list[str]) -> str | None:
    """Why the network branch of a two-branch model (a network beside its functionals head) did not learn
    on the validation clips, or None when it did: `learning_check` on the network's logits alone. The
    model's own UAR cannot tell: the head, a linear classifier fitted within an epoch, carries it well above
    chance while the network stays there (a CNN run on espeak, seed 2: network alone 0.328 test UAR, the
    model 0.797)."""
    labels = np.asarray(branches.labels).tolist()
    network = detailed_metrics(np.asarray(branches.network).argmax(-1).tolist(), labels, label_names)
    reason = learning_check(network, label_names, "validation")
    if reason is None:
        return None
    head = detailed_metrics(np.asarray(branches.head).argmax(-1).tolist(), labels, label_names)
    return f"alone, {reason} (its functionals head's validation UAR alone: {head['uar']:.3f})"


def _record_did_not_learn(output_dir: str, reason: str | None, network_reason: str | None = None) -> None:
    """Add `did_not_learn` and `network_did_not_learn` (and why) to all_results.json, which the Trainer's
    save_metrics has written."""
    path = os.path.join(output_dir, "all_results.json")
    results = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
    # The Trainer merges its metrics into the file a resumed run left, so a reason from before is dropped.
    for key, why in (("did_not_learn", reason), ("network_did_not_learn", network_reason)):
        results[key] = why is not None
        results.pop(f"{key}_reason", None)
        if why is not None:
            results[f"{key}_reason"] = why
    write_json_atomic(path, results, indent=4, sort_keys=True)  # as the Trainer's save_metrics writes it


def use_cpu_processes_without_gpu() -> None:
    """Several processes on a machine without GPUs (`accelerate launch --multi_gpu` or torchrun there): ask
    accelerate for CPU data parallelism (gloo); without this it leaves every process training alone. Call it
    before the TrainingArguments are created."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def train(
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: SERTrainingArguments,
    *,
    dataset: datasets.DatasetDict | None = None,
) -> TrainResult:
    """Train and evaluate one model as the arguments say (see `training.arguments.parse_args` for how they are
    resolved from recipes, files and flags); returns the results, also written into the output folder.

    `dataset` (the evaluation suite's folds): train on these prepared `train` / `validation` / `test` splits
    (loader schema, `label` a ClassLabel whose names are the classes) instead of loading and splitting
    --corpora; --corpora, --emotions, --merge and the split options are then taken from the data (split
    strategy "given"), and --max_train_samples / --max_eval_samples still apply.

    Bad arguments raise `UsageError` before any data is prepared or anything written. The arguments are
    copied: the caller's objects are left as they were.
    """
    model_args, data_args, training_args = (copy.deepcopy(a) for a in (model_args, data_args, training_args))
    # ---- everything the user asked for is checked before any data is prepared or anything written ----
    model_kind = resolve_model_kind(model_args)
    model_args.model = model_kind
    data_root_given = data_args.data_root is not None
    data_args.data_root = data_args.data_root or "./datasets"
    if dataset is not None:
        given_splits(dataset)
        data_args.corpora = sorted({c for split in dataset.values() for c in split.unique("corpus")})
        data_args.emotions = list(dataset["train"].features["label"].names)
        data_args.merge, data_args.split_strategy, data_args.test_corpora = None, "given", None
    corpora, _ = find_corpora(
        data_args.corpora, data_args.data_root, data_root_given=data_root_given, download=data_args.download
    )
    data_args.corpora = corpora
    check_arguments(data_args, training_args)
    check_model_options(model_kind, model_args, training_args)
    model_args.ensemble_members = check_ensemble_options(model_kind, model_args) or None
    overrides = parse_config_overrides(model_args.config_overrides, model_kind, model_args.model_name_or_path)
    if model_args.streaming:
        overrides = streaming_overrides(overrides, model_args.model_name_or_path)
    try:
        merge = parse_merge(data_args.merge or [])
        label_names, _ = (
            (data_args.emotions, {}) if dataset is not None else resolve_emotions(data_args.emotions, merge)
        )
    except ValueError as err:
        raise UsageError(f"--{err}") from err
    split_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    setup = run_setup(
        model_kind,
        label_names,
        corpora,
        data_args.split_strategy,
        data_args.test_corpora,
        merge,
        split_seed,
        overrides,
    )
    if training_args.output_dir is None:
        training_args.output_dir = default_output_dir(setup, model_args.streaming)

    # One writer per output folder: the main process holds the lock for the whole run (the others write
    # nothing of their own there).
    lock = OutputDirLock(training_args.output_dir, logger) if training_args.process_index == 0 else None
    if lock is not None:
        lock.acquire()
    try:
        resume_from = check_output_dir(training_args, setup)
        return _train(
            model_kind,
            corpora,
            merge,
            overrides,
            setup,
            resume_from,
            model_args,
            data_args,
            training_args,
            dataset=dataset,
        )
    finally:
        if lock is not None:
            lock.release()


def _train(
    model_kind: str,
    corpora: list[str],
    merge: dict[str, str],
    overrides: dict[str, object],
    setup: dict,
    resume_from: str | None,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: SERTrainingArguments,
    *,
    dataset: datasets.DatasetDict | None = None,
) -> TrainResult:
    """Prepare the data (or take the given `dataset`), train, evaluate and write the outputs (inside the
    output folder's lock)."""
    is_main = training_args.process_index == 0
    run_args = arguments_dict(model_args, data_args, training_args)
    if corpora == ["synthetic"]:
        logger.info(
            "Training on the built-in synthetic corpus. For the real corpora run `python -m loaders download "
            "%s` (Kaggle credentials needed) and train again.",
            data_args.data_root,
        )
    set_seed(training_args.seed)

    if data_args.download and dataset is None:
        from loaders.download import download_corpora

        with training_args.main_process_first(desc="downloading corpora"):
            if training_args.local_process_index == 0:
                download_corpora(
                    data_args.data_root,
                    [c for c in corpora if CORPORA[c].NEEDS_DATA_DIR],
                    source=data_args.download_source,
                )

    # ---- data: prepared once (main process first; the others read the cache) ----
    with training_args.main_process_first(desc="preparing corpora"):
        try:
            raw = (
                dataset
                if dataset is not None
                else load_corpora(
                    corpora,
                    data_args.data_root,
                    emotions=data_args.emotions,
                    merge=merge,
                    split=data_args.split_strategy,
                    test_corpora=data_args.test_corpora,
                    seed=setup["split_seed"],
                    lenient=data_args.lenient,
                    cache_dir=data_args.dataset_cache_dir,
                    num_proc=data_args.preprocessing_num_workers,
                )
            )
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from err
    raw = limit_samples(raw, data_args, training_args.seed)
    label_names = raw["train"].features["label"].names
    counts = split_counts(raw, label_names)
    logger.info("Data (%s split): %s", data_args.split_strategy, json.dumps(counts))

    members = None
    # Class weights in the loss leave no prior in the network's logits to take out.
    takes_prior_out = data_args.correct_class_prior and not data_args.class_weighting
    if model_kind == "ensemble":
        # Each member is a run of its own, on these splits; the ensemble is evaluated and saved below.
        members = train_members(model_args.ensemble_members, setup, model_args, data_args, training_args, raw)
        model = assemble(members)
        feature_extractor = feature_extractor_for(model)
    else:
        model, feature_extractor = build_model(
            model_kind,
            model_args.model_name_or_path,
            label_names,
            overrides,
            freeze_feature_encoder=model_args.freeze_feature_encoder,
            freeze_encoder=model_args.freeze_encoder,
            use_weighted_layer_sum=model_args.use_weighted_layer_sum,
            trust_remote_code=model_args.trust_remote_code,
            max_duration_seconds=data_args.max_duration_seconds,
        )
        if takes_prior_out:
            try:  # the layer the class prior comes out of after training, checked before it starts
                network_output_layer(model)
            except ValueError as err:
                raise UsageError(str(err)) from err
    min_samples = min_clip_samples(model, feature_extractor)
    if model_args.streaming:
        # A stream's mean and variance are unknown until it ends, so the model learns from raw audio, as
        # StreamingClassifier will feed it (the saved feature extractor says so to every later user).
        feature_extractor.do_normalize = False
    max_duration = data_args.max_duration_seconds
    max_samples = int(max_duration * SAMPLING_RATE) if max_duration else None
    prepared, dropped = prepare_model_inputs(
        raw, max_duration_seconds=max_duration or None, min_samples=min_samples
    )
    has_validation = len(prepared["validation"]) > 0
    if not has_validation:
        logger.warning(
            "The validation split is empty (%s split of %s): no model selection or early stopping; the "
            "model of the last epoch is kept.",
            data_args.split_strategy,
            ", ".join(corpora),
        )
        training_args.eval_strategy = "no"
        training_args.load_best_model_at_end = False

    if training_args.overwrite_output_dir and resume_from is None and is_main:
        clear_previous_run(training_args.output_dir)
    if is_main:
        os.makedirs(training_args.output_dir, exist_ok=True)
        # What a later run into this folder is compared with before it may resume from these checkpoints.
        write_json_atomic(os.path.join(training_args.output_dir, RUN_SETUP_FILE), setup)
        # Every argument this run resolved (a valid arguments file: `run_train.py run_args.json`), written
        # once the data is there (a bad --emotions or corpus folder fails in loading, leaving nothing behind).
        write_json_atomic(os.path.join(training_args.output_dir, RUN_ARGS_FILE), run_args)

    # ---- training (an ensemble's members were trained above: its Trainer only evaluates) ----
    if model_kind == "ensemble":
        trainer = ensemble_trainer(
            model, training_args, prepared, feature_extractor, label_names, max_samples
        )
        train_metrics = member_train_metrics(members)
        head_c = branches = branch_weights = prior_correction = None
    else:
        callbacks = []
        if has_validation:
            stopping = early_stopping(
                data_args, training_args, list(prepared["validation"]["label"]), len(label_names)
            )
            callbacks += [stopping] if stopping is not None else []
        trainer = SERTrainer(
            model=model,
            args=training_args,
            train_dataset=prepared["train"],
            eval_dataset=prepared["validation"] if has_validation else None,
            processing_class=feature_extractor,
            data_collator=AudioCollator(
                feature_extractor,
                max_samples=max_samples,
                random_crop=True,
                speed_factors=data_args.speed_perturbation,
                min_samples=min_samples,
            ),
            eval_data_collator=AudioCollator(feature_extractor, max_samples=max_samples, random_crop=False),
            compute_metrics=ComputeMetrics(label_names),
            compute_loss_func=WeightedCrossEntropy(
                class_weights(prepared["train"]["label"], len(label_names))
            )
            if data_args.class_weighting
            else None,
            callbacks=callbacks,
            head_learning_rate=model_args.head_learning_rate,
        )
        train_output = trainer.train(resume_from_checkpoint=resume_from)
        # Every process says it trained (the logs of the other processes are quiet at the default log level).
        print(
            f"rank {training_args.process_index} of {training_args.world_size}: trained "
            f"{trainer.state.global_step} steps",
            flush=True,
        )
        # The network's decisions to suit UAR before anything is fitted to its logits.
        prior_correction = (
            correct_class_prior(trainer.model, prepared["train"]["label"], label_names)
            if takes_prior_out
            else None
        )
        # The head next: the branch weights are fitted to the head that is saved.
        head_refit = (
            refit_functionals_head(trainer, prepared["train"], prepared["validation"], label_names)
            if has_validation and data_args.refit_functionals_head
            else None
        )
        head_c = head_refit.c if head_refit is not None else None
        # The branches on the validation clips, once: for their weights and to tell whether the network
        # learnt.
        branches = (
            predict_branches(trainer, prepared["validation"])
            if has_validation and has_branches(trainer.model)
            else None
        )
        # A gated head fitted above stays only where the validation clips show that it helps.
        gated_heads = {}
        if branches is not None and head_refit is not None:
            branches, gated_heads = gate_fitted_heads(
                trainer.model,
                branches,
                head_refit.validation_logits,
                network_penalty=data_args.branch_network_penalty,
            )
        branch_weights = (
            calibrate_branch_weights(
                trainer, prepared["validation"], branches, network_penalty=data_args.branch_network_penalty
            )
            if has_validation and data_args.fit_branch_weights
            else None
        )
        train_metrics = dict(train_output.metrics)
        for head, c in (head_c or {}).items():
            train_metrics[f"{head}_C"] = c
        for head, kept in gated_heads.items():
            train_metrics[f"{head}_kept"] = float(kept)
        for label, value in (prior_correction or {}).items():
            train_metrics[f"class_prior_correction_{label}"] = value
    trainer.save_model()
    train_metrics.update(train_samples=len(prepared["train"]), world_size=training_args.world_size)
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    # ---- evaluation: overall and per-corpus figures from the predictions and the `corpus` column ----
    eval_metrics: dict[str, float] = {}
    eval_details = None
    if has_validation:
        eval_metrics, eval_details = predict_with_details(
            trainer, prepared["validation"], label_names, "eval"
        )
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
    test_metrics, test_details = predict_with_details(trainer, prepared["test"], label_names, "test")
    test_metrics["test_samples"] = len(prepared["test"])
    trainer.log_metrics("test", test_metrics)
    trainer.save_metrics("test", test_metrics)

    # ---- did it learn? A model at chance must not pass for a finished run ----
    judged_split, judged = ("validation", eval_details) if has_validation else ("test", test_details)
    did_not_learn = learning_check(judged, label_names, judged_split, test_details)
    if did_not_learn:
        logger.warning(
            "This model did not learn: %s. Run %s (%s on %s, %d epochs trained, learning rate %g). Try: "
            "more epochs or a larger --early_stopping_patience, another --learning_rate (lower if the loss "
            "jumped, higher if it stayed at ln %d = %.2f), --class_weighting on unbalanced corpora, and "
            "check the data (are the labels right, is there enough of it: %d training clips).",
            did_not_learn,
            training_args.output_dir,
            model_kind,
            ", ".join(corpora),
            round(trainer.state.epoch or 0),
            training_args.learning_rate,
            len(label_names),
            math.log(len(label_names)),
            len(prepared["train"]),
        )
    network_did_not_learn = network_learning_check(branches, label_names) if branches is not None else None
    if network_did_not_learn and not did_not_learn:
        logger.warning(
            "The network of this model did not learn: %s. The model is, in effect, its functionals head "
            "(a linear classifier on the clip's functionals). Run %s. Try another --seed, more epochs or "
            "another --learning_rate.",
            network_did_not_learn,
            training_args.output_dir,
        )
    if trainer.is_world_process_zero():
        _record_did_not_learn(training_args.output_dir, did_not_learn, network_did_not_learn)

    # ---- outputs: figure, detailed results, model card (process 0 only) ----
    summary = TrainingSummary(
        # An encoder's card names its family (hubert, whisper, ...), as its tags should.
        model_kind=model.config.model_type if model_kind == "encoder" else model_kind,
        base_model=model_args.model_name_or_path,
        emotions=label_names,
        merge=merge,
        corpora=[corpus_info(c) for c in corpora],
        split_strategy=data_args.split_strategy,
        test_corpora=data_args.test_corpora,
        counts=counts,
        test_metrics={k.removeprefix("test_"): v for k, v in test_metrics.items()},
        validation_metrics={k.removeprefix("eval_"): v for k, v in eval_metrics.items()},
        confusion_matrix_file="confusion_matrix.png",
        hyperparameters={
            **(
                {"epochs_trained": round(trainer.state.epoch or 0, 2)}
                if members is None
                else {
                    "ensemble members (each a run of its own; the mean of their probabilities)": [
                        os.path.relpath(member_dir, training_args.output_dir) for member_dir, _, _ in members
                    ]
                }
            ),
            "world_size": training_args.world_size,
            **{f"config.{k}": v for k, v in overrides.items()},
            **{
                f"{head.replace('_', ' ')} refitted: C (by validation {HEAD_C_CRITERION})": c
                for head, c in (head_c or {}).items()
            },
            **(
                {
                    "logits of the network and the heads trained beside it: training class prior taken out "
                    "(centred log share subtracted)": {
                        label: round(value, 3) for label, value in prior_correction.items()
                    }
                }
                if prior_correction
                else {}
            ),
            **(
                {"branch_weights (fitted on validation)": [round(w, 3) for w in branch_weights]}
                if branch_weights
                else {}
            ),
            **(
                {"branch_weights: penalty on the network's weight": data_args.branch_network_penalty}
                if branch_weights and data_args.branch_network_penalty > 0
                else {}
            ),
        },
        num_parameters=sum(p.numel() for p in trainer.model.parameters()),
        arguments=non_default_arguments(model_args, data_args, training_args),
        arguments_file=RUN_ARGS_FILE,
        did_not_learn=did_not_learn,
        network_did_not_learn=network_did_not_learn,
    )
    trainer.model_card_text = render_model_card(summary)
    if trainer.is_world_process_zero():
        plot_confusion_matrix(
            test_details["confusion_matrix"],
            label_names,
            os.path.join(training_args.output_dir, "confusion_matrix.png"),
            title=f"{model_kind} on {', '.join(corpora)}: test set",
        )
        write_json_atomic(
            os.path.join(training_args.output_dir, "test_details.json"),
            {"metrics": test_details, "dropped_too_short": dropped, "counts": counts},
        )
        trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="Speech emotion classifier trained with run_train.py")
    return TrainResult(
        output_dir=os.path.abspath(training_args.output_dir),
        model_kind=model_kind,
        corpora=list(corpora),
        label_names=list(label_names),
        train_metrics=train_metrics,
        eval_metrics=eval_metrics,
        test_metrics=test_metrics,
        test_details=test_details,
        eval_details=eval_details,
        counts=counts,
        dropped_too_short=dropped,
        run_args=run_args,
        did_not_learn=did_not_learn is not None,
        did_not_learn_reason=did_not_learn,
        network_did_not_learn=network_did_not_learn is not None,
        network_did_not_learn_reason=network_did_not_learn,
    )


__all__ = [
    "RUN_ARGS_FILE",
    "TrainResult",
    "default_output_dir",
    "early_stopping",
    "learning_check",
    "network_learning_check",
    "train",
    "use_cpu_processes_without_gpu",
]
