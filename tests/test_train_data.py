"""AudioCollator (random / centre crops, speed perturbation), SERTrainer's separate evaluation collator
and the class-weighted loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import TrainingArguments

from modeling.feature_extraction import SERFeatureExtractor
from training.data import AudioCollator
from training.trainer import SERTrainer

SR = 16_000


def tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.sin(2 * np.pi * frequency * t).astype(np.float32)


def peak_frequency(clip: torch.Tensor, length: int) -> float:
    spectrum = np.abs(np.fft.rfft(clip[:length].numpy()))
    return float(np.fft.rfftfreq(length, 1 / SR)[spectrum.argmax()])


def test_random_crop_draws_new_windows_and_centre_crop_takes_the_middle():
    ramp = np.arange(3 * SR, dtype=np.float32)
    no_norm = SERFeatureExtractor(do_normalize=False)
    train = AudioCollator(no_norm, max_samples=SR, random_crop=True)
    torch.manual_seed(0)
    starts = {int(train([{"input_values": ramp, "label": 0}])["input_values"][0, 0]) for _ in range(8)}
    assert len(starts) > 1 and all(0 <= s <= 2 * SR for s in starts)
    centre = AudioCollator(no_norm, max_samples=SR, random_crop=False)([{"input_values": ramp}])
    assert centre["input_values"].shape == (1, SR) and int(centre["input_values"][0, 0]) == SR
    assert "labels" not in centre


def test_speed_perturbation_scales_length_and_pitch_together():
    collator = AudioCollator(SERFeatureExtractor(), speed_factors=[1.25])
    batch = collator(
        [{"input_values": tone(400.0, 1.0), "label": 1}, {"input_values": tone(400.0, 0.5), "label": 2}]
    )
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert lengths == [pytest.approx(SR / 1.25, abs=2), pytest.approx(SR / 2.5, abs=2)]
    assert peak_frequency(batch["input_values"][0], lengths[0]) == pytest.approx(500.0, abs=2.0)
    assert batch["labels"].tolist() == [1, 2]


def test_speed_perturbation_never_makes_a_clip_shorter_than_the_model_minimum():
    clip = tone(400.0, 0.5)
    collator = AudioCollator(SERFeatureExtractor(), speed_factors=[2.0], min_samples=len(clip) - 10)
    batch = collator([{"input_values": clip, "label": 0}])
    assert batch["input_values"].shape == (1, len(clip))  # the factor is skipped, the clip kept as it is


def test_the_trainer_evaluates_with_its_evaluation_collator(tmp_path):
    train_collator = AudioCollator(SERFeatureExtractor(), speed_factors=[0.5])
    eval_collator = AudioCollator(SERFeatureExtractor())
    data = [{"input_values": tone(300.0, 0.25), "label": 0}] * 2
    trainer = SERTrainer(
        model=torch.nn.Linear(1, 1),
        args=TrainingArguments(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, remove_unused_columns=False
        ),
        train_dataset=data,
        eval_dataset=data,
        data_collator=train_collator,
        eval_data_collator=eval_collator,
    )
    assert next(iter(trainer.get_train_dataloader()))["input_values"].shape[-1] == SR // 2  # slowed down
    assert next(iter(trainer.get_eval_dataloader()))["input_values"].shape[-1] == SR // 4
    assert next(iter(trainer.get_test_dataloader(data)))["input_values"].shape[-1] == SR // 4
    assert trainer.data_collator is train_collator


def test_class_weights_are_balanced_and_zero_for_absent_classes():
    from training import class_weights

    assert torch.allclose(class_weights([0, 1, 2, 0, 1, 2], 3), torch.ones(3))
    # n / (k * n_c) with k = all 3 classes: 4 / 9, 4 / 3, and 0 for the class with no example.
    assert torch.allclose(class_weights([0, 0, 0, 1], 3), torch.tensor([4 / 9, 4 / 3, 0.0]))


class _Logits(torch.nn.Module):
    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, index: torch.Tensor):
        return {"logits": self.logits[index]}


def test_class_weights_reach_the_loss_through_compute_loss_func(tmp_path):
    from training.trainer import WeightedCrossEntropy

    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 2])
    weights = torch.tensor([0.5, 2.0, 2.0])
    loss_func = WeightedCrossEntropy(weights)
    trainer = SERTrainer(
        model=_Logits(logits.clone()),
        args=TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True),
        compute_loss_func=loss_func,
    )
    loss = trainer.compute_loss(trainer.model, {"index": torch.arange(6), "labels": labels.clone()})
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=weights)
    assert torch.allclose(loss, expected) and not torch.allclose(
        loss, torch.nn.functional.cross_entropy(logits, labels)
    )
    # with the clips of the whole accumulated batch: two halves add up to the loss of the whole batch
    per_item = torch.nn.functional.cross_entropy(logits, labels, weight=weights, reduction="none")
    halves = sum(
        loss_func({"logits": logits[part]}, labels[part], num_items_in_batch=torch.tensor(6))
        for part in (slice(0, 3), slice(3, 6))
    )
    assert torch.allclose(halves, per_item.sum() / 6)


def test_class_weights_reach_every_learner_of_a_model_with_heads():
    """Each branch (the network, the functionals head, the energy peaks head) on its own weighted
    cross-entropy, the heads' penalty once; unit weights give the model's own loss."""
    from modeling.cnn import CNNConfig, CNNForAudioClassification
    from training.trainer import WeightedCrossEntropy

    torch.manual_seed(0)
    config = CNNConfig(
        conv_channels=[8, 8], attention_size=8, classifier_hidden_size=8, num_labels=3, energy_peaks_head=True
    )
    model = CNNForAudioClassification(config).eval()
    for head in (model.functionals_head, model.energy_peaks_head):
        torch.nn.init.normal_(head.weight, std=0.1)
    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    with torch.no_grad():
        out = model(torch.randn(6, 8000), labels=labels)
    branches = out.branch_logits
    assert len(branches) == 3
    torch.testing.assert_close(out.logits, sum(branches))
    assert out.penalty > 0
    torch.testing.assert_close(WeightedCrossEntropy(torch.ones(3))(out, labels), out.loss)
    weights = torch.tensor([0.5, 2.0, 2.0])
    ce = torch.nn.functional.cross_entropy
    expected = sum(ce(p, labels, weight=weights) for p in branches)
    torch.testing.assert_close(WeightedCrossEntropy(weights)(out, labels), expected + out.penalty)
    per_item = sum(ce(p, labels, weight=weights, reduction="none") for p in branches)
    halves = 0.0
    for part in (slice(0, 2), slice(2, 6)):
        piece = {"logits": out.logits[part], "branch_logits": tuple(p[part] for p in branches)}
        piece["penalty"] = out.penalty
        halves += WeightedCrossEntropy(weights)(piece, labels[part], num_items_in_batch=torch.tensor(6))
    torch.testing.assert_close(halves, per_item.sum() / 6 + out.penalty)


def test_prepared_splits_keep_the_corpus_cache_and_the_collator_decodes_it(tmp_path):
    """prepare_model_inputs writes no second cache: lengths come from the WAV headers, the audio stays the
    corpus cache's bytes, and the collator decodes them to the same samples."""
    import datasets

    from loaders.audio import encode_wav
    from training.data import prepare_model_inputs

    clips = [tone(200, 0.5), tone(300, 1.25), tone(400, 0.05)]  # the last is under the minimum
    wavs = [{"bytes": encode_wav(clip, SR), "path": f"c{i}.wav"} for i, clip in enumerate(clips)]
    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=SR),
            "label": datasets.ClassLabel(names=["a", "b"]),
            "corpus": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"audio": wavs, "label": [0, 1, 0], "corpus": ["x"] * 3}, features=features
    )
    ds.save_to_disk(tmp_path / "corpus")
    ds = datasets.load_from_disk(tmp_path / "corpus")
    files_before = sorted(p.name for p in (tmp_path / "corpus").iterdir())

    prepared, dropped = prepare_model_inputs(
        datasets.DatasetDict({"train": ds, "test": ds}), max_duration_seconds=1.0, min_samples=SR // 10
    )
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir()) == files_before
    assert not ds.cache_files or all("cache-" not in f["filename"] for f in prepared["train"].cache_files)
    assert dropped == {"train": 1, "test": 1}
    assert prepared["test"]["length"] == [len(clips[0]), len(clips[1])]
    assert prepared["train"]["length"] == [len(clips[0]), SR]  # capped at the crop for length grouping

    collate = AudioCollator(SERFeatureExtractor(do_normalize=False), max_samples=SR, random_crop=False)
    batch = collate([prepared["test"][0], prepared["test"][1]])
    assert batch["input_values"].shape == (2, SR)
    np.testing.assert_allclose(batch["input_values"][0, : len(clips[0])], clips[0], atol=1 / 32768)
    assert batch["attention_mask"][0].sum() == len(clips[0])
    assert batch["labels"].tolist() == [0, 1]


def test_evaluation_loss_is_the_models_cross_entropy_not_its_training_objective(tmp_path):
    """A two-branch model trains on each branch's cross-entropy plus the head's L2 penalty; its evaluation
    loss is the (class-weighted) cross-entropy of what it predicts, whatever the penalty's size."""
    from modeling.cnn import CNNConfig, CNNForAudioClassification
    from training.trainer import WeightedCrossEntropy

    torch.manual_seed(0)
    config = CNNConfig(conv_channels=[8, 8], attention_size=8, classifier_hidden_size=8, num_labels=3)
    config.functionals_l2 = 100.0  # a head refitted at large C: a penalty of thousands at the config's rate
    model = CNNForAudioClassification(config)
    torch.nn.init.normal_(model.functionals_head.weight, std=1.0)
    clips, labels = torch.randn(6, 8000), torch.tensor([0, 0, 0, 0, 1, 2])
    weights = torch.tensor([0.5, 2.0, 2.0])
    trainer = SERTrainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=4
        ),
        compute_loss_func=WeightedCrossEntropy(weights),
    )
    dataset = [{"input_values": clip, "labels": label} for clip, label in zip(clips, labels, strict=True)]
    metrics = trainer.evaluate(dataset)

    model.eval()
    with torch.no_grad():
        out = model(clips, labels=labels)
    assert out.penalty > 100  # the objective would be dominated by it
    batches = [slice(0, 4), slice(4, 6)]  # the Trainer averages the batches' losses over the clips
    expected = sum(
        torch.nn.functional.cross_entropy(out.logits[part], labels[part], weight=weights) * len(labels[part])
        for part in batches
    ) / len(labels)
    assert metrics["eval_loss"] == pytest.approx(expected.item(), rel=1e-4)
    # training still sees the objective: every branch's cross-entropy plus the penalty
    model.train()
    torch.manual_seed(1)
    training_loss = trainer.compute_loss(model, {"input_values": clips, "labels": labels})
    assert training_loss > out.penalty
