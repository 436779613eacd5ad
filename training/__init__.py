"""Training as a library: `train(model_args, data_args, training_args) -> TrainResult`.

    from training import parse_args, train

    model_args, data_args, training_args = parse_args(["--model", "s4", "--corpora", "emodb"])
    result = train(model_args, data_args, training_args)
    result.test_metrics["test_uar"], result.test_details["per_group"]["emodb"]["confusion_matrix"]

`parse_args` resolves the arguments from the model kind's recipe (training/recipes/), an arguments file and
flags; run_train.py is that call and `train`. The pieces: `arguments` (argument classes, recipes, parsing),
`run` (`train`), `trainer` (Trainer subclass, class-weighted loss, metrics from predictions), `data` (decode,
collator), `metrics` (UAR, macro-F1 as an `evaluate.Metric`), `model_card`, `plots`, `run_config` (model
kind, corpora, resume and lock checks).
"""

from .arguments import (
    DataTrainingArguments,
    ModelArguments,
    SERTrainingArguments,
    arguments_dict,
    load_recipe,
    parse_args,
    recipe_path,
)
from .data import AudioCollator, class_weights, prepare_model_inputs
from .metrics import EmotionClassificationMetric, flatten_metrics
from .model_card import TrainingSummary, render_model_card, write_model_card
from .plots import plot_confusion_matrix
from .run import RUN_ARGS_FILE, TrainResult, train
from .run_config import UsageError
from .trainer import ComputeMetrics, SERTrainer, WeightedCrossEntropy, predict_with_details

__all__ = [
    "RUN_ARGS_FILE",
    "AudioCollator",
    "ComputeMetrics",
    "DataTrainingArguments",
    "EmotionClassificationMetric",
    "ModelArguments",
    "SERTrainer",
    "SERTrainingArguments",
    "TrainResult",
    "TrainingSummary",
    "UsageError",
    "WeightedCrossEntropy",
    "arguments_dict",
    "class_weights",
    "flatten_metrics",
    "load_recipe",
    "parse_args",
    "plot_confusion_matrix",
    "predict_with_details",
    "prepare_model_inputs",
    "recipe_path",
    "render_model_card",
    "train",
    "write_model_card",
]
