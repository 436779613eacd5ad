"""training/calibration.py: the weights of a two-branch model's logits, fitted on validation clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from training.calibration import calibrate_branch_weights, fit_branch_weights


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)))


def test_the_branch_that_is_right_on_the_validation_clips_gets_the_larger_weight():
    """An overconfident network that is right on half the clips beside a modest head that is right on most
    (the development corpora's picture): the head's weight grows, the network's shrinks, and the weighted
    sum has a lower cross-entropy than the plain sum."""
    rng = np.random.default_rng(0)
    n, classes = 200, 4
    labels = rng.integers(0, classes, n)
    network_says = np.where(rng.random(n) < 0.5, labels, rng.integers(0, classes, n))
    network = 8.0 * np.eye(classes)[network_says] + rng.normal(0, 1, (n, classes))
    head_says = np.where(rng.random(n) < 0.8, labels, rng.integers(0, classes, n))
    head = 1.5 * np.eye(classes)[head_says] + rng.normal(0, 0.5, (n, classes))
    network_weight, head_weight = fit_branch_weights(network, head, labels)
    assert network_weight < 1.0 < head_weight
    weighted = network_weight * network + head_weight * head
    assert cross_entropy(weighted, labels) < cross_entropy(network + head, labels) - 0.1


def test_a_validation_set_the_model_separates_keeps_moderate_weights():
    """Both branches right on every clip: without the prior the cross-entropy falls as the weights grow (until
    the optimiser's tolerance stops them); with it they stay near the plain sum."""
    labels = np.arange(40) % 4
    logits = 2.0 * np.eye(4)[labels]
    unbounded = fit_branch_weights(logits, logits, labels, prior=0.0)
    bounded = fit_branch_weights(logits, logits, labels)
    assert 1.0 < min(bounded) <= max(bounded) < 2.0 < min(unbounded)


@pytest.mark.parametrize("energy_peaks_head", [False, True], ids=["two-branches", "with-energy-peaks"])
def test_weights_fitted_through_the_trainer_are_those_of_the_model_s_own_branches(
    make_tiny_cnn, tmp_path, energy_peaks_head
):
    """`calibrate_branch_weights` takes the network's and the head's logits (in that order) from
    `Trainer.predict` over the split, fits them, and writes the weights into the model's config. With an
    energy peaks head, the head's logits are the sum of both heads' (one weight scales them)."""
    import datasets
    from conftest import TINY_CNN_LABELS
    from transformers import TrainingArguments

    from modeling.feature_extraction import SERFeatureExtractor
    from training.data import AudioCollator
    from training.trainer import SERTrainer

    rng = np.random.default_rng(0)
    n = 24
    clips = [rng.standard_normal(8000).astype(np.float32) * rng.uniform(0.1, 2.0) for _ in range(n)]
    labels = rng.integers(0, len(TINY_CNN_LABELS), n).tolist()
    model = make_tiny_cnn(energy_peaks_head=energy_peaks_head)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.functionals_head.weight, std=0.3)  # the heads start at zero
    if energy_peaks_head:
        torch.nn.init.normal_(model.energy_peaks_head.weight, std=0.3)
    extractor = SERFeatureExtractor()
    trainer = SERTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=5
        ),
        data_collator=AudioCollator(extractor, random_crop=False),
    )
    dataset = datasets.Dataset.from_dict({"input_values": clips, "label": labels})
    weights = calibrate_branch_weights(trainer, dataset)

    with torch.no_grad():
        outputs = [model(**extractor(clip, sampling_rate=16000, return_tensors="pt")) for clip in clips]
    network = torch.cat([o.branch_logits[0] for o in outputs]).numpy()
    head = torch.cat([sum(o.branch_logits[1:]) for o in outputs]).numpy()
    assert all(len(o.branch_logits) == 2 + energy_peaks_head for o in outputs)
    expected = fit_branch_weights(network, head, labels)
    assert weights == pytest.approx(expected, rel=1e-3)
    assert weights != pytest.approx(expected[::-1], rel=1e-2)  # the order matters
    assert model.config.branch_weights == list(weights)


def test_a_model_without_a_head_is_left_alone(tmp_path):
    from transformers import Trainer, TrainingArguments

    from modeling import CNNConfig, CNNForAudioClassification

    model = CNNForAudioClassification(CNNConfig(conv_channels=[8], functionals_head=False, num_labels=4))
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    assert calibrate_branch_weights(trainer, None) is None
    assert model.config.branch_weights == [1.0, 1.0]
