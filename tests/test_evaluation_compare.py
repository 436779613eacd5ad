"""run_benchmark.py compare: models paired fold by fold with a baseline within each partition of the speakers,
pooled over outputs (repeated speaker cross-validation, model seeds), and its refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from test_evaluation_runner import FakeTrainer, fake_load, refuse

import run_benchmark
from evaluation.reports import (
    RUNS_COLUMNS,
    merge_runs,
    paired_with_baseline,
    partition_id,
    render_paired_markdown,
    write_csv_atomic,
)


def runs_row(
    model: str, fold: int, speakers: str, uar: float, corpus: str = "synthetic", partition: str = "A"
) -> dict:
    return {
        "partition": partition,
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
    """Partitions A (folds 1 and 2 test speakers a b / c d) and B (a b / c d again, with other validation
    speakers: other results): the same fold numbers and test speakers, other runs. eGeMAPS has the better
    mean on A alone, ComParE over both."""
    rows = []
    for partition, fold, speakers, cnn, compare, egemaps in [
        ("A", 1, "s/a s/b", 0.70, 0.80, 0.85),
        ("A", 2, "s/c s/d", 0.90, 0.60, 0.70),
        ("B", 1, "s/a s/b", 0.75, 0.95, 0.50),
        ("B", 2, "s/c s/d", 0.85, 0.80, 0.60),
    ]:
        rows += [
            runs_row("cnn", fold, speakers, cnn, partition=partition),
            runs_row("opensmile-compare", fold, speakers, compare, partition=partition),
            runs_row("opensmile-egemaps", fold, speakers, egemaps, partition=partition),
        ]
    return pd.DataFrame(rows, columns=["partition", *RUNS_COLUMNS])


def test_runs_pair_by_partition_and_fold_with_the_best_baseline_over_every_partition():
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
    runs = runs[~((runs.model == "opensmile-egemaps") & (runs.partition == "B") & (runs.fold == 2))]
    table, notes = paired_with_baseline(runs, baseline="opensmile-egemaps")
    models = dict(zip(table["model"], table["folds"], strict=True))
    # ComParE is a model like any other once another baseline is named.
    assert models == {"cnn": 3, "opensmile-compare": 3}
    cnn = table[table.model == "cnn"].iloc[0]
    assert cnn["difference_mean"] == pytest.approx(np.mean([0.70 - 0.85, 0.90 - 0.70, 0.75 - 0.50]))
    assert cnn["unpaired_folds"] == 1
    (note,) = [note for note in notes if note.startswith("cnn on synthetic")]
    assert "1 of 4 runs" in note
    assert f"- {note}" in render_paired_markdown(table, notes)  # the notes are printed, not only returned


def test_a_corpus_without_a_baseline_is_noted_not_compared():
    runs = pd.DataFrame([runs_row("cnn", 1, "e/01", 0.5, corpus="emodb")])
    table, notes = paired_with_baseline(runs)
    assert table.empty
    assert notes == ["emodb (speaker-cv): no openSMILE baseline run; nothing to compare with"]


def test_baselines_alone_are_noted_not_compared():
    runs = two_partitions()
    table, notes = paired_with_baseline(runs[runs.model != "cnn"])
    assert table.empty
    assert notes == [
        "synthetic (speaker-cv): no model besides the baseline opensmile-compare; nothing to compare"
    ]


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


def another_model_seed(partition, out, cnn_uar: list[float], with_baseline_copies: bool) -> None:
    """`out`: the CNN's runs of another model seed on `partition`'s folds (its folds.csv, its own run
    folders, results `cnn_uar`), beside the baseline's runs of `partition` copied as `merge_runs` copies them
    (the same run folders) when `with_baseline_copies`."""
    out.mkdir()
    shutil.copy(partition / "folds.csv", out / "folds.csv")
    runs, _ = merge_runs([partition], out)
    cnn = runs.model == "cnn"
    runs.loc[cnn, "test_uar"] = cnn_uar
    runs.loc[cnn, "run_dir"] = [f"runs/cnn/synthetic/fold-{fold}" for fold in runs.loc[cnn, "fold"]]
    write_csv_atomic(runs if with_baseline_copies else runs[cnn], out / "runs.csv")


@pytest.mark.parametrize("with_baseline_copies", [False, True])
def test_model_seeds_of_one_partition_pair_with_its_baseline_runs_each_counted_once(
    tmp_path, capsys, with_baseline_copies
):
    first = bench(tmp_path / "seed-42", 1)
    other = [0.2, 0.5, 0.9]
    another_model_seed(tmp_path / "seed-42", tmp_path / "seed-7", other, with_baseline_copies)
    outputs = [str(tmp_path / "seed-42"), str(tmp_path / "seed-7")]
    result = run_benchmark.main(["compare", "--outputs", *outputs])
    (row,) = result["paired"].to_dict("records")
    scores = first.pivot_table(index="fold", columns="model", values="test_uar")
    baseline = scores["opensmile-compare"].to_numpy()
    differences = np.concatenate([scores["cnn"].to_numpy() - baseline, np.array(other) - baseline])
    assert (row["folds"], row["unpaired_folds"]) == (6, 0)
    assert row["difference_mean"] == pytest.approx(differences.mean())
    assert row["difference_std"] == pytest.approx(differences.std(ddof=1))
    copies = [note for note in result["notes"] if "each run counts once" in note]
    assert copies == (["3 rows name a run folder that another output of the same partition lists too; each "
                       "run counts once"] if with_baseline_copies else [])  # fmt: skip
    # The baseline compared as a model (another baseline named): its three runs once, not once per output;
    # the named baseline, two CNN runs per fold with other results, is their mean there (noted).
    named = run_benchmark.main(["compare", "--outputs", *outputs, "--baseline", "cnn"])
    (row,) = named["paired"].to_dict("records")
    assert (row["model"], row["folds"]) == ("opensmile-compare", 3)
    mean_cnn = (scores["cnn"].to_numpy() + np.array(other)) / 2
    assert row["difference_mean"] == pytest.approx((baseline - mean_cnn).mean())
    mean_note = (
        "cnn has runs with other results on the same fold in 3 folds; their mean is the baseline there"
    )
    assert any(mean_note in note for note in named["notes"])
    printed = capsys.readouterr().out
    assert printed.count("- 3 rows name a run folder") == (2 if with_baseline_copies else 0)


def test_a_variant_pairs_with_the_runs_it_changed_not_pooled_with_them(tmp_path):
    first = bench(tmp_path / "defaults", 1)
    changed = [0.2, 0.5, 0.9]
    another_model_seed(tmp_path / "defaults", tmp_path / "wide", changed, with_baseline_copies=True)
    args = ["compare", "--outputs", str(tmp_path / "defaults"), "--variants", f"wide={tmp_path / 'wide'}"]
    scores = first.pivot_table(index="fold", columns="model", values="test_uar")
    # Against the defaults: the change's runs minus the defaults', fold by fold.
    against_defaults = run_benchmark.main([*args, "--baseline", "cnn"])["paired"].set_index("model")
    assert sorted(against_defaults.index) == ["cnn (wide)", "opensmile-compare"]
    row = against_defaults.loc["cnn (wide)"]
    assert (row["baseline"], row["folds"]) == ("cnn", 3)
    assert row["difference_mean"] == pytest.approx((np.array(changed) - scores["cnn"].to_numpy()).mean())
    # Against the openSMILE baseline (its copies in the variant's output counted once, by their name): each
    # of the two on its own 3 folds, not one model of 6.
    table = run_benchmark.main(args)["paired"].set_index("model")
    assert table["folds"].to_dict() == {"cnn": 3, "cnn (wide)": 3}
    assert table.loc["cnn (wide)", "baseline_uar_mean"] == pytest.approx(scores["opensmile-compare"].mean())
    with pytest.raises(run_benchmark.UsageError, match="--variants .*wide: give LABEL=OUTPUT"):
        run_benchmark.main([*args[:3], "--variants", str(tmp_path / "wide")])


def test_a_partition_is_its_folds_whatever_their_order_or_folder(tmp_path):
    bench(tmp_path / "a", 1)
    bench(tmp_path / "c", 2)
    (tmp_path / "b").mkdir()
    folds = pd.read_csv(tmp_path / "a" / "folds.csv")
    folds.sample(frac=1.0, random_state=0).to_csv(tmp_path / "b" / "folds.csv", index=False)
    assert partition_id(tmp_path / "a") == partition_id(tmp_path / "b") != partition_id(tmp_path / "c")
    moved = folds.copy()
    moved.loc[0, "split"] = "validation" if moved.loc[0, "split"] != "validation" else "train"
    moved.to_csv(tmp_path / "b" / "folds.csv", index=False)
    assert partition_id(tmp_path / "b") != partition_id(tmp_path / "a")
    # Without folds.csv an output is a partition of its own.
    (tmp_path / "d").mkdir()
    (tmp_path / "e").mkdir()
    assert partition_id(tmp_path / "d") != partition_id(tmp_path / "e")


def test_compare_refuses_outputs_it_cannot_pair_and_an_unknown_baseline(tmp_path):
    bench(tmp_path / "seed-1", 1)
    seed_1 = str(tmp_path / "seed-1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(run_benchmark.UsageError, match="--outputs .*seed-1 and --outputs .*seed-1 name one"):
        run_benchmark.main(["compare", "--outputs", seed_1, f"{tmp_path}/./seed-1"])
    with pytest.raises(run_benchmark.UsageError, match="--outputs .*seed-1 and --variants .*seed-1 name one"):
        run_benchmark.main(["compare", "--outputs", seed_1, "--variants", f"b={seed_1}"])
    with pytest.raises(run_benchmark.UsageError, match="--variants .*missing: not a folder"):
        run_benchmark.main(["compare", "--outputs", seed_1, "--variants", f"b={tmp_path}/missing"])
    with pytest.raises(run_benchmark.UsageError, match="missing: not a folder"):
        run_benchmark.main(["compare", "--outputs", seed_1, str(tmp_path / "missing")])
    with pytest.raises(run_benchmark.UsageError, match="holds no runs.csv"):
        run_benchmark.main(["compare", "--outputs", seed_1, str(tmp_path / "empty")])
    with pytest.raises(run_benchmark.UsageError, match="--baseline opensmile-egemaps: no run of it"):
        run_benchmark.main(["compare", "--outputs", seed_1, "--baseline", "opensmile-egemaps"])


def split_seeds_args(out, *seeds: str, extra: tuple[str, ...] = ()) -> list[str]:
    return ["--models", "cnn", "opensmile-compare", "--corpora", "synthetic", "--protocol", "speaker-cv",
            "--folds", "3", "--output_dir", str(out), "--split_seeds", *seeds, *extra]  # fmt: skip


def test_split_seeds_runs_one_benchmark_per_seed_then_pairs_them(tmp_path, capsys):
    trainer = FakeTrainer()
    result = run_benchmark.main(
        split_seeds_args(tmp_path / "rep", "1", "2"), train_fn=trainer, load=fake_load
    )
    assert len(trainer.calls) == 2 * 2 * 3  # models x seeds x folds
    # Each seed's folder is the benchmark output that `--split_seed S` alone gives: the same folds and runs.
    for seed in (1, 2):
        single = tmp_path / f"single-{seed}"
        bench(single, seed)
        partition = tmp_path / "rep" / f"split-seed-{seed}"
        assert (partition / "folds.csv").read_text() == (single / "folds.csv").read_text()
        assert (partition / "leaderboard.md").is_file()
        got, want = (pd.read_csv(d / "runs.csv").drop(columns="run_dir") for d in (partition, single))
        pd.testing.assert_frame_equal(got, want)
    # ... and the paired table is `compare` over those folders, written beside them.
    compared = run_benchmark.main(
        ["compare", "--outputs", *(str(tmp_path / "rep" / f"split-seed-{s}") for s in (1, 2))]
    )
    columns = ["model", "corpus", "folds", "difference_mean", "difference_std", "folds_better", "folds_worse"]
    pd.testing.assert_frame_equal(result["paired"][columns], compared["paired"][columns])
    assert result["paired"]["folds"].tolist() == [6]
    assert pd.read_csv(tmp_path / "rep" / "paired.csv")["folds"].tolist() == [6]
    assert "| cnn | synthetic |" in (tmp_path / "rep" / "paired.md").read_text()
    # Run again: every run is finished, nothing trains, the reports are written again.
    again = FakeTrainer()
    run_benchmark.main(split_seeds_args(tmp_path / "rep", "1", "2"), train_fn=again, load=fake_load)
    assert again.calls == []


def test_split_seeds_shards_by_fold_then_completes_without_it(tmp_path, capsys):
    trainer = FakeTrainer()
    shard = run_benchmark.main(
        split_seeds_args(tmp_path, "1", "2", extra=("--fold", "2")), train_fn=trainer, load=fake_load
    )
    printed = capsys.readouterr().out
    # one way to finish, not a `collect` per partition as well
    assert "run the same command without --fold" in printed and "collect" not in printed
    assert "paired" not in shard and len(trainer.calls) == 2 * 2  # models x seeds, fold 2 only
    assert (tmp_path / "split-seed-1" / "runs-fold-2.csv").is_file()
    assert not (tmp_path / "paired.csv").exists()
    rest = FakeTrainer()
    result = run_benchmark.main(split_seeds_args(tmp_path, "1", "2"), train_fn=rest, load=fake_load)
    assert len(rest.calls) == 2 * 2 * 2  # the folds the shard did not run
    assert result["paired"]["folds"].tolist() == [6]


@pytest.mark.parametrize(
    ("seeds", "extra", "message"),
    [
        (("3",), (), "--split_seeds 3: give two or more different seeds"),
        (("3", "3"), (), "--split_seeds 3 3: give two or more different seeds"),
        (("1", "2"), ("--split_seed", "7"), "--split_seed and --split_seeds: give one of them"),
        (("1", "2"), ("--fold", "9"), r"--fold 9: the speaker-cv folds of synthetic are \[1, 2, 3\]"),
    ],
)
def test_split_seeds_refusals_come_before_anything_is_written(tmp_path, seeds, extra, message):
    with pytest.raises(run_benchmark.UsageError, match=message):
        run_benchmark.main(
            split_seeds_args(tmp_path / "out", *seeds, extra=extra), train_fn=refuse, load=refuse
        )
    assert not (tmp_path / "out").exists()
