"""The emotion classification metric against hand-computed values."""

import numpy as np
import pytest
from transformers import EvalPrediction

from training.metrics import EmotionClassificationMetric, flatten_metrics
from training.trainer import ComputeMetrics

NAMES = ["anger", "happy", "neutral", "sadness"]


def test_hand_computed_with_never_predicted_and_absent_class():
    # references: anger x3, happy x2, neutral x1; sadness absent. "happy" is never predicted.
    references = [0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 2, 0, 2, 2]
    result = EmotionClassificationMetric().compute(
        predictions=predictions, references=references, label_names=NAMES
    )
    assert result["accuracy"] == pytest.approx(3 / 6)
    # recall: anger 2/3, happy 0/2, neutral 1/1; sadness undefined (absent) and left out of the mean
    assert result["recall"] == {"anger": pytest.approx(2 / 3), "happy": 0.0, "neutral": 1.0, "sadness": None}
    assert result["uar"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    # precision: anger 2/3, happy 0 (never predicted), neutral 1/3
    f1_anger = 2 * (2 / 3) * (2 / 3) / (4 / 3)
    f1_neutral = 2 * (1 / 3) * 1 / (4 / 3)
    assert result["f1"]["anger"] == pytest.approx(f1_anger)
    assert result["f1"]["happy"] == 0.0
    assert result["f1"]["neutral"] == pytest.approx(f1_neutral)
    assert result["macro_f1"] == pytest.approx((f1_anger + 0 + f1_neutral) / 3)
    assert result["confusion_matrix"] == [[2, 0, 1, 0], [1, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert result["support"] == {"anger": 3, "happy": 2, "neutral": 1, "sadness": 0}


def test_majority_class_has_high_accuracy_but_chance_uar():
    references = [0] * 8 + [1, 2]
    result = EmotionClassificationMetric().compute(predictions=[0] * 10, references=references, num_classes=3)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["uar"] == pytest.approx(1 / 3)


def test_per_group_metrics():
    result = EmotionClassificationMetric().compute(
        predictions=[0, 1, 1, 1], references=[0, 1, 0, 1], label_names=["a", "b"], groups=["x", "x", "y", "y"]
    )
    assert result["per_group"]["x"]["accuracy"] == 1.0
    assert result["per_group"]["y"]["accuracy"] == 0.5
    assert result["per_group"]["y"]["recall"] == {"a": 0.0, "b": 1.0}
    flat = flatten_metrics(result)
    assert flat["corpus_y_uar"] == pytest.approx(0.5)
    assert flat["corpus_x_accuracy"] == 1.0


def test_bad_ids_and_groups_are_errors():
    with pytest.raises(ValueError, match="class ids"):
        EmotionClassificationMetric().compute(predictions=[5], references=[0], label_names=["a", "b"])
    with pytest.raises(ValueError, match="groups"):
        EmotionClassificationMetric().compute(
            predictions=[0], references=[0], num_classes=2, groups=["x", "y"]
        )


def test_compute_metrics_for_trainer_gives_the_overall_flat_figures():
    compute = ComputeMetrics(NAMES)
    logits = np.eye(4)[[0, 1, 2, 2]]
    flat = compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 3])))
    assert flat["accuracy"] == pytest.approx(0.75)
    assert flat["uar"] == pytest.approx(0.75)
    assert flat["recall_sadness"] == 0.0
    assert not any(key.startswith("corpus_") for key in flat)  # per corpus: predict_with_details
    # stateless: the same call gives the same figures (no state kept between evaluations)
    assert compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 3]))) == flat
