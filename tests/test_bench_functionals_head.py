"""benchmarks/functionals_head.py: the functionals head alone, fitted on a benchmark's folds as `run_train.py`
refits a trained model's head."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from test_bench_branch_weights import FOLD_ROWS, write_folds_csv

from benchmarks import functionals_head
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


def trained_head_uar(dataset) -> float:
    """The test UAR of the head refitted on a model as training leaves it: other random weights, and its
    BatchNorms holding training-set statistics (a new model's: mean 0, variance 1)."""
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
    names = dataset.features["label"].names
    fit = fit_head_like_baseline(
        inputs["train"], labels["train"], inputs["validation"], labels["validation"], names
    )
    return balanced_accuracy_score(labels["test"], (inputs["test"] @ fit.weight.T + fit.bias).argmax(1))


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
    assert (
        table[1] == f"| synth | basic | 272 | 1 | {uar['basic']:.3f} ± 0.000 | {difference:+.3f} | {better} |"
    )


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda d: None, [], "folds.csv: not found; give a run_benchmark.py --output_dir"),
        (lambda d: (d / "folds.json").unlink(), [], "folds.json: not found"),
        (lambda d: None, ["--variant", 'x={"no_such_field": 1}'], "CNNConfig has no field 'no_such_field'"),
        (lambda d: None, ["--variant", "x"], "--variant 'x': give NAME="),
    ],
)
def test_bad_input_is_refused_before_any_clip_is_read(tmp_path, corpus, capsys, make, argv, message):
    results_dir = tmp_path / "synth"
    if "folds.csv" not in message:
        write_folds(results_dir, corpus)
    make(results_dir)
    with pytest.raises(SystemExit):
        functionals_head.main([str(results_dir), *argv])
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()[-1]) < 300
