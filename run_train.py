#!/usr/bin/env python
"""Train a speech emotion classifier (CNN, S4 or Wav2Vec2) on any mix of the corpora.

    accelerate launch run_train.py                        # CNN on ./datasets (or the synthetic corpus)
    accelerate launch run_train.py --model s4 --corpora emodb ravdess --split_strategy speaker
    accelerate launch run_train.py --model wav2vec2 --model_name_or_path facebook/wav2vec2-base \\
        --corpora cremad --class_weighting --push_to_hub --hub_model_id me/ser-cremad
    accelerate launch run_train.py args.yaml              # the same arguments from a file

Every `TrainingArguments` option applies (`--num_train_epochs`, `--learning_rate`, `--report_to wandb`,
`--resume_from_checkpoint`, ...). Model-specific defaults (learning rate, batch size, epochs) are used for
the options you do not give. The run writes into `--output_dir`: checkpoints, the best model on validation
UAR (with its feature extractor and, for the CNN and S4, its source code), `*_results.json`,
`confusion_matrix.png` and a model card (README.md).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import transformers
from transformers import EarlyStoppingCallback, HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from loaders.emotions import DEFAULT_EMOTIONS, parse_merge
from loaders.loading import load_corpora
from loaders.registry import CORPORA
from loaders.splits import STRATEGIES
from modeling.training import (
    AudioCollator,
    ComputeMetrics,
    TrainingSummary,
    class_weights,
    plot_confusion_matrix,
    prepare_model_inputs,
    render_model_card,
)
from modeling.training.model_card import corpus_info
from modeling.training.run_config import (
    MODEL_KINDS,
    UsageError,
    build_model,
    checkpoint_model_kind,
    find_corpora,
    parse_config_overrides,
    split_counts,
)
from modeling.training.trainer import SERTrainer

logger = logging.getLogger("run_train")

# Used for the options the user does not give (on the command line or in the arguments file).
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "cnn": {
        "learning_rate": 1e-3,
        "weight_decay": 1e-2,
        "per_device_train_batch_size": 32,
        "num_train_epochs": 30,
    },
    "s4": {
        "learning_rate": 3e-3,
        "weight_decay": 5e-2,
        "per_device_train_batch_size": 32,
        "num_train_epochs": 30,
    },
    "wav2vec2": {
        "learning_rate": 3e-5,
        "weight_decay": 0.0,
        "per_device_train_batch_size": 8,
        "num_train_epochs": 10,
        "warmup_steps": 0.1,
    },
}
# The synthetic demo corpus, when nothing else is found: short runs that still learn speaker-independently
# (under a minute on 2 CPU cores; tests/test_train_learning.py trains with exactly these and checks >= 0.90
# test accuracy on held-out speakers), with smaller models than the defaults. The CNN's: masked BatchNorm,
# utterance mean normalisation, 2 s random crops and speed perturbation. Without the last two and with
# LayerNorm it gave 0.88-0.96 over four split seeds (one held-out speaker's neutral clips taken for happy,
# or happy and sad ones for neutral), this recipe 0.91-0.99 over eleven runs (README, "Results so far").
DEMO_RECIPES: dict[str, dict[str, object]] = {
    "cnn": {
        "config_overrides": "conv_channels=[32,64,64],attention_size=32,classifier_hidden_size=32,"
        "feature_normalization=utterance_mean,norm_type=batch",
        "num_train_epochs": 20,
        "learning_rate": 3e-3,
        "max_duration_seconds": 2.0,
        "speed_perturbation": [0.9, 1.0, 1.1],
    },
    "s4": {
        "config_overrides": "d_model=32,n_layers=2,d_state=16,mel_bins=40",
        "num_train_epochs": 12,
        "learning_rate": 5e-3,
    },
}
FINISHED_RUN_FILES = ("all_results.json", "test_results.json", "model.safetensors")


@dataclass
class ModelArguments:
    """Which model to train, and from what."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Model kind: cnn, s4 or wav2vec2 (default: cnn, or the kind of --model_name_or_path).",
            "choices": list(MODEL_KINDS),
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoint folder or Hub id to start from: a wav2vec2 checkpoint (default "
            "facebook/wav2vec2-base for --model wav2vec2) or a model this project saved. The CNN and S4 "
            "start from random weights when it is not given."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config fields to override, e.g. 'd_model=64,n_layers=2' or "
            "'conv_channels=[32,64],use_lstm=true'."
        },
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "wav2vec2: freeze the conv encoder."}
    )
    freeze_encoder: bool = field(
        default=False, metadata={"help": "wav2vec2: train only the head (linear probe)."}
    )
    use_weighted_layer_sum: bool = field(
        default=False,
        metadata={"help": "wav2vec2: pool a learned weighted sum of all layers (SUPERB style)."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code from a Hub checkpoint of another project to run."}
    )


@dataclass
class DataTrainingArguments:
    """Which corpora, emotions and split to train and evaluate on."""

    corpora: list[str] | None = field(
        default=None,
        metadata={
            "help": f"Corpora to use: any of {', '.join(CORPORA)}. Default: those found under "
            "--data_root, or the synthetic demo corpus when there are none."
        },
    )
    data_root: str = field(default="./datasets", metadata={"help": "Folder holding <corpus>/ folders."})
    emotions: list[str] | None = field(
        default=None, metadata={"help": f"Emotion classes (default: {' '.join(DEFAULT_EMOTIONS)})."}
    )
    merge: list[str] | None = field(
        default=None, metadata={"help": "Merge an emotion into a class, source:target (e.g. calm:neutral)."}
    )
    split_strategy: str = field(
        default="speaker",
        metadata={
            "help": "speaker (speaker-independent, default), corpus (leave --test_corpora out) or random.",
            "choices": list(STRATEGIES),
        },
    )
    test_corpora: list[str] | None = field(
        default=None, metadata={"help": "The held-out corpora of --split_strategy corpus."}
    )
    max_duration_seconds: float | None = field(
        default=4.0,
        metadata={
            "help": "Longer clips are cut: a random window in training, the centre in evaluation. "
            "0 keeps whole clips."
        },
    )
    speed_perturbation: list[float] | None = field(
        default=None,
        metadata={
            "help": "Training-only augmentation: play each training clip at a speed drawn from these factors "
            "(e.g. 0.9 1.0 1.1; tempo and pitch move together)."
        },
    )
    class_weighting: bool = field(
        default=False, metadata={"help": "Weight the loss by inverse class frequency."}
    )
    early_stopping_patience: int = field(
        default=5,
        metadata={"help": "Stop after this many evaluations without a better validation UAR (0: never)."},
    )
    download: bool = field(
        default=False, metadata={"help": "Download missing corpora into --data_root first."}
    )
    download_source: str = field(default="kaggle", metadata={"help": "kaggle or git (CREMA-D only)."})
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={"help": "Processes for preparing corpora and decoding audio (default: cores)."},
    )
    lenient: bool = field(
        default=False, metadata={"help": "Skip (and report) undecodable or unknown files instead of failing."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training clips."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only this many validation and test clips each."}
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache of prepared corpora."})


@dataclass
class SERTrainingArguments(TrainingArguments):
    """TrainingArguments with defaults for emotion classification."""

    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where to write checkpoints and results (default: outputs/<model>-<corpora>)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train into an output directory that already holds a finished run."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate on the validation set."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_strategy: str = field(default="steps", metadata={"help": "When to log."})
    logging_steps: float = field(default=10, metadata={"help": "Log every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Keep the best model on validation."}
    )
    metric_for_best_model: str | None = field(
        default="uar", metadata={"help": "Validation metric to select on."}
    )
    greater_is_better: bool | None = field(default=True, metadata={"help": "A higher metric is better."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep columns for the collator."})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "group_by_length batches clips of similar length."}
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Trackers (wandb, tensorboard...)."}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Dataloader worker processes."})


def parse_args(argv: list[str] | None = None):
    """(model_args, data_args, training_args, explicit): `explicit` names the options the user gave."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, SERTrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = os.path.abspath(argv[0])
        if not os.path.isfile(path):
            raise UsageError(f"arguments file {argv[0]} does not exist")
        if path.endswith(".json"):
            with open(path) as f:
                explicit = set(json.load(f))
            parsed = parser.parse_json_file(path)
        else:
            import yaml

            with open(path) as f:
                explicit = set(yaml.safe_load(f) or {})
            parsed = parser.parse_yaml_file(path)
    else:
        parsed = parser.parse_args_into_dataclasses(args=argv)
        explicit = {a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--")}
    model_args, data_args, training_args = parsed
    return model_args, data_args, training_args, explicit


def setup_logging(training_args: TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(level)
    logging.getLogger("loaders").setLevel(level)
    logging.getLogger("modeling").setLevel(level)
    datasets.utils.logging.set_verbosity(min(level, logging.WARNING))
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_explicit_format()


def apply_defaults(
    model_kind: str,
    demo: bool,
    explicit: set[str],
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: SERTrainingArguments,
) -> None:
    """Fill the options the user did not give: MODEL_DEFAULTS, then, on the demo corpus, DEMO_RECIPES."""
    recipe = {**MODEL_DEFAULTS[model_kind], **(DEMO_RECIPES.get(model_kind, {}) if demo else {})}
    if model_args.model_name_or_path:  # a checkpoint brings its own architecture
        recipe.pop("config_overrides", None)
    for key, value in recipe.items():
        if key not in explicit:
            target = next(args for args in (model_args, data_args, training_args) if hasattr(args, key))
            setattr(target, key, value)


def check_output_dir(training_args: SERTrainingArguments) -> str | None:
    """Refuse a finished run unless overwriting; returns the checkpoint to resume from, if any."""
    out = Path(training_args.output_dir)
    if not out.is_dir():
        return training_args.resume_from_checkpoint
    finished = [name for name in FINISHED_RUN_FILES if (out / name).exists()]
    if finished and not training_args.overwrite_output_dir:
        raise UsageError(
            f"--output_dir {out} already holds a finished run ({', '.join(finished)}). Choose another "
            "--output_dir, or pass --overwrite_output_dir to train again into it (its results are replaced)."
        )
    if training_args.overwrite_output_dir:
        return training_args.resume_from_checkpoint
    last = get_last_checkpoint(str(out))
    if last is not None and training_args.resume_from_checkpoint is None:
        logger.info(
            "Resuming from the last checkpoint in the output folder: %s "
            "(pass --overwrite_output_dir to start afresh)",
            last,
        )
        return last
    return training_args.resume_from_checkpoint


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
        ):
            path.unlink()


def use_cpu_processes_without_gpu() -> None:
    """Several processes on a machine without GPUs (`accelerate launch --multi_gpu` or torchrun there): ask
    accelerate for CPU data parallelism (gloo); without this it leaves every process training alone."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def main(argv: list[str] | None = None) -> dict:
    use_cpu_processes_without_gpu()
    model_args, data_args, training_args, explicit = parse_args(argv)
    setup_logging(training_args)

    # ---- everything the user asked for is checked before any data is prepared or anything written ----
    if data_args.speed_perturbation and min(data_args.speed_perturbation) <= 0:
        raise UsageError(
            f"--speed_perturbation {' '.join(map(str, data_args.speed_perturbation))}: speed factors must be "
            "> 0 (e.g. 0.9 1.0 1.1)"
        )
    model_kind = model_args.model or "cnn"
    if model_args.model_name_or_path:
        found = checkpoint_model_kind(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        if model_args.model is not None and found != model_args.model:
            raise UsageError(
                f"--model_name_or_path {model_args.model_name_or_path} is a {found} checkpoint but --model "
                f"is {model_args.model}; drop --model or give a {model_args.model} checkpoint"
            )
        model_kind = found
    corpora, demo = find_corpora(
        data_args.corpora,
        data_args.data_root,
        data_root_given="data_root" in explicit,
        download=data_args.download,
    )
    apply_defaults(model_kind, demo, explicit, model_args, data_args, training_args)
    overrides = parse_config_overrides(model_args.config_overrides, model_kind)
    merge = parse_merge(data_args.merge or [])
    if "ddp_find_unused_parameters" not in explicit:
        # wav2vec2's layerdrop skips whole layers in some steps; the CNN and S4 use all parameters always.
        training_args.ddp_find_unused_parameters = model_kind == "wav2vec2"
    if "output_dir" not in explicit:
        training_args.output_dir = os.path.join("outputs", f"{model_kind}-{'-'.join(corpora)}")
    resume_from = check_output_dir(training_args)
    if demo:
        logger.info(
            "No corpora found under %s: training on the built-in synthetic corpus. For the real corpora "
            "run `python -m loaders download %s` (Kaggle credentials needed) and train again.",
            data_args.data_root,
            data_args.data_root,
        )
    set_seed(training_args.seed)

    if data_args.download:
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
            raw = load_corpora(
                corpora,
                data_args.data_root,
                emotions=data_args.emotions,
                merge=merge,
                split=data_args.split_strategy,
                test_corpora=data_args.test_corpora,
                seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
                lenient=data_args.lenient,
                cache_dir=data_args.dataset_cache_dir,
                num_proc=data_args.preprocessing_num_workers,
            )
        except (ValueError, FileNotFoundError) as err:
            raise UsageError(str(err)) from err
    raw = limit_samples(raw, data_args, training_args.seed)
    label_names = raw["train"].features["label"].names
    counts = split_counts(raw, label_names)
    logger.info("Data (%s split): %s", data_args.split_strategy, json.dumps(counts))

    model, feature_extractor = build_model(
        model_kind,
        model_args.model_name_or_path,
        label_names,
        overrides,
        freeze_feature_encoder=model_args.freeze_feature_encoder,
        freeze_encoder=model_args.freeze_encoder,
        use_weighted_layer_sum=model_args.use_weighted_layer_sum,
        trust_remote_code=model_args.trust_remote_code,
    )
    max_samples = int(data_args.max_duration_seconds * 16000) if data_args.max_duration_seconds else None
    with training_args.main_process_first(desc="decoding audio"):
        prepared, dropped = prepare_model_inputs(
            raw,
            max_duration_seconds=data_args.max_duration_seconds or None,
            min_samples=feature_extractor.min_samples,
            num_proc=data_args.preprocessing_num_workers,
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
    if training_args.overwrite_output_dir and resume_from is None and training_args.process_index == 0:
        clear_previous_run(training_args.output_dir)

    # ---- training ----
    compute_metrics = ComputeMetrics(label_names)
    callbacks = []
    if has_validation and training_args.load_best_model_at_end and data_args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
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
            min_samples=feature_extractor.min_samples,
        ),
        eval_data_collator=AudioCollator(feature_extractor, max_samples=max_samples, random_crop=False),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        class_weights=class_weights(prepared["train"]["label"], len(label_names))
        if data_args.class_weighting
        else None,
    )
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    # Every process says it trained (logs of the other processes are quiet at the default log level).
    print(
        f"rank {training_args.process_index} of {training_args.world_size}: trained "
        f"{trainer.state.global_step} steps",
        flush=True,
    )
    trainer.save_model()
    train_metrics = {
        **train_result.metrics,
        "train_samples": len(prepared["train"]),
        "world_size": training_args.world_size,
    }
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    results: dict = {"train": train_metrics}
    if has_validation:
        eval_metrics = trainer.evaluate(metric_key_prefix="eval")
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        results["eval"] = eval_metrics
    test_output = trainer.predict(prepared["test"], metric_key_prefix="test")
    test_metrics = {**test_output.metrics, "test_samples": len(prepared["test"])}
    trainer.log_metrics("test", test_metrics)
    trainer.save_metrics("test", test_metrics)
    results["test"] = test_metrics

    # ---- outputs: figure, detailed results, model card (process 0 only) ----
    command = "accelerate launch run_train.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    summary = TrainingSummary(
        model_kind=model_kind,
        base_model=model_args.model_name_or_path,
        emotions=label_names,
        merge=merge,
        corpora=[corpus_info(c) for c in corpora],
        split_strategy=data_args.split_strategy,
        test_corpora=data_args.test_corpora,
        counts=counts,
        test_metrics={k.removeprefix("test_"): v for k, v in test_metrics.items()},
        validation_metrics={k.removeprefix("eval_"): v for k, v in results.get("eval", {}).items()},
        confusion_matrix_file="confusion_matrix.png",
        command=command.strip(),
        hyperparameters={
            "learning_rate": training_args.learning_rate,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "num_train_epochs": training_args.num_train_epochs,
            "epochs_trained": round(trainer.state.epoch or 0, 2),
            "weight_decay": training_args.weight_decay,
            "max_duration_seconds": data_args.max_duration_seconds,
            "speed_perturbation": data_args.speed_perturbation,
            "class_weighting": data_args.class_weighting,
            "seed": training_args.seed,
            "world_size": training_args.world_size,
            **{f"config.{k}": v for k, v in overrides.items()},
        },
        num_parameters=sum(p.numel() for p in trainer.model.parameters()),
    )
    trainer.model_card_text = render_model_card(summary)
    if trainer.is_world_process_zero():
        detail = compute_metrics.last_result or {}
        plot_confusion_matrix(
            detail.get("confusion_matrix", [[0] * len(label_names)] * len(label_names)),
            label_names,
            os.path.join(training_args.output_dir, "confusion_matrix.png"),
            title=f"{model_kind} on {', '.join(corpora)}: test set",
        )
        with open(os.path.join(training_args.output_dir, "test_details.json"), "w") as f:
            json.dump({"metrics": detail, "dropped_too_short": dropped, "counts": counts}, f, indent=2)
        trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="Speech emotion classifier trained with run_train.py")

    if trainer.is_world_process_zero():
        out = os.path.abspath(training_args.output_dir)
        print(
            f"\nTest UAR {test_metrics.get('test_uar', float('nan')):.3f}, accuracy "
            f"{test_metrics.get('test_accuracy', float('nan')):.3f} ({data_args.split_strategy} split, "
            f"{', '.join(corpora)}).\nModel, results, confusion_matrix.png and model card (README.md): {out}"
        )
        if demo:
            print(
                f"This was the synthetic demo corpus. Get the real corpora with `python -m loaders download "
                f"{data_args.data_root}` and run again to train on them."
            )
    return results


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


if __name__ == "__main__":
    try:
        main()
    except UsageError as err:
        print(f"run_train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
