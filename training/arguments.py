"""The arguments of a training run, and how they are resolved from recipes, an arguments file and flags.

    run_train.py [args.yaml|args.json] [--flag value ...]

Three layers, each overriding the one before (the precedence is structural, nothing is guessed from argv):

1. the built-in recipe of the model kind, `training/recipes/<kind>.yaml` (learning rate, batch size, epochs of
   the CNN, S4 or a pre-trained encoder), or `training/recipes/demo-<kind>.yaml` when the run falls back to
   the synthetic demo corpus (no --corpora, no --data_root, and no corpus under ./datasets);
2. the arguments file, if the first argument is a .yaml / .yml / .json file (or `values` given in-process);
3. the command-line flags.

The model kind (which recipe is layer 1) is resolved from layers 2 and 3: --model, else the kind of
--model_name_or_path, else s4 with --streaming, else cnn. With --model_name_or_path the recipe's
config_overrides are left out: a checkpoint brings its own architecture. The resolved arguments (model kind,
corpora and data root filled in) are what `training.train` runs and writes to `run_args.json`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from loaders.emotions import DEFAULT_EMOTIONS
from loaders.registry import CORPORA
from loaders.splits import STRATEGIES

from .run_config import (
    MODEL_KIND_CHOICES,
    UsageError,
    canonical_model_kind,
    checkpoint_model_kind,
    find_corpora,
)

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_DATA_ROOT = "./datasets"
ARGUMENTS_FILE_SUFFIXES = (".json", ".yaml", ".yml")


@dataclass
class ModelArguments:
    """Which model to train, and from what."""

    model: str | None = field(
        default=None,
        metadata={
            "help": "Model kind: cnn, s4, encoder (any pre-trained speech encoder transformers' "
            "AutoModelForAudioClassification loads: wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech-SAT, "
            "SEW, Whisper, ...; wav2vec2 is an alias of encoder) or ensemble (--ensemble_members, each "
            "trained with its own recipe, their class probabilities averaged). Default: the kind of "
            "--model_name_or_path "
            "(read from its config.json), s4 with --streaming, else cnn. Its recipe "
            "(training/recipes/<kind>.yaml) gives the defaults.",
            "choices": list(MODEL_KIND_CHOICES),
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoint folder or Hub id to start from: a speech encoder of any family (default "
            "facebook/wav2vec2-base for --model encoder; e.g. facebook/hubert-large-ll60k, "
            "microsoft/wavlm-large, openai/whisper-large-v3) or a model this project saved. The CNN and S4 "
            "start from random weights when it is not given."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config fields to override, as a JSON object: "
            '\'{"d_model": 64, "n_layers": 2}\' (in an arguments file: a mapping).'
        },
    )
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={
            "help": "encoder: freeze the convolutional feature encoder (Whisper: its two input "
            "convolutions); --no_freeze_feature_encoder trains it too."
        },
    )
    freeze_encoder: bool = field(
        default=False, metadata={"help": "encoder: freeze the whole encoder and train only the head."}
    )
    use_weighted_layer_sum: bool = field(
        default=False,
        metadata={"help": "encoder: pool a learned weighted sum of all layers (SUPERB style)."},
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "encoder: learning rate of the head (projector, classifier, layer weights); the encoder "
            "keeps --learning_rate (default: the same for both). Gradient checkpointing and mixed precision "
            "are the Trainer's --gradient_checkpointing and --bf16 / --fp16 (GPUs only)."
        },
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code from a Hub checkpoint of another project to run."}
    )
    ensemble_members: list[str] | None = field(
        default=None,
        metadata={
            "help": "ensemble: the kinds of its members (cnn, s4), trained one after the other into "
            "<output_dir>/members/<kind>, each with its own recipe under this run's other arguments. "
            "Default: cnn s4."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Train a streaming-ready S4 (implies --model s4): causal layers (bidirectional=false), "
            "causal mel normalisation, and un-normalised audio (the saved feature extractor has "
            "do_normalize=false), so `predict --stream` gives the offline logits."
        },
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
    data_root: str | None = field(
        default=None,
        metadata={
            "help": f"Folder holding <corpus>/ folders (default {DEFAULT_DATA_ROOT}; only there does finding "
            "no corpus fall back to the synthetic demo corpus and its recipe)."
        },
    )
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
    correct_class_prior: bool = field(
        default=True,
        metadata={
            "help": "After training, take the training clips' class prior out of the logits of the network "
            "and of the heads trained beside it (the log of each class's share subtracted from their "
            "biases; logit adjustment), so that their decisions suit UAR, which weighs every class equally; "
            "nothing changes on balanced clips, and nothing is done with --class_weighting, whose loss "
            "already balances the classes."
        },
    )
    early_stopping_patience: int = field(
        default=5,
        metadata={"help": "Stop after this many evaluations without a better validation UAR (0: never)."},
    )
    early_stopping_start: float = field(
        default=0.5,
        metadata={
            "help": "Share of the training steps before which early stopping does not end a run (0.5: not in "
            "the first half; a noisy validation UAR peaking early ended runs whose network had not learnt)."
        },
    )
    refit_functionals_head: bool = field(
        default=True,
        metadata={
            "help": "After training, refit a two-branch model's functionals head (the CNN's, the S4's) as "
            "the openSMILE baseline fits its classifier: logistic regression on the training clips' "
            "functionals, balanced classes, C chosen by the validation clips' cross-entropy; the heads "
            "that do not train (the CNN's raw contours and spectrum heads, the S4's smoothed contours, MFCC "
            "and spectrum heads) are fitted the same way, and the MFCC and spectrum heads are each kept only "
            "where they lower the validation cross-entropy (false: the head as trained, at its fixed L2 "
            "penalty, and the others at zero)."
        },
    )
    fit_branch_weights: bool = field(
        default=True,
        metadata={
            "help": "After training, weigh a two-branch model's logits (the network and its functionals "
            "head) by the pair of weights that minimises the cross-entropy on the validation set: the branch "
            "that generalises better counts more and the scores are calibrated (false: their plain sum)."
        },
    )
    branch_network_penalty: float = field(
        default=0.0,
        metadata={
            "help": "With --fit_branch_weights: a penalty L * a^2 on the network's weight a in place of "
            "its term of the prior, which shrinks the weighted sum towards the functionals head alone, so "
            "that the network keeps only the weight the validation clips give evidence for (the S4's recipe: "
            "0.01; 0: the prior centred on the plain sum)."
        },
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
        metadata={
            "help": "Where to write checkpoints and results (default: "
            "outputs/<model>-<corpora>-<split>-<emotions>, e.g. outputs/cnn-emodb+savee-speaker-"
            "anger+happy+neutral+sadness). A folder holding checkpoints of the same run is resumed from."
        },
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


def _field_types(parser: HfArgumentParser) -> dict[str, tuple[dataclasses.Field, object]]:
    types = {}
    for dataclass_type in parser.dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for f in dataclasses.fields(dataclass_type):
            if f.init:
                types[f.name] = (f, hints.get(f.name))
    return types


def _scalar_type(hint: object) -> object:
    """float for `float | None`, list[float] for `list[float] | None`, ...: the hint without None."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return args[0] if len(args) == 1 else hint
    return hint


def _coerce(source: str, key: str, value: object, hint: object) -> object:
    """YAML 1.1 reads `1e-3` (no dot) as a string: numbers are converted for number fields, or refused."""
    target = _scalar_type(hint)
    if typing.get_origin(target) is list and isinstance(value, list):
        (item,) = typing.get_args(target) or (None,)
        return [_coerce(source, key, v, item) for v in value]
    if target in (float, int) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise UsageError(
                f"{source}: {key}: {value!r} is not a number; write a number (e.g. {key}: "
                f"{'0.001' if target is float else '10'})"
            ) from None
        if target is int:
            if not number.is_integer():
                raise UsageError(f"{source}: {key}: {value!r} is not a whole number; write e.g. 10")
            return int(number)
        return number
    if target is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    return value


def read_arguments_file(path: str, parser: HfArgumentParser) -> dict[str, object]:
    """The options of a .json / .yaml arguments file, checked like command-line flags: unknown keys, values
    outside the choices and non-numbers in number fields are one-line errors."""
    if not os.path.isfile(path):
        raise UsageError(f"arguments file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".json"):
                values = json.load(f)
            else:
                import yaml

                values = yaml.safe_load(f) or {}
    except Exception as err:  # JSONDecodeError, yaml.YAMLError, UnicodeDecodeError
        mark = getattr(err, "problem_mark", None)  # yaml.MarkedYAMLError: where in the file
        if mark is not None:
            first_line = f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}"
        else:
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UsageError(
            f"arguments file {path}: not valid {'JSON' if path.endswith('.json') else 'YAML'} "
            f"({first_line}); fix the file"
        ) from err
    if not isinstance(values, dict):
        raise UsageError(f"arguments file {path}: holds a {type(values).__name__}, not option: value pairs")
    return check_values(f"arguments file {path}", values, parser)


def check_values(source: str, values: Mapping[str, object], parser: HfArgumentParser) -> dict[str, object]:
    """`values` (from `source`, e.g. "arguments file args.yaml") checked like command-line flags: unknown
    keys, values outside the choices and non-numbers in number fields are one-line errors."""
    fields = _field_types(parser)
    unknown = [key for key in values if key not in fields]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else str(key))
        raise UsageError(
            f"{source}: unknown option(s) {', '.join(hints)}; use the option names of "
            "`run_train.py --help` without the leading --"
        )
    coerced = {}
    for key, value in values.items():
        field_, hint = fields[key]
        value = _coerce(source, key, value, hint)
        choices = field_.metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise UsageError(f"{source}: {key}: {value!r} is not one of {', '.join(choices)}")
        if key == "config_overrides" and isinstance(value, dict):
            value = json.dumps(value)  # the flag's form: a JSON object
        coerced[key] = value
    return coerced


def check_arguments(data_args: DataTrainingArguments, training_args: SERTrainingArguments) -> None:
    """Values that would otherwise fail deep inside torch or the Trainer, after the data is prepared."""
    checks = [
        ("learning_rate", training_args.learning_rate, training_args.learning_rate >= 0, ">= 0 (e.g. 1e-3)"),
        ("weight_decay", training_args.weight_decay, training_args.weight_decay >= 0, ">= 0 (e.g. 0.01)"),
        (
            "per_device_train_batch_size",
            training_args.per_device_train_batch_size,
            training_args.per_device_train_batch_size >= 1,
            ">= 1",
        ),
        (
            "per_device_eval_batch_size",
            training_args.per_device_eval_batch_size,
            training_args.per_device_eval_batch_size >= 1,
            ">= 1",
        ),
        (
            "gradient_accumulation_steps",
            training_args.gradient_accumulation_steps,
            training_args.gradient_accumulation_steps >= 1,
            ">= 1",
        ),
        (
            "num_train_epochs",
            training_args.num_train_epochs,
            training_args.num_train_epochs > 0 or training_args.max_steps > 0,
            "> 0 (or give --max_steps)",
        ),
        (
            "max_duration_seconds",
            data_args.max_duration_seconds,
            data_args.max_duration_seconds is None or data_args.max_duration_seconds >= 0,
            ">= 0 (0 keeps whole clips)",
        ),
        (
            "max_train_samples",
            data_args.max_train_samples,
            data_args.max_train_samples is None or data_args.max_train_samples >= 1,
            ">= 1",
        ),
        (
            "max_eval_samples",
            data_args.max_eval_samples,
            data_args.max_eval_samples is None or data_args.max_eval_samples >= 1,
            ">= 1",
        ),
        (
            "early_stopping_patience",
            data_args.early_stopping_patience,
            data_args.early_stopping_patience >= 0,
            ">= 0 (0: never stop early)",
        ),
        (
            "branch_network_penalty",
            data_args.branch_network_penalty,
            0.0 <= data_args.branch_network_penalty < math.inf,
            "a finite value >= 0 (0: no penalty)",
        ),
        (
            "early_stopping_start",
            data_args.early_stopping_start,
            0.0 <= data_args.early_stopping_start <= 1.0,
            "between 0 and 1 (e.g. 0.5: not in the first half of the run)",
        ),
    ]
    for name, value, ok, wanted in checks:
        if not ok:
            raise UsageError(f"--{name} {value}: must be {wanted}; give a value in that range")
    if data_args.speed_perturbation and min(data_args.speed_perturbation) <= 0:
        raise UsageError(
            f"--speed_perturbation {' '.join(map(str, data_args.speed_perturbation))}: speed factors must be "
            "> 0 (e.g. 0.9 1.0 1.1)"
        )


ARGUMENT_CLASSES = (ModelArguments, DataTrainingArguments, SERTrainingArguments)


def make_parser() -> HfArgumentParser:
    return HfArgumentParser(ARGUMENT_CLASSES)


def recipe_path(name: str) -> Path:
    """The shipped recipe `name` (cnn, s4, encoder, ensemble, demo-cnn, demo-s4, s4-speech) as a file path."""
    return RECIPES_DIR / f"{name}.yaml"


def load_recipe(name: str) -> dict[str, object]:
    """A shipped recipe's values, checked like an arguments file."""
    return read_arguments_file(str(recipe_path(name)), make_parser())


def resolve_model_kind(model_args: ModelArguments) -> str:
    """cnn, s4 or encoder: --model (wav2vec2 means encoder), else the kind of --model_name_or_path, else s4
    with --streaming, else cnn; a --model that contradicts the checkpoint or --streaming is a `UsageError`."""
    asked = canonical_model_kind(model_args.model) if model_args.model else None
    kind = asked or ("s4" if model_args.streaming else "cnn")
    if model_args.model_name_or_path:
        found = checkpoint_model_kind(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        if asked is not None and found != asked:
            raise UsageError(
                f"--model_name_or_path {model_args.model_name_or_path} is a {found} checkpoint but --model "
                f"is {model_args.model}; drop --model or give a {model_args.model} checkpoint"
            )
        kind = found
    if model_args.streaming and kind != "s4":
        raise UsageError(
            f"--streaming with a {kind} model: only the S4 runs as a stream; use --model s4 (or drop --model)"
        )
    return kind


def _parse(defaults: Mapping[str, object], flags: Sequence[str], source: str | None):
    parser = make_parser()
    parser.set_defaults(**defaults)
    try:
        return parser.parse_args_into_dataclasses(args=list(flags))
    except (ValueError, TypeError) as err:  # TrainingArguments.__post_init__ checks combinations of options
        where = f" (arguments from {source} and the command line)" if source else ""
        raise UsageError(f"{err}{where}") from err


def parse_args(
    argv: Sequence[str] | None = None, *, values: Mapping[str, object] | None = None
) -> tuple[ModelArguments, DataTrainingArguments, SERTrainingArguments]:
    """The resolved arguments of `[args.yaml|args.json] [--flag value ...]` (default: sys.argv[1:]).

    `values` (in-process callers) is one more layer between the arguments file and the flags, checked like the
    file. See the module docstring for the layers; bad values are `UsageError`s, raised before anything is
    prepared.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    source = None
    user: dict[str, object] = {}
    if argv and not argv[0].startswith("-") and argv[0].endswith(ARGUMENTS_FILE_SUFFIXES):
        source, argv = argv[0], argv[1:]
        user.update(read_arguments_file(source, make_parser()))
    if values:
        user.update(check_values("values", values, make_parser()))
        source = source or "values"
    # First the user's layers alone: they decide the model kind and whether this is the demo run.
    model_args, data_args, _ = _parse(user, argv, source)
    kind = resolve_model_kind(model_args)
    data_root = data_args.data_root or DEFAULT_DATA_ROOT
    corpora, demo = find_corpora(
        data_args.corpora,
        data_root,
        data_root_given=data_args.data_root is not None,
        download=data_args.download,
    )
    recipe = load_recipe(f"demo-{kind}" if demo and recipe_path(f"demo-{kind}").is_file() else kind)
    if model_args.model_name_or_path:
        recipe.pop("config_overrides", None)  # a checkpoint brings its own architecture
    model_args, data_args, training_args = _parse({**recipe, **user}, argv, source)
    model_args.model = kind
    data_args.corpora = corpora
    data_args.data_root = data_root
    check_arguments(data_args, training_args)
    return model_args, data_args, training_args


def arguments_dict(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> dict[str, object]:
    """All arguments of the three classes as one flat JSON-serialisable dict (the form of an arguments file;
    Hub tokens are left out)."""
    values: dict[str, object] = {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args)}
    training = training_args.to_dict()
    for key in [k for k in training if k.endswith("_token")]:
        del training[key]
    values.update(training)
    return json.loads(json.dumps(values, default=str))


def non_default_arguments(
    model_args: ModelArguments, data_args: DataTrainingArguments, training_args: TrainingArguments
) -> dict[str, object]:
    """The arguments that differ from the argument classes' own defaults (what a recipe, file or flag set)."""
    defaults = arguments_dict(
        ModelArguments(), DataTrainingArguments(), type(training_args)(output_dir=training_args.output_dir)
    )
    return {
        key: value
        for key, value in arguments_dict(model_args, data_args, training_args).items()
        if key not in defaults or defaults[key] != value
    }
