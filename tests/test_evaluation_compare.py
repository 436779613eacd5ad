"""run_benchmark.py compare: models paired fold by fold with a baseline within each benchmark output, pooled
over outputs (repeated speaker cross-validation), and its refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_evaluation_runner import FakeTrainer, fake_load

import run_benchmark
from evaluation.reports import RUNS_COLUMNS, paired_with_baseline, render_paired_markdown


def runs_row(
    model: str, fold: int, speakers: str, uar: float, corpus: str = "synthetic", output: str = "A"
) -> dict:
    return {
        "output": output,
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
    """Outputs A (folds 1 and 2 test speakers a b / c d) and B (a b / c d again, with other validation
    speakers: other results): the same fold numbers and test speakers, other runs. eGeMAPS has the better
    mean on A alone, ComParE over both."""
    rows = []
    for output, fold, speakers, cnn, compare, egemaps in [
        ("A", 1, "s/a s/b", 0.70, 0.80, 0.85),
        ("A", 2, "s/c s/d", 0.90, 0.60, 0.70),
        ("B", 1, "s/a s/b", 0.75, 0.95, 0.50),
        ("B", 2, "s/c s/d", 0.85, 0.80, 0.60),
    ]:
        rows += [
            runs_row("cnn", fold, speakers, cnn, output=output),
            runs_row("opensmile-compare", fold, speakers, compare, output=output),
            runs_row("opensmile-egemaps", fold, speakers, egemaps, output=output),
        ]
    return pd.DataFrame(rows, columns=["output", *RUNS_COLUMNS])


def test_runs_pair_by_output_and_fold_with_the_best_baseline_over_every_partition():
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
    runs = runs[~((runs.model == "opensmile-egemaps") & (runs.output == "B") & (runs.fold == 2))]
    table, notes = paired_with_baseline(runs, baseline="opensmile-egemaps")
    models = dict(zip(table["model"], table["folds"], strict=True))
    # ComParE is a model like any other once another baseline is named.
    assert models == {"cnn": 3, "opensmile-compare": 3}
    cnn = table[table.model == "cnn"].iloc[0]
    assert cnn["difference_mean"] == pytest.approx(np.mean([0.70 - 0.85, 0.90 - 0.70, 0.75 - 0.50]))
    assert cnn["unpaired_folds"] == 1
    (note,) = [note for note in notes if note.startswith("cnn on synthetic")]
    assert "1 of 4 folds" in note
    assert f"- {note}" in render_paired_markdown(table, notes)  # the notes are printed, not only returned


def test_a_corpus_without_a_baseline_is_noted_not_compared():
    runs = pd.DataFrame([runs_row("cnn", 1, "e/01", 0.5, corpus="emodb")])
    table, notes = paired_with_baseline(runs)
    assert table.empty
    assert notes == ["emodb (speaker-cv): no openSMILE baseline run; nothing to compare with"]


def bench(out, split_seed: int) -> pd.DataFrame:
    args = ["--models", "cnn", "opensmile-compare", "--corpora", "synthetic", "--protocol", "speaker-cv",
            "--folds", "3", "--split_seed", str(split_seed), "--output_dir", str(out)]  # fmt: skip
    run_benchmark.main(args, train_fn=FakeTrainer(), load=fake_load)
    return pd.read_csv(out / "runs.csv", dtype={"test_speakers": str})


def test_compare_pools_the_outputs_of_two_split_seeds(tmp_path, capsys):
    outputs = {"seed-1": bench(tmp_path / "seed-1", 1), "seed-2": bench(tmp_path / "seed-2", 2)}
    result = run_benchmark.main(
        ["compare", "--outputs", str(tmp_path / "seed-1"), str(tmp_path / "seed-2"),
         "--output_csv", str(tmp_path / "paired.csv")]
    )  # fmt: skip
    (row,) = result["paired"].to_dict("records")
    differences = []
    for runs in outputs.values():
        scores = runs.pivot_table(index="fold", columns="model", values="test_uar")
        differences += list(scores["cnn"] - scores["opensmile-compare"])
    assert row["folds"] == 6
    assert row["difference_mean"] == pytest.approx(np.mean(differences))
    assert row["difference_std"] == pytest.approx(np.std(differences, ddof=1))
    assert pd.read_csv(tmp_path / "paired.csv")["folds"].tolist() == [6]
    printed = capsys.readouterr().out
    assert "| cnn | synthetic | speaker-cv | 6 |" in printed


def test_compare_refuses_outputs_it_cannot_pair_and_an_unknown_baseline(tmp_path):
    bench(tmp_path / "seed-1", 1)
    seed_1 = str(tmp_path / "seed-1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(run_benchmark.UsageError, match="names .*seed-1.* twice"):
        run_benchmark.main(["compare", "--outputs", seed_1, f"{tmp_path}/./seed-1"])
    with pytest.raises(run_benchmark.UsageError, match="missing: not a folder"):
        run_benchmark.main(["compare", "--outputs", seed_1, str(tmp_path / "missing")])
    with pytest.raises(run_benchmark.UsageError, match="holds no runs.csv"):
        run_benchmark.main(["compare", "--outputs", seed_1, str(tmp_path / "empty")])
    with pytest.raises(run_benchmark.UsageError, match="--baseline opensmile-egemaps: no run of it"):
        run_benchmark.main(["compare", "--outputs", seed_1, "--baseline", "opensmile-egemaps"])
