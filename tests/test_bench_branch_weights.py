"""benchmarks/branch_weights.py: a saved two-branch run replayed branch by branch, with the weights fitted on
its validation clips, as `run_train.py` fits them."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, log_loss
from test_cnn import tiny_config

from benchmarks import branch_weights
from loaders import load_corpora
from modeling import CNNForAudioClassification, feature_extractor_for
from training.calibration import HEAD_C_CRITERION, fit_branch_weights

# 24 training, 12 validation and 16 test clips of the synthetic corpus
FOLD_ROWS = {"train": range(5, 960, 41), "validation": range(0, 960, 80), "test": range(7, 960, 60)}


@pytest.fixture(scope="module")
def corpus():
    return load_corpora(["synthetic"], None, split=None)


def saved_run(results_dir, dataset, functionals_head: bool = True):
    """A benchmark folder with one fold of the synthetic corpus: 24 training, 12 validation and 16 test
    clips."""
    labels = dataset.features["label"].names
    torch.manual_seed(0)
    config = tiny_config(
        functionals_head=functionals_head,
        energy_peaks_head=functionals_head,  # the third branch, summed with the functionals head's
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    model = CNNForAudioClassification(config).eval()
    if functionals_head:  # the heads start at zero
        torch.nn.init.normal_(model.functionals_head.weight, std=0.003)
        torch.nn.init.normal_(model.energy_peaks_head.weight, std=1.0)  # large: it shows beside a refit
    # Training-set statistics in the BatchNorms, as a trained model has them (a new one: mean 0, variance 1).
    clips = [np.asarray(dataset[i]["audio"]["array"][:8000], dtype=np.float32) for i in range(5, 960, 41)]
    with torch.no_grad():
        model.train()(torch.from_numpy(np.stack(clips)))
    model.eval()
    run_dir = results_dir / "runs" / "cnn" / "synthetic" / "fold-1"
    model.save_pretrained(run_dir / "model")
    feature_extractor_for(model).save_pretrained(run_dir / "model")
    mapping = {name: name for name in labels}
    (run_dir / "run_args.json").write_text(json.dumps({"model": "cnn", "fold": {"mapping": mapping}}))
    # The run evaluated the middle 0.5 s of each clip (the synthetic corpus's clips are longer).
    (run_dir / "model" / "run_args.json").write_text(json.dumps({"max_duration_seconds": 0.5}))
    write_folds_csv(results_dir, dataset)
    return model, FOLD_ROWS


def write_folds_csv(results_dir, dataset) -> None:
    """folds.csv of one fold of the synthetic corpus, `FOLD_ROWS` of `dataset`."""
    with (results_dir / "folds.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["corpus", "fold", "split", "file", "run"])
        for split, indices in FOLD_ROWS.items():
            for i in indices:
                writer.writerow(["synthetic", 1, split, dataset[i]["file"], "synthetic/fold-1"])


def outputs(model, corpus, indices):
    """(network logits, heads' logits, head inputs, labels) of the clips, each cut to its middle 0.5 s as the
    saved run's evaluation did; the heads' logits are the functionals head's plus the energy peaks head's, the
    head's inputs the functionals head's standardised functionals (its norm's output)."""
    extractor = feature_extractor_for(model)
    inputs = []
    hook = model.functionals_head.norm.register_forward_hook(
        lambda m, a, output: inputs.append(output[0, :, 0])
    )
    results = []
    for i in indices:
        samples = np.asarray(corpus[i]["audio"]["array"], dtype=np.float32)
        assert len(samples) > 8000
        middle = samples[(len(samples) - 8000) // 2 :][:8000]
        with torch.no_grad():
            results.append(model(**extractor(middle, sampling_rate=16000, return_tensors="pt")))
    hook.remove()
    network = torch.cat([o.branch_logits[0] for o in results]).double().numpy()
    head = torch.cat([sum(o.branch_logits[1:]) for o in results]).double().numpy()
    labels = np.array([corpus[i]["label"] for i in indices])
    return network, head, torch.stack(inputs).double().numpy(), labels


def test_a_replay_scores_each_branch_and_the_weights_fitted_on_validation(tmp_path, corpus, capsys):
    """Each score of the printed row is that of the saved model's own branches on the fold's test clips, cut
    as the run's evaluation cut them; the weights are those fitted on its validation clips."""
    model, rows = saved_run(tmp_path, corpus)
    branch_weights.main([str(tmp_path)])
    out = capsys.readouterr().out

    logits = {}
    for split in ("validation", "test"):
        network, head, _, labels = outputs(model, corpus, rows[split])
        logits[split] = network, head, labels
    weights = fit_branch_weights(*logits["validation"])
    network, head, labels = logits["test"]
    expected = {
        "network": network,
        "head": head,
        "sum": network + head,
        "fitted": weights[0] * network + weights[1] * head,
    }
    run_line = next(line for line in out.splitlines() if "synthetic/fold-1:" in line)
    for name, z in expected.items():
        assert f"{name} {balanced_accuracy_score(labels, z.argmax(1)):.3f}" in run_line
    probabilities = {name: torch.softmax(torch.as_tensor(expected[name]), -1).numpy() for name in expected}
    cross_entropy = {name: log_loss(labels, probabilities[name], labels=[0, 1, 2, 3]) for name in expected}
    printed = re.search(r"cross-entropy ([0-9.]+) -> ([0-9.]+)", run_line).groups()
    assert [float(value) for value in printed] == pytest.approx(
        [cross_entropy["sum"], cross_entropy["fitted"]], abs=2e-3
    )
    assert run_line.endswith(f"weights {weights[0]:.2f}, {weights[1]:.2f}")
    assert out.splitlines()[-1].startswith(f"| {tmp_path.name} | 1 | ")

    branch_weights.main([str(tmp_path), "--prior", "0.5"])  # another prior, as a sweep would give it
    run_line = next(line for line in capsys.readouterr().out.splitlines() if "synthetic/fold-1:" in line)
    weights = fit_branch_weights(*logits["validation"], prior=0.5)
    assert run_line.endswith(f"weights {weights[0]:.2f}, {weights[1]:.2f}")

    branch_weights.main([str(tmp_path), "--network_penalty", "0.3"])  # the sum shrunk towards the head
    run_line = next(line for line in capsys.readouterr().out.splitlines() if "synthetic/fold-1:" in line)
    weights = fit_branch_weights(*logits["validation"], network_penalty=0.3)
    assert run_line.endswith(f"weights {weights[0]:.2f}, {weights[1]:.2f}")
    assert weights != pytest.approx(fit_branch_weights(*logits["validation"]), abs=0.005)


def test_a_model_without_a_head_is_refused(tmp_path, corpus):
    saved_run(tmp_path, corpus, functionals_head=False)
    with pytest.raises(SystemExit, match="no functionals head"):
        branch_weights.main([str(tmp_path)])


def test_a_folder_without_folds_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        branch_weights.main([str(tmp_path)])
    assert "no folds.csv; give a run_benchmark.py --output_dir" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["cnn", "s4"])
def test_the_network_penalty_defaults_to_the_model_s_recipe(tmp_path, monkeypatch, model):
    """Without `--network_penalty`, a replay fits the weights as `run_train.py` fits them for that model:
    with its recipe's `branch_network_penalty` (the S4's 0.01, the CNN's none)."""
    (tmp_path / "folds.csv").write_text("corpus,fold,split,file,run\n")
    replayed = []
    monkeypatch.setattr(branch_weights, "replay", lambda *args: replayed.append(args) or [])
    branch_weights.main([str(tmp_path), "--model", model])
    assert replayed[0][6] == {"cnn": 0.0, "s4": 0.01}[model]
    branch_weights.main([str(tmp_path), "--model", model, "--network_penalty", "0.3"])
    assert replayed[1][6] == 0.3


def test_a_negative_network_penalty_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        branch_weights.main([str(tmp_path), "--network_penalty", "-1"])
    assert "--network_penalty -1.0: give a finite weight >= 0" in capsys.readouterr().err


# Without the flag the criterion is run_train.py's (log_loss); with it, the other one.
@pytest.mark.parametrize("criterion", [None, "uar"])
def test_the_head_refitted_as_the_baseline_fits_its_classifier(tmp_path, corpus, capsys, criterion):
    """`--refit_head`: the head's linear classifier fitted again on the fold's training clips (their
    standardised functionals, cut as evaluated) by the openSMILE baseline's recipe (logistic regression, C
    chosen on the validation clips by `--head_criterion`, as run_train.py chooses it unless given), and scored
    on the test clips; the energy peaks head stays as trained."""
    from evaluation.opensmile_baseline import select_c

    model, rows = saved_run(tmp_path, corpus)
    flags = ["--head_criterion", criterion] if criterion else []
    branch_weights.main([str(tmp_path), "--refit_head", *flags])
    run_line = next(line for line in capsys.readouterr().out.splitlines() if "synthetic/fold-1:" in line)
    _, _, train_inputs, train_labels = outputs(model, corpus, rows["train"])
    _, _, validation_inputs, validation_labels = outputs(model, corpus, rows["validation"])
    network, heads, test_inputs, test_labels = outputs(model, corpus, rows["test"])
    head = model.functionals_head
    functionals_logits = test_inputs @ head.weight.detach().double().numpy().T + head.bias.detach().numpy()
    peaks = heads - functionals_logits  # the energy peaks head's logits stay beside the refitted head
    assert np.abs(peaks).max() > 1e-3
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    pipeline, *_ = select_c(
        train_inputs,
        train_labels,
        validation_inputs,
        validation_labels,
        names,
        classifier="logreg",
        criterion=criterion or HEAD_C_CRITERION,
    )
    refitted = pipeline.decision_function(test_inputs) + peaks
    head_uar = balanced_accuracy_score(test_labels, refitted.argmax(1))
    sum_uar = balanced_accuracy_score(test_labels, (network + refitted).argmax(1))
    assert f"head refitted: UAR head {head_uar:.3f} sum {sum_uar:.3f} fitted " in run_line


def test_a_head_criterion_without_a_refit_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit):
        branch_weights.main([str(tmp_path), "--head_criterion", "log_loss"])
    error = capsys.readouterr().err
    assert "--head_criterion: it chooses the refitted head's C; give --refit_head too" in error


def test_a_refit_without_every_class_in_training_is_refused(tmp_path, corpus):
    saved_run(tmp_path, corpus)
    folds = (tmp_path / "folds.csv").read_text().splitlines()
    train = [line for line in folds if ",train," in line]
    kept = [folds[0], *train[:2], *(line for line in folds[1:] if ",train," not in line)]
    (tmp_path / "folds.csv").write_text("\n".join(kept) + "\n")
    with pytest.raises(
        SystemExit, match="training clips lack .*: the head cannot be refitted .*--refit_head"
    ):
        branch_weights.main([str(tmp_path), "--refit_head"])


def test_the_last_checkpoint_is_replayed_in_place_of_the_saved_model(tmp_path, corpus, capsys, monkeypatch):
    """`--checkpoint last`: the newest checkpoint-N of the model folder (by step, not by name) is scored
    instead of the saved model; a run without checkpoints is refused."""
    saved_run(tmp_path, corpus)
    model_dir = tmp_path / "runs" / "cnn" / "synthetic" / "fold-1" / "model"
    with monkeypatch.context() as patch, pytest.raises(SystemExit, match="no checkpoint-N folder; --checkpo"):
        # refused before any work: the corpora are not read
        patch.setattr(branch_weights, "load_corpora", lambda *args, **kwargs: pytest.fail("corpora read"))
        branch_weights.main([str(tmp_path), "--checkpoint", "last"])
    saved = CNNForAudioClassification.from_pretrained(model_dir)
    for step, seed in ((9, 1), (12, 2)):  # checkpoint-9 sorts after checkpoint-12 by name
        torch.manual_seed(seed)
        model = CNNForAudioClassification(saved.config)
        model.load_state_dict(saved.state_dict())
        torch.nn.init.normal_(model.functionals_head.weight, std=0.05)
        torch.nn.init.normal_(model.classifier[-1].weight, std=0.5)
        model.save_pretrained(model_dir / f"checkpoint-{step}")
        if step == 12:
            last = model.eval()
    branch_weights.main([str(tmp_path), "--checkpoint", "last"])
    run_line = next(line for line in capsys.readouterr().out.splitlines() if "synthetic/fold-1:" in line)
    rows = {"test": range(7, 960, 60)}
    network, head, _, labels = outputs(last, corpus, rows["test"])
    for name, z in {"network": network, "head": head, "sum": network + head}.items():
        assert f"{name} {balanced_accuracy_score(labels, z.argmax(1)):.3f}" in run_line
    saved_network = outputs(saved.eval(), corpus, rows["test"])[0]
    assert not np.allclose(saved_network, network)
