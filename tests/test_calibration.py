"""training/calibration.py: what is fitted after training on validation clips: the functionals head refitted
as the baseline fits its classifier, and the weights of a two-branch model's logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from training import calibration
from training.calibration import (
    HEAD_C_CRITERION,
    BranchPredictions,
    calibrate_branch_weights,
    correct_class_prior,
    fit_branch_weights,
    fit_head_like_baseline,
    gate_fitted_heads,
    head_lowers_cross_entropy,
    linear_head_inputs,
    predict_branches,
    refit_functionals_head,
)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels)))


def two_branches(
    seed: int, clips: int, network: tuple[float, float], head: tuple[float, float], classes: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits of a network and a head on random labels: each branch, given as (share right, scale), says the
    label on that share of the clips and a random class on the rest, with that margin, plus noise (std 1 for
    the network, 0.5 for the head)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, clips)
    logits = []
    for (right, scale), noise in ((network, 1.0), (head, 0.5)):
        says = np.where(rng.random(clips) < right, labels, rng.integers(0, classes, clips))
        logits.append(scale * np.eye(classes)[says] + rng.normal(0, noise, (clips, classes)))
    return logits[0], logits[1], labels


def test_the_branch_that_is_right_on_the_validation_clips_gets_the_larger_weight():
    """An overconfident network that is right on half the clips beside a modest head that is right on most
    (the development corpora's picture): the head's weight grows, the network's shrinks, and the weighted
    sum has a lower cross-entropy than the plain sum."""
    network, head, labels = two_branches(seed=0, clips=200, network=(0.5, 8.0), head=(0.8, 1.5))
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


def test_a_network_penalty_shrinks_the_sum_towards_the_head_alone():
    """The penalty on the network's weight takes it towards 0 as it grows; at a large one the head's weight
    is what the head alone would get (its cross-entropy plus the prior on log b, found here on a grid)."""
    network, head, labels = two_branches(seed=1, clips=120, network=(0.6, 4.0), head=(0.8, 1.0))
    free = fit_branch_weights(network, head, labels)
    mild = fit_branch_weights(network, head, labels, network_penalty=0.1)
    strong = fit_branch_weights(network, head, labels, network_penalty=100.0)
    assert strong[0] < 0.01 < mild[0] < free[0]
    grid = np.exp(np.linspace(-2.0, 3.0, 2001))
    objective = [cross_entropy(b * head, labels) + 0.01 * np.log(b) ** 2 for b in grid]
    assert strong[1] == pytest.approx(grid[int(np.argmin(objective))], rel=0.01)


@pytest.mark.parametrize("energy_peaks_head", [False, True], ids=["defaults", "with-energy-peaks"])
def test_weights_fitted_through_the_trainer_are_those_of_the_model_s_own_branches(
    make_tiny_cnn, tmp_path, energy_peaks_head
):
    """`calibrate_branch_weights` takes the network's and the head's logits (in that order) from
    `Trainer.predict` over the split, fits them, and writes the weights into the model's config. The head's
    logits are the sum of every head's (the functionals head and the raw contours head in one branch, and an
    energy peaks head where the model has one): one weight scales them."""
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
    torch.nn.init.normal_(model.raw_contours_head.weight, std=0.3)
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
    # With a penalty on the network's weight (`--branch_network_penalty`, the S4's recipe) it reaches the fit.
    penalised = calibrate_branch_weights(trainer, dataset, network_penalty=0.3)
    expected = fit_branch_weights(network, head, labels, network_penalty=0.3)
    # abs: the penalty can drive the network's weight to its bound at 0, where the optimiser stops at a few
    # 1e-8 that differ between two fits of the same logits (2.1e-8 against 2.4e-8 once, in CI).
    assert penalised == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert penalised[0] < weights[0]
    assert model.config.branch_weights == list(penalised)


def test_a_model_without_a_head_is_left_alone(tmp_path):
    from transformers import Trainer, TrainingArguments

    from modeling import CNNConfig, CNNForAudioClassification

    model = CNNForAudioClassification(CNNConfig(conv_channels=[8], functionals_head=False, num_labels=4))
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    assert calibrate_branch_weights(trainer, None) is None
    assert model.config.branch_weights == [1.0, 1.0]


@pytest.mark.parametrize("criterion", ["uar", "log_loss"])
@pytest.mark.parametrize("classes", [4, 2])
def test_the_refitted_head_scores_as_the_baseline_s_pipeline_on_the_raw_inputs(classes, criterion):
    """The baseline's recipe (scaler + logistic regression, C chosen on validation by `criterion`) folded into
    one linear map: its logits are the pipeline's decision function (two classes: one score, as two logits
    half each way)."""
    from evaluation.opensmile_baseline import select_c

    rng = np.random.default_rng(0)
    means = rng.normal(0, 1, (classes, 12))
    labels = {split: rng.integers(0, classes, n) for split, n in (("train", 80), ("validation", 40))}
    # Inputs far from zero mean and unit variance: the scaler's folding shows.
    inputs = {split: 3.0 + 5.0 * (means[y] + rng.normal(0, 1.5, (len(y), 12))) for split, y in labels.items()}
    names = [f"class{i}" for i in range(classes)]
    fit = fit_head_like_baseline(
        inputs["train"], labels["train"], inputs["validation"], labels["validation"], names, criterion
    )
    pipeline, c, *_ = select_c(
        inputs["train"],
        labels["train"],
        inputs["validation"],
        labels["validation"],
        names,
        classifier="logreg",
        criterion=criterion,
    )
    logits = inputs["validation"] @ fit.weight.T + fit.bias
    assert fit.c == c and logits.shape == (40, classes)
    expected = pipeline.decision_function(inputs["validation"])
    if classes == 2:
        np.testing.assert_allclose(logits[:, 1] - logits[:, 0], expected, rtol=1e-6, atol=1e-8)
    else:
        np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(logits.argmax(1), pipeline.predict(inputs["validation"]))


def test_the_refit_chooses_c_by_the_validation_cross_entropy_unless_told():
    """`run_train.py`'s refit (no criterion given) keeps the C of the lowest validation cross-entropy, not
    the baseline's UAR choice: on clips that every large C separates, UAR ties where the cross-entropy does
    not."""
    from evaluation.opensmile_baseline import select_c

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 8)) * 3.0
    labels = {split: np.arange(n) % 3 for split, n in (("train", 60), ("validation", 30))}
    inputs = {split: centres[y] + rng.normal(size=(len(y), 8)) for split, y in labels.items()}
    args = (inputs["train"], labels["train"], inputs["validation"], labels["validation"], ["a", "b", "c"])
    by_uar, by_log_loss = (select_c(*args, classifier="logreg", criterion=c)[1] for c in ("uar", "log_loss"))
    assert by_uar != by_log_loss
    assert HEAD_C_CRITERION == "log_loss" and fit_head_like_baseline(*args).c == by_log_loss
    assert fit_head_like_baseline(*args, criterion="uar").c == by_uar


def test_a_refit_needs_training_clips_of_every_class():
    rng = np.random.default_rng(0)
    inputs, labels = rng.normal(0, 1, (20, 5)), np.arange(20) % 2  # classes 0 and 1 of 3
    with pytest.raises(ValueError, match="training clips lack sad: the head cannot be refitted"):
        fit_head_like_baseline(inputs, labels, inputs, labels, ["angry", "happy", "sad"])


def tiny_trainer(model, tmp_path):
    from transformers import TrainingArguments

    from modeling.feature_extraction import SERFeatureExtractor
    from training.data import AudioCollator
    from training.trainer import SERTrainer

    extractor = SERFeatureExtractor()
    # run_train.py's length-grouped sampler: evaluation must still keep the clips' order (the gate pairs
    # the branches' logits with a head's inputs clip by clip).
    args = TrainingArguments(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        per_device_eval_batch_size=5,
        train_sampling_strategy="group_by_length",
        remove_unused_columns=False,  # as run_train.py: the clips' `length` reaches the eval sampler
    )
    collator = AudioCollator(extractor, random_crop=False)
    return SERTrainer(model=model, args=args, data_collator=collator, processing_class=extractor), extractor


@pytest.mark.parametrize(
    "kind,heads_after_training",
    [
        ("cnn", ()),
        ("cnn", ("raw_contours_head", "spectrum_head")),
        ("s4", ("smoothed_contours_head", "mfcc_head", "spectrum_head")),
    ],
    ids=[
        "cnn-functionals-head",
        "cnn-with-raw-contours-and-spectrum",
        "s4-with-smoothed-contours-mfccs-and-spectrum",
    ],
)
def test_the_head_refitted_through_the_trainer_is_the_baseline_s_fit_of_its_own_inputs(
    make_tiny_cnn, tmp_path, kind, heads_after_training
):
    """`refit_functionals_head` reads the head's standardised inputs of every clip (batched and padded, as
    evaluation batches them), fits them as the baseline would and writes the result into the head: its logits
    are then the fitted map of the inputs that one clip at a time gives. A head fitted after training only
    (the CNN's raw contours and spectrum heads, the S4's smoothed contours, MFCC and spectrum heads) is fitted
    the same way on its own inputs, with its own C. The network is untouched. Then the S4's gated heads
    (`gate_fitted_heads`): the MFCC head is put back to zero when it only adds noise, the spectrum head (the
    tones' spectra say the class) is kept, judged without the MFCC head, and the branches it returns are the
    model's own."""
    import datasets
    from conftest import TINY_CNN_LABELS

    from modeling import S4Config, S4ForAudioClassification

    rng = np.random.default_rng(0)
    labels = (np.arange(36) % len(TINY_CNN_LABELS)).tolist()
    # A tone says the class (and lengths vary: the batches are padded).
    clips = []
    for y in labels:
        t = np.arange(int(rng.integers(6000, 9000))) / 16000
        tone = np.sin(2 * np.pi * (200.0, 500.0, 1000.0, 2000.0)[y] * t)
        clips.append((tone + 0.5 * rng.standard_normal(len(t))).astype(np.float32))
    if kind == "cnn":
        model = make_tiny_cnn(
            raw_contours_head=bool(heads_after_training), spectrum_head=bool(heads_after_training)
        )
    else:
        torch.manual_seed(0)
        config = S4Config(
            d_model=8,
            n_layers=1,
            d_state=8,
            mel_bins=16,
            smoothed_contours_head=True,
            mfcc_head=16,
            spectrum_head=True,
            id2label=dict(enumerate(TINY_CNN_LABELS)),
            label2id={name: i for i, name in enumerate(TINY_CNN_LABELS)},
        )
        model = S4ForAudioClassification(config).eval()
    heads = ["functionals_head", *heads_after_training]
    heads_prefix = tuple(heads)
    network_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(heads_prefix)}
    trainer, extractor = tiny_trainer(model, tmp_path)
    # With the clips' lengths, as prepared splits carry them: evaluation batches by length, and the branches'
    # logits come back in the clips' order.
    train, validation = (
        datasets.Dataset.from_dict(
            {"input_values": part, "label": part_labels, "length": [len(clip) for clip in part]}
        )
        for part, part_labels in ((clips[:24], labels[:24]), (clips[24:], labels[24:]))
    )
    refit = refit_functionals_head(trainer, train, validation, TINY_CNN_LABELS)

    def one_by_one(split_clips, head):
        """The head's standardised inputs and its logits, clip by clip."""
        inputs, logits = [], []
        hook = getattr(model, head).register_forward_hook(
            lambda module, args, output: logits.append(output[0].double().numpy())
        )
        norm_hook = getattr(model, head).norm.register_forward_hook(
            lambda module, args, output: inputs.append(output[0, :, 0].double().numpy())
        )
        with torch.no_grad():
            for clip in split_clips:
                model(**extractor(clip, sampling_rate=16000, return_tensors="pt"))
        hook.remove()
        norm_hook.remove()
        return np.stack(inputs), np.stack(logits)

    for head in heads:
        train_inputs, _ = one_by_one(clips[:24], head)
        validation_inputs, validation_logits = one_by_one(clips[24:], head)
        expected = fit_head_like_baseline(
            train_inputs, np.array(labels[:24]), validation_inputs, np.array(labels[24:]), TINY_CNN_LABELS
        )
        assert refit.c[head] == expected.c
        np.testing.assert_allclose(
            validation_logits, validation_inputs @ expected.weight.T + expected.bias, atol=1e-3
        )
        # What the gate judges: the same logits, in the validation clips' order.
        np.testing.assert_allclose(refit.validation_logits[head], validation_logits, atol=1e-3)
        assert np.abs(validation_logits).max() > 0.01  # the head started at zero
    for name, value in model.state_dict().items():
        if name in network_before:
            torch.testing.assert_close(value, network_before[name])
    if kind == "s4":
        with torch.no_grad():
            torch.nn.init.normal_(model.mfcc_head.weight, std=1.0)  # noise, far louder than the other heads
        before = predict_branches(trainer, validation)
        collator, batch_size = trainer.data_collator, trainer.args.per_device_eval_batch_size
        inputs, _ = linear_head_inputs(
            model, validation, collator, batch_size, ("mfcc_head", "spectrum_head")
        )
        gated_logits = {
            name: inputs[name] @ getattr(model, name).weight.double().numpy().T
            + getattr(model, name).bias.double().numpy()
            for name in inputs
        }
        branches, kept = gate_fitted_heads(model, before, gated_logits)
        assert kept == {"mfcc_head": False, "spectrum_head": True}
        assert not model.mfcc_head.weight.any() and not model.mfcc_head.bias.any()
        assert model.spectrum_head.weight.any()
        after = predict_branches(trainer, validation)
        np.testing.assert_allclose(branches.head, after.head, atol=1e-3)
        np.testing.assert_allclose(branches.network, after.network)
        np.testing.assert_allclose(after.head, before.head - gated_logits["mfcc_head"], atol=1e-3)
        # The spectrum head was judged against the branch without the MFCC head, which had been put back.
        assert head_lowers_cross_entropy(
            before.network,
            after.head - gated_logits["spectrum_head"],
            gated_logits["spectrum_head"],
            before.labels,
        )


def test_a_gated_head_stays_only_where_it_lowers_the_validation_cross_entropy():
    """`head_lowers_cross_entropy`: a head that tells the classes apart beside a weak one lowers the weighted
    sum's cross-entropy (the branch weights fitted with it and without it); one that adds noise does not."""
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 4
    one_hot = np.eye(4)[labels]
    network = rng.normal(size=(80, 4))  # says nothing
    weak_head = 0.5 * one_hot + rng.normal(size=(80, 4))
    assert head_lowers_cross_entropy(network, weak_head, 2.0 * one_hot + rng.normal(size=(80, 4)), labels)
    assert not head_lowers_cross_entropy(network, weak_head, rng.normal(scale=2.0, size=(80, 4)), labels)
    # The same with the S4's network penalty.
    assert not head_lowers_cross_entropy(
        network, weak_head, rng.normal(scale=2.0, size=(80, 4)), labels, network_penalty=0.01
    )


def test_the_refit_fits_the_heads_it_is_given_and_leaves_the_others_as_trained(make_tiny_cnn, tmp_path):
    """`heads` names what `refit_functionals_head` fits (a replay measures another set so): the energy peaks
    head left out keeps its trained weights; named, it is fitted as the others are, on its own inputs with its
    own C."""
    import datasets
    from conftest import TINY_CNN_LABELS

    rng = np.random.default_rng(1)
    labels = (np.arange(32) % len(TINY_CNN_LABELS)).tolist()
    # Louder clips for later classes: the energy contour says the class.
    clips = [
        ((1 + y) * rng.standard_normal(int(rng.integers(6000, 9000)))).astype(np.float32) for y in labels
    ]
    model = make_tiny_cnn(energy_peaks_head=True)
    with torch.no_grad():
        torch.nn.init.normal_(model.energy_peaks_head.weight, std=0.3)  # as if trained
    trained = model.energy_peaks_head.weight.clone()
    trainer, _ = tiny_trainer(model, tmp_path)
    train, validation = (
        datasets.Dataset.from_dict({"input_values": part, "label": part_labels})
        for part, part_labels in ((clips[:24], labels[:24]), (clips[24:], labels[24:]))
    )
    refit = refit_functionals_head(trainer, train, validation, TINY_CNN_LABELS, heads=("functionals_head",))
    assert set(refit.c) == {"functionals_head"}
    torch.testing.assert_close(model.energy_peaks_head.weight, trained)

    both = ("functionals_head", "energy_peaks_head")
    refit = refit_functionals_head(trainer, train, validation, TINY_CNN_LABELS, heads=both)
    assert set(refit.c) == set(both)
    collator, batch_size = trainer.data_collator, trainer.args.per_device_eval_batch_size
    (train_inputs, train_labels), (validation_inputs, validation_labels) = (
        linear_head_inputs(model, split, collator, batch_size, ("energy_peaks_head",))
        for split in (train, validation)
    )
    expected = fit_head_like_baseline(
        train_inputs["energy_peaks_head"],
        train_labels,
        validation_inputs["energy_peaks_head"],
        validation_labels,
        TINY_CNN_LABELS,
    )
    assert refit.c["energy_peaks_head"] == expected.c
    head = model.energy_peaks_head
    np.testing.assert_allclose(head.weight.detach().double().numpy(), expected.weight, rtol=1e-4)
    np.testing.assert_allclose(head.bias.detach().double().numpy(), expected.bias, rtol=1e-4)


def test_a_head_without_training_clips_of_every_class_stays_as_trained(make_tiny_cnn, tmp_path, caplog):
    import datasets
    from conftest import TINY_CNN_LABELS

    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(8000).astype(np.float32) for _ in range(12)]
    model = make_tiny_cnn()
    trainer, _ = tiny_trainer(model, tmp_path)
    train = datasets.Dataset.from_dict({"input_values": clips[:8], "label": [0, 1] * 4})
    validation = datasets.Dataset.from_dict({"input_values": clips[8:], "label": [0, 1, 2, 3]})
    with caplog.at_level("WARNING"):
        assert refit_functionals_head(trainer, train, validation, TINY_CNN_LABELS) is None
    assert (
        "The functionals head stays as trained (a head fitted after training only, at zero): the training"
        in caplog.text
    )
    assert not model.functionals_head.weight.any()
    assert not model.raw_contours_head.weight.any()


def test_gated_heads_are_judged_in_order_against_the_heads_kept_before_them(monkeypatch):
    """`gate_fitted_heads` is greedy in `GATED_HEADS`' order: the MFCC head is judged against the head's
    branch without either gated head, the spectrum head against that plus the MFCC head where it was kept; a
    head put back to zero leaves the returned branch."""
    rng = np.random.default_rng(0)
    network, rest = rng.normal(size=(8, 4)), rng.normal(size=(8, 4))
    inputs = {name: rng.normal(size=(8, 3)) for name in ("mfcc_head", "spectrum_head")}
    model = torch.nn.Module()
    logits = {}
    for name in inputs:
        setattr(model, name, torch.nn.Linear(3, 4).double().requires_grad_(False))
        head = getattr(model, name)
        logits[name] = inputs[name] @ head.weight.numpy().T + head.bias.numpy()
    branches = BranchPredictions(
        network=network, head=rest + logits["mfcc_head"] + logits["spectrum_head"], labels=np.arange(8) % 4
    )
    judged = []

    def keep_the_first(network_logits, other_heads_logits, head_logits, labels, network_penalty):
        judged.append(other_heads_logits.copy())
        return len(judged) == 1

    monkeypatch.setattr(calibration, "head_lowers_cross_entropy", keep_the_first)
    # The functionals head's logits are not gated: only `GATED_HEADS` are judged.
    returned, kept = gate_fitted_heads(model, branches, {**logits, "functionals_head": rest})
    assert kept == {"mfcc_head": True, "spectrum_head": False}
    np.testing.assert_allclose(judged[0], rest)
    np.testing.assert_allclose(judged[1], rest + logits["mfcc_head"])
    np.testing.assert_allclose(returned.head, rest + logits["mfcc_head"])
    assert model.mfcc_head.weight.any() and not model.spectrum_head.weight.any()


@pytest.mark.parametrize("kind", ["cnn", "s4"])
def test_the_training_class_prior_comes_out_of_the_network_and_the_heads_trained_beside_it(
    make_tiny_cnn, kind
):
    """The network's logits and those of the heads that train beside it by plain cross-entropy (the
    functionals head, the energy peaks head, kept as trained) lose the centred log share of each class in the
    training labels; a head fitted after training with balanced class weights keeps its bias."""
    from conftest import TINY_CNN_LABELS

    from modeling import S4Config, S4ForAudioClassification

    if kind == "cnn":
        model = make_tiny_cnn(energy_peaks_head=True, raw_contours_head=True)
        fitted_after_training = model.raw_contours_head
    else:
        torch.manual_seed(0)
        model = S4ForAudioClassification(
            S4Config(d_model=8, n_layers=1, d_state=8, mel_bins=16, num_labels=len(TINY_CNN_LABELS))
        ).eval()
        fitted_after_training = model.smoothed_contours_head
    with torch.no_grad():  # trained heads have biases of their own
        for head in (model.functionals_head, model.energy_peaks_head, fitted_after_training):
            head.bias.copy_(torch.randn(len(TINY_CNN_LABELS)))
    kept_bias = fitted_after_training.bias.clone()
    clips = torch.randn(3, 16000)
    with torch.inference_mode():
        before = model(clips).branch_logits
    train_labels = [0] * 6 + [1] * 3 + [2] * 2 + [3] * 1
    shift = correct_class_prior(model, train_labels, TINY_CNN_LABELS)
    log_shares = np.log(np.array([6, 3, 2, 1]) / 12)
    expected = torch.as_tensor(log_shares - log_shares.mean(), dtype=torch.float32)
    assert list(shift) == TINY_CNN_LABELS
    np.testing.assert_allclose(list(shift.values()), log_shares - log_shares.mean(), rtol=1e-12)
    with torch.inference_mode():
        after = model(clips).branch_logits
    network, head_branch, energy_peaks = (a - b for a, b in zip(after, before, strict=True))
    for difference in (network, head_branch, energy_peaks):  # the head branch: one shift, its trained head's
        torch.testing.assert_close(difference, -expected.expand_as(difference))
    assert torch.equal(fitted_after_training.bias, kept_bias)


@pytest.mark.parametrize("classes", [4, 3, 7])
def test_balanced_training_clips_leave_the_network_as_it_was(make_tiny_cnn, classes):
    names = [f"class{i}" for i in range(classes)]
    model = make_tiny_cnn(labels=names)
    bias = model.classifier[-1].bias.clone()
    shift = correct_class_prior(model, list(range(classes)) * 5, names)
    assert shift == {name: 0.0 for name in names}
    assert torch.equal(model.classifier[-1].bias, bias)


def test_a_class_without_training_clips_keeps_the_prior_and_says_so(make_tiny_cnn, caplog):
    model = make_tiny_cnn()
    bias = model.classifier[-1].bias.clone()
    with caplog.at_level("WARNING"):
        assert correct_class_prior(model, [0, 1, 1, 2], ["anger", "happy", "neutral", "sadness"]) is None
    assert "the training clips lack sadness" in caplog.text
    assert torch.equal(model.classifier[-1].bias, bias)


def test_a_model_without_an_output_layer_to_correct_is_refused():
    class NoClassifier(torch.nn.Module):
        config = type("Config", (), {"num_labels": 2})()

    with pytest.raises(ValueError, match="NoClassifier: no output layer .* --correct_class_prior false"):
        correct_class_prior(NoClassifier(), [0, 1], ["a", "b"])


def test_taking_the_prior_out_raises_the_uar_of_a_calibrated_classifier_on_unbalanced_classes():
    """A classifier whose logits are the exact posterior of two unit Gaussians under the training prior (4:1)
    favours the frequent class; without the prior its argmax is the decision with the highest expected UAR
    (equal recall at the midpoint), and the UAR on balanced test clips rises."""

    class Posterior(torch.nn.Module):
        config = type("Config", (), {"num_labels": 2})()

        def __init__(self):
            super().__init__()
            # log N(x; -1, 1) + log prior, up to a common term: logit_c = mean_c * x + log prior_c
            self.classifier = torch.nn.Linear(1, 2)
            with torch.no_grad():
                self.classifier.weight.copy_(torch.tensor([[-1.0], [1.0]]))
                self.classifier.bias.copy_(torch.log(torch.tensor([0.8, 0.2])))

        def forward(self, x):
            return self.classifier(x)

    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 5000)
    x = torch.as_tensor(rng.normal(np.where(labels == 1, 1.0, -1.0), 1.0)[:, None], dtype=torch.float32)
    model = Posterior()
    with torch.no_grad():
        before = balanced_accuracy_score(labels, model(x).argmax(1).numpy())
        correct_class_prior(model, [0] * 8 + [1] * 2, ["frequent", "rare"])
        after = balanced_accuracy_score(labels, model(x).argmax(1).numpy())
    assert after > before + 0.03  # 0.841 against 0.788 in expectation
    assert abs(after - 0.841) < 0.01  # Phi(1): both recalls at the midpoint
