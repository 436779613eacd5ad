"""Training pieces used by run_train.py: data preparation, collator, metrics, Trainer, model card, plots."""

from .data import AudioCollator, class_weights, prepare_model_inputs
from .metrics import ComputeMetrics, EmotionClassificationMetric, flatten_metrics
from .model_card import TrainingSummary, render_model_card, write_model_card
from .plots import plot_confusion_matrix

__all__ = [
    "AudioCollator",
    "ComputeMetrics",
    "EmotionClassificationMetric",
    "TrainingSummary",
    "class_weights",
    "flatten_metrics",
    "plot_confusion_matrix",
    "prepare_model_inputs",
    "render_model_card",
    "write_model_card",
]
