"""run_benchmark.py compare: models paired fold by fold with a baseline on the same test speakers, pooled over
benchmark outputs (repeated speaker cross-validation), and its refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_evaluation_runner import FakeTrainer, fake_load

import run_benchmark
from evaluation.reports import RUNS_COLUMNS, paired_with_baseline, write_runs


def runs_row(model: str, fold: int, speakers: str, uar: float, corpus: str = "synthetic") -> dict:
    return {
        "model": model,
        "corpus": corpus,
        "protocol": "speaker-cv",
        "fold": fold,
        "test_speakers": speakers,
        "test_accuracy": uar,
        "test_uar": uar,
        "test_macro_f1": uar,
        "run_dir": f"runs/{model}/{corpus}/fold-{fold}",
        "train_corpora": corpus,
        "classes": "anger happy neutral sadness",
        "speaker_independent": True,
    }


def two_partitions() -> pd.DataFrame:
    """Partition A (folds 1 and 2 test speakers a b / c d) and B (a c / b d): the same fold numbers on other
    speakers. eGeMAPS has the better mean on partition A alone, ComParE over both."""
    rows = []
    for fold, speakers, cnn, compare, egemaps in [
        (1, "s/a s/b", 0.70, 0.80, 0.85),
        (2, "s/c s/d", 0.90, 0.60, 0.70),
        (1, "s/a s/c", 0.75, 0.95, 0.50),
        (2, "s/b s/d", 0.85, 0.80, 0.60),
    ]:
        rows += [
            runs_row("cnn", fold, speakers, cnn),
            runs_row("opensmile-compare", fold, speakers, compare),
            runs_row("opensmile-egemaps", fold, speakers, egemaps),
        ]
    return pd.DataFrame(rows, columns=list(RUNS_COLUMNS))


def test_runs_pair_by_test_speakers_with_the_best_baseline_over_every_partition():
    table, notes = paired_with_baseline(two_partitions())
    assert notes == []
    (row,) = table.to_dict("records")
    assert (row["model"], row["baseline"], row["folds"]) == ("cnn", "opensmile-compare", 4)
    differences = np.array([0.70 - 0.80, 0.90 - 0.60, 0.75 - 0.95, 0.85 - 0.80])
    assert row["difference_mean"] == pytest.approx(differences.mean())
    assert row["difference_std"] == pytest.approx(differences.std(ddof=1))
    assert row["uar_mean"] == pytest.approx(0.80)
    assert row["baseline_uar_mean"] == pytest.approx(0.7875)
    assert (row["folds_better"], row["folds_worse"], row["unpaired_folds"]) == (2, 2, 0)


def test_a_named_baseline_and_a_fold_without_its_run():
    runs = two_partitions()
    runs = runs[~((runs.model == "opensmile-egemaps") & (runs.test_speakers == "s/b s/d"))]
    table, notes = paired_with_baseline(runs, baseline="opensmile-egemaps")
    models = dict(zip(table["model"], table["folds"], strict=True))
    # ComParE is a model like any other once another baseline is named.
    assert models == {"cnn": 3, "opensmile-compare": 3}
    cnn = table[table.model == "cnn"].iloc[0]
    assert cnn["difference_mean"] == pytest.approx(np.mean([0.70 - 0.85, 0.90 - 0.70, 0.75 - 0.50]))
    assert cnn["unpaired_folds"] == 1
    assert any("cnn on synthetic" in note and "1 of 4 folds" in note for note in notes)


def test_a_corpus_without_a_baseline_is_noted_not_compared():
    runs = pd.DataFrame([runs_row("cnn", 1, "e/01", 0.5, corpus="emodb")], columns=list(RUNS_COLUMNS))
    table, notes = paired_with_baseline(runs)
    assert table.empty
    assert notes == ["emodb (speaker-cv): no openSMILE baseline run; nothing to compare with"]


def bench(out, split_seed: int) -> pd.DataFrame:
    args = ["--models", "cnn", "opensmile-compare", "--corpora", "synthetic", "--protocol", "speaker-cv",
            "--folds", "3", "--split_seed", str(split_seed), "--output_dir", str(out)]  # fmt: skip
    run_benchmark.main(args, train_fn=FakeTrainer(), load=fake_load)
    return pd.read_csv(out / "runs.csv", dtype={"test_speakers": str})


def test_compare_pools_the_outputs_of_two_split_seeds(tmp_path, capsys):
    first, second = bench(tmp_path / "seed-1", 1), bench(tmp_path / "seed-2", 2)
    pooled = pd.concat([first, second])
    assert pooled.test_speakers.nunique() == 6  # two partitions, no fold in common
    result = run_benchmark.main(
        ["compare", "--outputs", str(tmp_path / "seed-1"), str(tmp_path / "seed-2"),
         "--output_csv", str(tmp_path / "paired.csv")]
    )  # fmt: skip
    (row,) = result["paired"].to_dict("records")
    scores = pooled.pivot_table(index="test_speakers", columns="model", values="test_uar")
    assert row["folds"] == 6
    assert row["difference_mean"] == pytest.approx((scores["cnn"] - scores["opensmile-compare"]).mean())
    assert pd.read_csv(tmp_path / "paired.csv")["folds"].tolist() == [6]
    printed = capsys.readouterr().out
    assert "| cnn | synthetic | speaker-cv | 6 |" in printed


def test_compare_refuses_other_results_for_the_same_test_speakers_and_an_unknown_baseline(tmp_path):
    bench(tmp_path / "seed-1", 1)
    copy = tmp_path / "edited"
    copy.mkdir()
    runs = pd.read_csv(tmp_path / "seed-1" / "runs.csv", dtype={"test_speakers": str})
    runs.loc[0, "test_uar"] = 0.0
    write_runs(runs.to_dict("records"), copy / "runs.csv")
    with pytest.raises(run_benchmark.UsageError, match="different results"):
        run_benchmark.main(["compare", "--outputs", str(tmp_path / "seed-1"), str(copy)])
    with pytest.raises(run_benchmark.UsageError, match="--baseline opensmile-egemaps: no run of it"):
        run_benchmark.main(
            ["compare", "--outputs", str(tmp_path / "seed-1"), "--baseline", "opensmile-egemaps"]
        )
    with pytest.raises(run_benchmark.UsageError, match="does not exist"):
        run_benchmark.main(["compare", "--outputs", str(tmp_path / "missing")])
