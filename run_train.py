#!/usr/bin/env python
"""Train a speech emotion classifier (CNN, S4 or any transformers speech encoder) on any mix of the corpora.

    accelerate launch run_train.py                        # CNN on ./datasets (or the synthetic demo corpus)
    accelerate launch run_train.py --model s4 --corpora emodb ravdess --split_strategy speaker
    accelerate launch run_train.py --model_name_or_path microsoft/wavlm-base-plus \\
        --corpora cremad --class_weighting --push_to_hub --hub_model_id me/ser-cremad
    accelerate launch run_train.py args.yaml --learning_rate 1e-4   # a file, flags overriding it
    accelerate launch run_train.py training/recipes/demo-s4.yaml    # a shipped recipe

Every `TrainingArguments` option applies (`--num_train_epochs`, `--learning_rate`, `--report_to wandb`,
`--resume_from_checkpoint`, ...). Values come from three layers, each overriding the one before: the model
kind's recipe (training/recipes/<kind>.yaml, or demo-<kind>.yaml on the synthetic demo corpus), the arguments
file, the flags. The run writes into `--output_dir`: `run_args.json` (every resolved argument), checkpoints,
the best model on validation UAR (with its feature extractor and, for the CNN and S4, its source code),
`*_results.json`, `confusion_matrix.png` and a model card (README.md). The same command after a kill resumes
from the newest complete checkpoint of the same run; `--streaming` trains a causal S4 for `predict --stream`.
The same run in Python: `from training import parse_args, train`.
"""

from __future__ import annotations

import logging
import sys

import datasets
import transformers

from training import TrainResult, parse_args, train
from training.arguments import DataTrainingArguments, ModelArguments, SERTrainingArguments  # noqa: F401
from training.run import use_cpu_processes_without_gpu
from training.run_config import UsageError

logger = logging.getLogger("run_train")


def setup_logging(training_args: transformers.TrainingArguments) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    for name in ("run_train", "training", "loaders", "modeling"):
        logging.getLogger(name).setLevel(level)
    datasets.utils.logging.set_verbosity(min(level, logging.WARNING))
    transformers.utils.logging.set_verbosity(level)
    transformers.utils.logging.enable_explicit_format()


def main(argv: list[str] | None = None) -> TrainResult:
    use_cpu_processes_without_gpu()
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    result = train(model_args, data_args, training_args)
    if training_args.process_index == 0:
        test = result.test_metrics
        print(
            f"\nTest UAR {test.get('test_uar', float('nan')):.3f}, accuracy "
            f"{test.get('test_accuracy', float('nan')):.3f} ({data_args.split_strategy} split, "
            f"{', '.join(result.corpora)}).\nModel, results, confusion_matrix.png and model card "
            f"(README.md): {result.output_dir}"
        )
        if result.did_not_learn:
            print(f"This model did not learn: {result.did_not_learn_reason} (see the warning above).")
        if result.corpora == ["synthetic"]:
            print(
                "This was the synthetic demo corpus. Get the real corpora with `python -m loaders download "
                "./datasets` and run again to train on them."
            )
    return result


if __name__ == "__main__":
    try:
        main()
    except UsageError as err:
        print(f"run_train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
