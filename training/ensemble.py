"""Training an ensemble (`--model ensemble`): every member trained as a run of its own, then averaged.

Each member (by default the CNN, then the S4) is trained by `training.train` into
`<output_dir>/members/<kind>` on the ensemble's splits, with its own kind's recipe under the arguments the
ensemble's run was given (a `--seed 1` or `--num_train_epochs 10` reaches every member; its architecture,
learning rate and the head refit and branch weights after training are the member's own). The ensemble
(`modeling.ensemble`) then averages their class probabilities with equal weights, and `train` evaluates and
saves it as any other model.

A kill loses at most the member in training: a member folder that holds a finished run trained with the same
arguments is reused, one that is cut off resumes from its last checkpoint, and one trained with other
arguments is an error naming the folder (unless `--overwrite_output_dir`, which trains every member again).
"""

from __future__ import annotations

import json
import logging
import os

import datasets
from transformers import FeatureExtractionMixin, PreTrainedModel

from modeling.ensemble import EnsembleForAudioClassification

from .arguments import (
    DataTrainingArguments,
    ModelArguments,
    SERTrainingArguments,
    arguments_dict,
    non_default_arguments,
    parse_args,
)
from .data import AudioCollator
from .files import write_json_atomic
from .run_config import UsageError, load_trained_model
from .trainer import ComputeMetrics, SERTrainer

logger = logging.getLogger(__name__)

MEMBERS_DIR = "members"
DEFAULT_MEMBERS = ("cnn", "s4")
MEMBER_KINDS = ("cnn", "s4")
# The ensemble's setup (model kind, emotions, corpora, split, seed) when its members were first trained: a
# restart with another setup must not reuse them.
MEMBERS_SETUP_FILE = "ensemble_setup.json"
# How the ensemble's splits were made: a member trains on the splits themselves (`train(dataset=...)`).
_GIVEN_BY_THE_SPLITS = frozenset({"split_strategy", "test_corpora", "merge"})
# Arguments that choose the data: members train on the ensemble's splits (split strategy "given"), so their
# saved values differ from the ensemble's; the data is compared through MEMBERS_SETUP_FILE instead.
_DATA_ARGUMENTS = _GIVEN_BY_THE_SPLITS | {"corpora", "data_root", "emotions"}
# Arguments of the ensemble's run that are not its members' to inherit: what model to build and where it goes.
_NOT_INHERITED = frozenset(
    {
        "model",
        "model_name_or_path",
        "config_overrides",
        "ensemble_members",
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "logging_dir",
        "run_name",
        "push_to_hub",
        "hub_model_id",
    }
)


def check_ensemble_options(model_kind: str, model_args: ModelArguments) -> list[str]:
    """The member kinds of an ensemble run (`UsageError` for options an ensemble cannot take, or
    `--ensemble_members` on another kind), checked before any data is prepared."""
    if model_kind != "ensemble":
        if model_args.ensemble_members:
            raise UsageError(
                f"--ensemble_members: only --model ensemble takes it, not the {model_kind}; drop it"
            )
        return []
    members = list(model_args.ensemble_members or DEFAULT_MEMBERS)
    unknown = [m for m in members if m not in MEMBER_KINDS]
    if unknown:
        raise UsageError(
            f"--ensemble_members {' '.join(members)}: {', '.join(unknown)} cannot be a member; give kinds "
            f"among {', '.join(MEMBER_KINDS)}"
        )
    if len(set(members)) != len(members):
        raise UsageError(
            f"--ensemble_members {' '.join(members)}: a kind given twice would train the same run twice "
            "(same seed, same data); give each kind once"
        )
    for name in ("model_name_or_path", "config_overrides"):
        if getattr(model_args, name):
            raise UsageError(
                f"--{name}: an ensemble is assembled from members trained from scratch with their own "
                "recipes; drop it (to set a member's architecture, train that member alone with --model)"
            )
    return members


def member_arguments(
    kind: str,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: SERTrainingArguments,
) -> tuple[ModelArguments, DataTrainingArguments, SERTrainingArguments]:
    """The arguments of the member `kind`: its recipe, under every argument the ensemble's run set (but what
    model to build and where), with its output folder inside the ensemble's."""
    values = {
        key: value
        for key, value in non_default_arguments(model_args, data_args, training_args).items()
        if key not in _NOT_INHERITED and key not in _GIVEN_BY_THE_SPLITS and not key.startswith("hub_")
    }
    values.update(model=kind, output_dir=os.path.join(training_args.output_dir, MEMBERS_DIR, kind))
    member = parse_args([], values=values)
    member[2].overwrite_output_dir = training_args.overwrite_output_dir
    return member


def reusable_member(member_dir: str, member_args: tuple) -> bool:
    """Whether `member_dir` holds a finished run trained with `member_args` (then it is not trained again).
    A finished run trained with other arguments is a `UsageError` naming the first argument that differs."""
    from .run import FINISHED_RUN_FILES, RUN_ARGS_FILE

    if member_args[2].overwrite_output_dir or not all(
        os.path.exists(os.path.join(member_dir, name)) for name in FINISHED_RUN_FILES
    ):
        return False
    with open(os.path.join(member_dir, RUN_ARGS_FILE), encoding="utf-8") as f:
        saved = json.load(f)
    wanted = arguments_dict(*member_args)
    # Every argument, not only those this run sets: a member trained with --class_weighting must not be reused
    # by a run without it.
    for key in sorted(wanted):
        if key in _NOT_INHERITED or key in _DATA_ARGUMENTS or key.startswith("hub_"):
            continue
        if saved.get(key) != wanted[key]:
            raise UsageError(
                f"{member_dir} holds a member trained with {key}={saved.get(key)!r}, this run asks for "
                f"{wanted[key]!r}; choose another --output_dir, or pass --overwrite_output_dir to train "
                "every member again"
            )
    return True


def check_members_setup(output_dir: str, setup: dict, overwrite: bool) -> None:
    """Record the ensemble's `setup` beside its members, or refuse (`UsageError`) members trained for another
    one: they learnt other emotions, corpora or splits."""
    members_dir = os.path.join(output_dir, MEMBERS_DIR)
    path = os.path.join(members_dir, MEMBERS_SETUP_FILE)
    if os.path.exists(path) and not overwrite:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        differences = [key for key in sorted(set(saved) | set(setup)) if saved.get(key) != setup.get(key)]
        if differences:
            raise UsageError(
                f"--output_dir {output_dir}: its members were trained for another run "
                f"({', '.join(differences)} differ); choose another --output_dir, or pass "
                "--overwrite_output_dir to train every member again"
            )
    os.makedirs(members_dir, exist_ok=True)
    write_json_atomic(path, setup)


def train_members(
    members: list[str],
    setup: dict,
    model_args: ModelArguments,
    data_args: DataTrainingArguments,
    training_args: SERTrainingArguments,
    dataset: datasets.DatasetDict,
) -> list[tuple[str, PreTrainedModel, dict]]:
    """Train (or reuse) each member on `dataset`: [(its output folder, the trained model, its train metrics)].
    `setup` is the ensemble's (`run_config.run_setup`), which the members' folder records."""
    from .run import train

    check_members_setup(training_args.output_dir, setup, training_args.overwrite_output_dir)
    trained = []
    for kind in members:
        args = member_arguments(kind, model_args, data_args, training_args)
        member_dir = args[2].output_dir
        if reusable_member(member_dir, args):
            logger.warning("Ensemble member %s: reusing the finished run in %s", kind, member_dir)
            with open(os.path.join(member_dir, "train_results.json"), encoding="utf-8") as f:
                metrics = json.load(f)
        else:
            logger.info("Ensemble member %s: training into %s", kind, member_dir)
            metrics = train(*args, dataset=dataset).train_metrics
        warn_if_member_did_not_learn(kind, member_dir)
        trained.append((member_dir, load_trained_model(kind, member_dir), metrics))
    return trained


def warn_if_member_did_not_learn(kind: str, member_dir: str) -> None:
    """Repeat a member's "did not learn" verdict (its all_results.json) in the ensemble's log: a member at
    chance still counts with its full weight in the average, and a reused member's own warning was in another
    run's log."""
    with open(os.path.join(member_dir, "all_results.json"), encoding="utf-8") as f:
        results = json.load(f)
    if results.get("did_not_learn"):
        logger.warning(
            "Ensemble member %s did not learn: %s. The ensemble averages it in with the others' weight; "
            "train it again (see its run in %s) or leave it out with --ensemble_members.",
            kind,
            results.get("did_not_learn_reason", "its all_results.json says so"),
            member_dir,
        )


def member_train_metrics(trained: list[tuple[str, PreTrainedModel, dict]]) -> dict[str, float]:
    """The ensemble's train metrics: each member's, prefixed with its kind (`cnn_train_loss`, `s4_epoch`)."""
    metrics = {}
    for member_dir, _, member_metrics in trained:
        kind = os.path.basename(member_dir)
        metrics.update(
            {
                f"{kind}_{key}": value
                for key, value in member_metrics.items()
                if isinstance(value, int | float)
            }
        )
    return metrics


def ensemble_trainer(
    model: EnsembleForAudioClassification,
    training_args: SERTrainingArguments,
    prepared: datasets.DatasetDict,
    feature_extractor: FeatureExtractionMixin,
    label_names: list[str],
    max_samples: int | None,
) -> SERTrainer:
    """A Trainer that only evaluates, saves and writes the card of the ensemble (it has nothing to train)."""
    collator = AudioCollator(feature_extractor, max_samples=max_samples, random_crop=False)
    return SERTrainer(
        model=model,
        args=training_args,
        eval_dataset=prepared["validation"] if len(prepared["validation"]) else None,
        processing_class=feature_extractor,
        data_collator=collator,
        eval_data_collator=collator,
        compute_metrics=ComputeMetrics(label_names),
    )


def assemble(trained: list[tuple[str, PreTrainedModel, dict]]) -> EnsembleForAudioClassification:
    """The ensemble of the trained members, equal weights."""
    return EnsembleForAudioClassification.from_members([model for _, model, _ in trained])


__all__ = [
    "DEFAULT_MEMBERS",
    "MEMBERS_DIR",
    "assemble",
    "check_ensemble_options",
    "check_members_setup",
    "ensemble_trainer",
    "member_train_metrics",
    "member_arguments",
    "train_members",
]
