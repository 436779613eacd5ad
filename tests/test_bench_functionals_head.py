"""benchmarks/functionals_head.py: the functionals head alone, fitted on a benchmark's folds as `run_train.py`
refits a trained model's head."""

from __future__ import annotations

import dataclasses
import json
import re

import datasets
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from test_bench_branch_weights import FOLD_ROWS, write_folds_csv

from benchmarks import functionals_head
from evaluation import opensmile_baseline as ob
from loaders import load_corpora
from modeling import CNNConfig, CNNForAudioClassification, feature_extractor_for
from training.calibration import fit_head_like_baseline


@pytest.fixture(scope="module")
def corpus():
    return load_corpora(["synthetic"], None, split=None)


def write_folds(results_dir, dataset) -> None:
    """A benchmark folder with one fold of the synthetic corpus: 24 training, 12 validation, 16 test clips."""
    classes = dataset.features["label"].names
    results_dir.mkdir(exist_ok=True)
    write_folds_csv(results_dir, dataset)
    fold = {
        "corpus": "synthetic",
        "run": "synthetic/fold-1",
        "train_corpora": ["synthetic"],
        "classes": classes,
        "mapping": {name: name for name in classes},
    }
    (results_dir / "folds.json").write_text(json.dumps({"folds": [fold]}))


def trained_head_inputs(dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the head's inputs, the labels) per split of a model as training leaves it: other random weights, and
    its BatchNorms holding training-set statistics (a new model's: mean 0, variance 1)."""
    torch.manual_seed(7)
    model = CNNForAudioClassification(CNNConfig(num_labels=4))
    middle = {
        split: [np.asarray(dataset[i]["audio"]["array"], dtype=np.float32) for i in rows]
        for split, rows in FOLD_ROWS.items()
    }
    middle = {split: [c[(len(c) - 8000) // 2 :][:8000] for c in clips] for split, clips in middle.items()}
    with torch.no_grad():
        model.train()(torch.from_numpy(np.stack(middle["train"])))
    model.eval()
    extractor = feature_extractor_for(model)
    inputs = {}
    for split, clips in middle.items():
        got = []
        hook = model.functionals_head.norm.register_forward_hook(
            lambda m, a, o, got=got: got.append(o[0, :, 0])
        )
        with torch.no_grad():
            for clip in clips:
                model(**extractor(clip, sampling_rate=16000, return_tensors="pt"))
        hook.remove()
        inputs[split] = torch.stack(got).double().numpy()
    labels = {split: np.array([dataset[i]["label"] for i in rows]) for split, rows in FOLD_ROWS.items()}
    return inputs, labels


def head_uar(inputs: dict[str, np.ndarray], labels: dict[str, np.ndarray], names: list[str]) -> float:
    """Test UAR of the head fitted on `inputs` as run_train.py refits it."""
    fit = fit_head_like_baseline(
        inputs["train"], labels["train"], inputs["validation"], labels["validation"], names
    )
    return balanced_accuracy_score(labels["test"], (inputs["test"] @ fit.weight.T + fit.bias).argmax(1))


def trained_head_uar(dataset) -> float:
    """The test UAR of the head refitted on a model as training leaves it."""
    return head_uar(*trained_head_inputs(dataset), dataset.features["label"].names)


def test_the_probe_scores_the_head_a_trained_model_would_refit_and_each_variant_beside_it(
    tmp_path, corpus, capsys
):
    write_folds(tmp_path / "synth", corpus)
    functionals_head.main(
        [
            str(tmp_path / "synth"),
            "--max_duration_seconds",
            "0.5",
            "--variant",
            'basic={"functionals": "basic"}',
        ]
    )
    out = capsys.readouterr().out
    defaults = re.search(r"synthetic/fold-1 defaults: head UAR ([0-9.]+) \(C [0-9.e-]+, (\d+) inputs\)", out)
    basic = re.search(r"synthetic/fold-1 basic: head UAR ([0-9.]+) \(C [0-9.e-]+, (\d+) inputs\)", out)
    assert defaults and basic, out
    # the head of a model as training leaves it, refitted: the same figure (nothing before the head learns)
    assert float(defaults.group(1)) == pytest.approx(trained_head_uar(corpus), abs=5e-4)
    assert int(defaults.group(2)) == 2584 and int(basic.group(2)) == 68 * 4  # the variant's own functionals
    table = out.splitlines()[-2:]
    uar = {name: float(match.group(1)) for name, match in (("defaults", defaults), ("basic", basic))}
    assert table[0].startswith(f"| synth | defaults | 2584 | 1 | {uar['defaults']:.3f} ± 0.000 |  |")
    difference = uar["basic"] - uar["defaults"]
    better = f"{int(difference > 0)} / {int(difference < 0)}"
    row = re.fullmatch(
        r"\| synth \| basic \| 272 \| 1 \| ([0-9.]+) ± 0\.000 \| ([+-][0-9.]+) \| (\d+ / \d+) \|", table[1]
    )
    assert row, table[1]
    # the tool subtracts the unrounded UARs; the printed ones are rounded to 3 decimals, so the last digit of
    # the difference may differ by one
    assert float(row.group(1)) == uar["basic"] and row.group(3) == better
    assert float(row.group(2)) == pytest.approx(difference, abs=1.5e-3)


def test_an_opensmile_family_is_scored_beside_the_heads_inputs(tmp_path, corpus, capsys, monkeypatch):
    pytest.importorskip("opensmile")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))  # openSMILE's cache
    fitted = []  # the training inputs of each fit, in the probe's order: defaults, then the family

    def recording_fit(train_inputs, *args):
        fitted.append(train_inputs)
        return fit_head_like_baseline(train_inputs, *args)

    monkeypatch.setattr(functionals_head, "fit_head_like_baseline", recording_fit)
    write_folds(tmp_path / "synth", corpus)
    argv = [str(tmp_path / "synth"), "--max_duration_seconds", "0.5"]
    functionals_head.main([*argv, "--opensmile_family", "pitch=F0final_sma_(amean|stddev)$"])
    out = capsys.readouterr().out
    pitch = re.search(r"synthetic/fold-1 pitch: head UAR ([0-9.]+) \(C [0-9.e-]+, (\d+) inputs\)", out)
    assert pitch, out
    # The same inputs by hand: the head's, then openSMILE's two functionals of each whole clip, clip by clip.
    inputs, labels = trained_head_inputs(corpus)
    columns = [ob.feature_names("compare").index(f"F0final_sma_{name}") for name in ("amean", "stddev")]
    for split, rows in FOLD_ROWS.items():
        compare = np.stack([ob.functionals(corpus[i]["audio"]["array"], "compare")[columns] for i in rows])
        inputs[split] = np.hstack([inputs[split], compare])
    defaults, family = fitted
    assert family.shape == (len(FOLD_ROWS["train"]), 2584 + 2)
    np.testing.assert_array_equal(family[:, :-2], defaults)
    np.testing.assert_allclose(family[:, -2:], inputs["train"][:, -2:], rtol=1e-6)
    uar = head_uar(inputs, labels, corpus.features["label"].names)
    assert float(pitch.group(1)) == pytest.approx(uar, abs=5e-4)
    assert out.splitlines()[-1].startswith(
        f"| synth | pitch | 2586 | 1 | {float(pitch.group(1)):.3f} ± 0.000 |"
    )


def test_the_energy_peaks_head_is_fitted_on_its_own_and_its_logits_added(
    tmp_path, corpus, capsys, monkeypatch
):
    fits = []  # (training inputs, fit) of each fit, in the probe's order: the functionals head, the peaks

    def recording_fit(train_inputs, *args):
        fit = fit_head_like_baseline(train_inputs, *args)
        if train_inputs.shape[1] == 12:  # the peaks' fit, scaled up so that their sum differs from the head's
            fit = dataclasses.replace(fit, weight=fit.weight * 100, bias=fit.bias * 100)
        fits.append((train_inputs, fit))
        return fit

    predicted = []  # the test predictions of each row, in the probe's order

    def recording_uar(labels, predictions):
        predicted.append(np.asarray(predictions))
        return balanced_accuracy_score(labels, predictions)

    monkeypatch.setattr(functionals_head, "fit_head_like_baseline", recording_fit)
    monkeypatch.setattr(functionals_head, "balanced_accuracy_score", recording_uar)
    write_folds(tmp_path / "synth", corpus)
    functionals_head.main([str(tmp_path / "synth"), "--max_duration_seconds", "0.5", "--energy_peaks"])
    out = capsys.readouterr().out
    both = re.search(r"fold-1 defaults\+energy_peaks: head UAR ([0-9.]+) \(C [0-9.e-]+, (\d+) inputs\)", out)
    assert both and int(both.group(2)) == 2584 + 12, out
    # By hand: the inputs of both heads of a new model, each head fitted alone, their test logits summed.
    model = CNNForAudioClassification(CNNConfig(num_labels=4, energy_peaks_head=True)).eval()
    extractor = feature_extractor_for(model)
    inputs = {"functionals_head": {}, "energy_peaks_head": {}}
    for split, rows in FOLD_ROWS.items():
        got = {head: [] for head in inputs}
        hooks = [
            getattr(model, head).norm.register_forward_hook(
                lambda m, a, o, got=got[head]: got.append(o[0, :, 0])
            )
            for head in inputs
        ]
        with torch.no_grad():
            for i in rows:
                clip = np.asarray(corpus[i]["audio"]["array"], dtype=np.float32)
                model(
                    **extractor(
                        clip[(len(clip) - 8000) // 2 :][:8000], sampling_rate=16000, return_tensors="pt"
                    )
                )
        for hook in hooks:
            hook.remove()
        for head in inputs:
            inputs[head][split] = torch.stack(got[head]).double().numpy()
    (head_train, head_fit), (peaks_train, peaks_fit) = fits
    np.testing.assert_allclose(head_train, inputs["functionals_head"]["train"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(peaks_train, inputs["energy_peaks_head"]["train"], rtol=1e-5, atol=1e-6)
    logits = sum(
        inputs[head]["test"] @ fit.weight.T + fit.bias
        for head, fit in (("functionals_head", head_fit), ("energy_peaks_head", peaks_fit))
    )
    head_alone = inputs["functionals_head"]["test"] @ head_fit.weight.T + head_fit.bias
    assert (logits.argmax(1) != head_alone.argmax(1)).any()  # the fixture tells the sum from the head alone
    assert predicted[-1].tolist() == logits.argmax(1).tolist()  # the last row scored: defaults+energy_peaks
    labels = np.array([corpus[i]["label"] for i in FOLD_ROWS["test"]])
    assert float(both.group(1)) == pytest.approx(balanced_accuracy_score(labels, logits.argmax(1)), abs=5e-4)
    assert out.splitlines()[-1].startswith(
        f"| synth | defaults+energy_peaks | 2596 | 1 | {float(both.group(1)):.3f}"
    )


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda d: None, [], "folds.csv: not found; give a run_benchmark.py --output_dir"),
        (lambda d: (d / "folds.json").unlink(), [], "folds.json: not found"),
        (lambda d: None, ["--variant", 'x={"no_such_field": 1}'], "CNNConfig has no field 'no_such_field'"),
        (lambda d: None, ["--variant", "x"], "--variant 'x': give NAME="),
        (lambda d: None, ["--opensmile_family", "x"], "--opensmile_family 'x': give NAME=REGEX"),
        (lambda d: None, ["--opensmile_family", "x=("], "--opensmile_family 'x=(': not a regular expression"),
        (lambda d: None, ["--opensmile_family", "x=nothing_like_this"], "no ComParE_2016 functional's name"),
    ],
)
def test_bad_input_is_refused_before_any_clip_is_read(tmp_path, corpus, capsys, make, argv, message):
    if "--opensmile_family" in argv:
        pytest.importorskip("opensmile")  # the families are checked against ComParE's names
    results_dir = tmp_path / "synth"
    if "folds.csv" not in message:
        write_folds(results_dir, corpus)
    make(results_dir)
    with pytest.raises(SystemExit):
        functionals_head.main([str(results_dir), *argv])
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()[-1]) < 300
