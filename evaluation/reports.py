"""The benchmark's reports: runs.csv (one row per run), leaderboard.csv / .md and the figure.

The leaderboard has one row per (protocol, model, corpus, training corpora): the mean and standard
deviation (sample, ddof=1; empty for a single fold) over the folds found in runs.csv, so its means are
exactly the means of runs.csv. `collect` merges the runs files of shards (`--fold K` runs) first.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from training.files import write_text_atomic
from training.plots import draw_confusion_matrix

from . import emobox

logger = logging.getLogger(__name__)

RUNS_COLUMNS: tuple[str, ...] = (
    "model",
    "corpus",
    "protocol",
    "fold",
    "test_speakers",
    "test_accuracy",
    "test_uar",
    "test_macro_f1",
    "run_dir",
    "train_corpora",
    "classes",
    "speaker_independent",
    "confusion_matrix",
)
# Runs files written before the column existed lack it; their matrices are in the run folders only.
OPTIONAL_RUNS_COLUMNS = ("confusion_matrix",)
LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "model",
    "corpus",
    "protocol",
    "folds",
    "uar_mean",
    "uar_std",
    "accuracy_mean",
    "accuracy_std",
    "macro_f1_mean",
    "macro_f1_std",
    "train_corpora",
    "speaker_independent",
    "baseline_uar",
    "reaches_baseline",
)
RUN_KEY: tuple[str, ...] = ("model", "protocol", "corpus", "train_corpora", "fold")
METRICS = {"uar": "test_uar", "accuracy": "test_accuracy", "macro_f1": "test_macro_f1"}
# Models whose name starts so are the classical baselines a learned model has to beat.
BASELINE_PREFIX = "opensmile-"
BELOW_BASELINE = "✗"
# Two means of the same fold UARs summed in another order differ in the last bits; that is a tie.
TIE_TOLERANCE = 1e-9


class ReportError(ValueError):
    """Runs files that cannot be merged (reported in one line)."""


def runs_file_name(fold: int | None) -> str:
    """runs.csv, or runs-fold-<K>.csv for a shard (so shards sharing an output folder never collide)."""
    return "runs.csv" if fold is None else f"runs-fold-{fold}.csv"


def write_csv_atomic(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """The frame as CSV, written atomically (`training.files.write_text_atomic`)."""
    write_text_atomic(frame.to_csv(index=False), path)


def write_runs(rows: Sequence[dict], path: str | os.PathLike) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(RUNS_COLUMNS))
    write_csv_atomic(frame, path)
    return frame


def read_runs(path: str | os.PathLike) -> pd.DataFrame:
    frame = pd.read_csv(
        path,
        dtype={"test_speakers": str, "train_corpora": str, "classes": str, "confusion_matrix": str},
        keep_default_na=False,
        na_values={m: ["", "nan"] for m in METRICS.values()},
    )
    for column in OPTIONAL_RUNS_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    missing = [c for c in RUNS_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportError(f"{path}: not a runs file, columns {missing} missing")
    frame["speaker_independent"] = frame["speaker_independent"].astype(str).str.lower() == "true"
    return frame


def runs_files(folder: str | os.PathLike) -> list[Path]:
    """The runs files of an output folder: runs.csv and the shards' runs-fold-<K>.csv."""
    folder = Path(folder)
    found = [folder / "runs.csv"] if (folder / "runs.csv").is_file() else []
    return found + sorted(Path(p) for p in glob.glob(str(folder / "runs-fold-*.csv")))


def merge_runs(
    sources: Sequence[str | os.PathLike], output_dir: str | os.PathLike
) -> tuple[pd.DataFrame, int]:
    """(merged runs, duplicate rows dropped) of runs files or output folders; `run_dir` is rewritten
    relative to `output_dir`, and a row without its confusion matrix (a runs file from before the column)
    takes it from its run folder where that is here. The same run in two files with other results is an
    error."""
    output_dir = Path(output_dir)
    files: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            found = runs_files(source)
            if not found:
                raise ReportError(
                    f"{source}: holds no runs.csv nor runs-fold-<K>.csv; is it a benchmark output?"
                )
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise ReportError(f"{source} does not exist; give benchmark output folders or runs files")
    frames = []
    for path in dict.fromkeys(p.resolve() for p in files):
        frame = read_runs(path)
        frame["run_dir"] = [
            os.path.relpath(path.parent / d, output_dir.resolve()).replace(os.sep, "/")
            for d in frame["run_dir"]
        ]
        for i, row in frame.iterrows():
            found = None if row["confusion_matrix"] else run_confusion(row, output_dir)
            if found is not None:
                frame.at[i, "confusion_matrix"] = confusion_matrix_cell(found[1])
        frame["_source"] = str(path)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(RUNS_COLUMNS)), 0
    merged = pd.concat(frames, ignore_index=True)
    merged["fold"] = merged["fold"].astype(int)
    duplicated = merged.duplicated(list(RUN_KEY), keep=False)
    for _, group in merged.loc[duplicated].groupby(list(RUN_KEY), sort=True):
        values = group[list(METRICS.values())].round(12).drop_duplicates()
        if len(values) > 1:
            key = ", ".join(f"{k}={group.iloc[0][k]}" for k in RUN_KEY)
            raise ReportError(
                f"run ({key}) has different results in {' and '.join(group['_source'])}; keep one of them"
            )
    before = len(merged)
    merged = merged.drop_duplicates(list(RUN_KEY), keep="first").drop(columns="_source")
    merged = merged.sort_values(["protocol", "model", "corpus", "train_corpora", "fold"], kind="stable")
    return merged.reset_index(drop=True)[list(RUNS_COLUMNS)], before - len(merged)


def leaderboard(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (protocol, model, corpus, training corpora): folds, mean and std of each metric."""
    rows = []
    for (protocol, model, corpus, train), group in runs.groupby(
        ["protocol", "model", "corpus", "train_corpora"], sort=True
    ):
        row = {"model": model, "corpus": corpus, "protocol": protocol, "folds": len(group)}
        for name, column in METRICS.items():
            values = group[column].astype(float).to_numpy()
            row[f"{name}_mean"] = float(np.mean(values))
            row[f"{name}_std"] = _sample_std(values)
        row["train_corpora"] = train
        row["speaker_independent"] = bool(group["speaker_independent"].all())
        rows.append(row)
    # Against the best openSMILE baseline on the same test corpus and training data: `baseline_uar` its mean
    # UAR, `reaches_baseline` whether this (non-baseline) model's mean UAR is at least as high (a tie
    # reaches it, up to float rounding of the means); empty where there is no baseline to compare with.
    best: dict[tuple, float] = {}
    for row in rows:
        if row["model"].startswith(BASELINE_PREFIX) and not np.isnan(row["uar_mean"]):
            key = (row["protocol"], row["corpus"], row["train_corpora"])
            best[key] = max(best.get(key, -np.inf), row["uar_mean"])
    for row in rows:
        base = best.get((row["protocol"], row["corpus"], row["train_corpora"]))
        row["baseline_uar"] = float("nan") if base is None else base
        row["reaches_baseline"] = (
            None
            if base is None or row["model"].startswith(BASELINE_PREFIX)
            else bool(row["uar_mean"] >= base - TIE_TOLERANCE)
        )
    return pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))


def _sample_std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); NaN for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def _vs_baseline(row: pd.Series) -> str:
    """The leaderboard cell against the best openSMILE baseline: the UAR difference, marked when below."""
    if row["model"].startswith(BASELINE_PREFIX):
        return "baseline"
    if pd.isna(row["baseline_uar"]):
        return "–"
    difference = row["uar_mean"] - row["baseline_uar"]
    if abs(difference) <= TIE_TOLERANCE:
        difference = 0.0  # a tie shows as +0.000, not as a rounding error's −0.000
    text = f"{difference:+.3f}".replace("-", "−")
    return text if row["reaches_baseline"] else f"**{text} {BELOW_BASELINE}**"


def _pm(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "–"
    return f"{mean:.3f}" if np.isnan(std) else f"{mean:.3f} ± {std:.3f}"


# Runs pair by partition of the speakers and fold: within one partition fold k of every model has the same
# training, validation and test files; across partitions the same test speakers can come with other
# validation speakers (other training data), so runs never pair by test speakers alone.
PAIR_KEY: tuple[str, ...] = ("partition", "fold")


def partition_id(output_dir: str | os.PathLike) -> str:
    """The partition of the speakers that a benchmark output's runs trained and tested on: a digest of its
    folds.csv (every corpus, fold, split and file), so that outputs of the same folds (one per model seed,
    say) pair with the same baseline runs. An output without folds.csv is a partition of its own."""
    folds_csv = Path(output_dir) / "folds.csv"
    if not folds_csv.is_file():
        return f"output {os.path.realpath(output_dir)}"
    columns = ["corpus", "fold", "split", "file"]
    table = pd.read_csv(folds_csv, usecols=columns, dtype=str)[columns]
    rows = table.sort_values(columns).to_csv(index=False)
    return f"folds {hashlib.sha256(rows.encode()).hexdigest()[:16]}"


PAIRED_COLUMNS: tuple[str, ...] = (
    "model",
    "corpus",
    "protocol",
    "train_corpora",
    "baseline",
    "folds",
    "uar_mean",
    "uar_std",
    "baseline_uar_mean",
    "baseline_uar_std",
    "difference_mean",
    "difference_std",
    "folds_better",
    "folds_worse",
    "unpaired_folds",
)


def variant_name(model: str, label: str) -> str:
    """The name a trained model's runs take in an output given as a variant (`pooled_runs`' `labels`)."""
    return f"{model} ({label})"


def pooled_runs(
    outputs: Sequence[str | os.PathLike], labels: Sequence[str | None] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """(the runs of several benchmark outputs, each with its `partition` (`partition_id`); notes). A run
    listed in more than one output of the same partition (its run folder, e.g. a baseline's copied beside
    each model seed's runs) counts once. `labels` (one per output, None for none): an output with a label
    holds a variant of the models (another configuration or recipe trained on the same folds), so its trained
    models are named `variant_name(model, label)` and pair as models of their own; without it, runs of one
    model on the same fold pool as model seeds. Its openSMILE baselines keep their names (the same features,
    whatever the models' variant)."""
    labels = list(labels) if labels is not None else [None] * len(outputs)
    frames = []
    for output, label in zip(outputs, labels, strict=True):
        runs, _ = merge_runs([output], output)
        if label is not None:
            trained = ~runs["model"].str.startswith(BASELINE_PREFIX)
            runs.loc[trained, "model"] = [variant_name(model, label) for model in runs.loc[trained, "model"]]
        folder = os.path.abspath(output)
        frames.append(
            runs.assign(
                partition=partition_id(output),
                _run=[os.path.normpath(os.path.join(folder, d)) for d in runs["run_dir"]],
            )
        )
    pooled = pd.concat(frames, ignore_index=True)
    copies = pooled.duplicated([*RUN_KEY, "partition", "_run"])
    notes = []
    if copies.any():
        notes.append(
            f"{int(copies.sum())} rows name a run folder that another output of the same partition lists "
            "too; each run counts once"
        )
    return pooled[~copies].drop(columns="_run").reset_index(drop=True), notes


def paired_with_baseline(runs: pd.DataFrame, baseline: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(one row per (model, corpus, protocol, training corpora) of the non-baseline models: each of its runs
    paired with the baseline's run of the same partition and fold (`PAIR_KEY`; `runs` has a `partition`
    column, `partition_id` of each run's output), the mean and sample std of each side's test UAR and of the
    difference, how many runs are above / below the baseline; notes on what could not be paired). Several
    runs of a model on one fold (model seeds) each pair with the same baseline run; where the baseline has
    several runs of one fold with other results, their mean is its score there (noted). `baseline`: a model
    name; by default the openSMILE baseline with the best mean UAR on the corpus (over all its folds), as the
    leaderboard's "UAR vs best openSMILE". Pooled over several partitions of the speakers (outputs of
    several --split_seed values), this is repeated speaker cross-validation: one partition's 4 or 5 folds
    decide a close comparison by chance more often than their standard deviation suggests."""
    rows, notes = [], []
    for (protocol, corpus, train), group in runs.groupby(["protocol", "corpus", "train_corpora"], sort=True):
        if baseline is None:
            candidates = group[group["model"].str.startswith(BASELINE_PREFIX)]
            if candidates.empty:
                notes.append(f"{corpus} ({protocol}): no openSMILE baseline run; nothing to compare with")
                continue
            name = candidates.groupby("model")["test_uar"].mean().idxmax()
        else:
            name = baseline
        baseline_runs = group[group["model"] == name].groupby(list(PAIR_KEY))["test_uar"]
        if not len(baseline_runs):
            notes.append(f"{corpus} ({protocol}): no run of the baseline {name}; nothing to compare with")
            continue
        reference = baseline_runs.mean()
        differing = int((baseline_runs.nunique() > 1).sum())
        if differing:
            notes.append(
                f"{corpus} ({protocol}): {name} has runs with other results on the same fold in {differing} "
                "folds; their mean is the baseline there"
            )
        compared = [
            model
            for model in sorted(set(group["model"]))
            if model != name and not (baseline is None and model.startswith(BASELINE_PREFIX))
        ]
        if not compared:
            notes.append(f"{corpus} ({protocol}): no model besides the baseline {name}; nothing to compare")
        for model in compared:
            runs_of = group[group["model"] == model]
            keys = pd.MultiIndex.from_frame(runs_of[list(PAIR_KEY)])
            paired = keys.isin(reference.index)
            unpaired = int((~paired).sum())
            if unpaired:
                notes.append(
                    f"{model} on {corpus} ({protocol}): {unpaired} of {len(runs_of)} runs have no {name} "
                    "run of the same partition and fold and are left out"
                )
            if not paired.any():
                continue
            ours = runs_of["test_uar"].to_numpy(dtype=float)[paired]
            theirs = reference.loc[keys[paired]].to_numpy(dtype=float)
            difference = ours - theirs
            rows.append(
                {
                    "model": model,
                    "corpus": corpus,
                    "protocol": protocol,
                    "train_corpora": train,
                    "baseline": name,
                    "folds": int(paired.sum()),
                    "uar_mean": float(ours.mean()),
                    "uar_std": _sample_std(ours),
                    "baseline_uar_mean": float(theirs.mean()),
                    "baseline_uar_std": _sample_std(theirs),
                    "difference_mean": float(difference.mean()),
                    "difference_std": _sample_std(difference),
                    "folds_better": int((difference > TIE_TOLERANCE).sum()),
                    "folds_worse": int((difference < -TIE_TOLERANCE).sum()),
                    "unpaired_folds": unpaired,
                }
            )
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS)), notes


def render_paired_markdown(table: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """`paired_with_baseline`'s table as markdown, its notes below."""
    header = ["model", "corpus", "protocol", "folds", "UAR", "baseline", "baseline UAR", "difference"]
    header.append("folds better / worse")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        difference = _pm(row["difference_mean"], row["difference_std"])
        lines.append(
            f"| {row['model']} | {row['corpus']} | {row['protocol']} | {row['folds']} | "
            f"{_pm(row['uar_mean'], row['uar_std'])} | {row['baseline']} | "
            f"{_pm(row['baseline_uar_mean'], row['baseline_uar_std'])} | "
            f"{'+' if row['difference_mean'] >= 0 else ''}{difference} | "
            f"{row['folds_better']} / {row['folds_worse']} |"
        )
    lines += [
        "",
        "Test UAR paired fold by fold within each partition of the speakers (the same files), pooled over "
        "every output given: mean ± sample std over the model's runs (a fold once per model seed); the "
        "difference is the model's minus the baseline's, run by run.",
    ]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def expected_folds(folds_csv: str | os.PathLike) -> dict[tuple[str, str], int]:
    """(corpus tested, training corpora) -> number of runs per model, from folds.csv."""
    table = pd.read_csv(folds_csv, dtype=str, keep_default_na=False)
    expected: dict[tuple[str, str], int] = {}
    for _, rows in table.groupby("run", sort=False):
        test = rows.loc[rows["split"] == "test", "corpus"]
        train = " ".join(sorted(set(rows.loc[rows["split"] == "train", "corpus"])))
        key = (test.iloc[0] if len(test) else "", train)
        expected[key] = expected.get(key, 0) + 1
    return expected


def render_markdown(
    board: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    expected: dict[tuple[str, str], int] | None = None,
    figure: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    lines = ["# Benchmark leaderboard", ""]
    for protocol, table in board.groupby("protocol", sort=True):
        lines += [f"## Protocol `{protocol}`", ""]
        header = ["model", "corpus"]
        if protocol in ("loco", "cross-corpus"):
            header.append("trained on")
        header += ["folds", "UAR", "accuracy", "macro-F1"]
        compared = bool(table["baseline_uar"].notna().any())
        if compared:
            header.append("UAR vs best openSMILE")
        if protocol == "emobox":
            header.append("EmoBox UA (published)")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        flagged = below = False
        for _, row in table.iterrows():
            corpus = row["corpus"]
            if not row["speaker_independent"]:
                corpus += " †"
                flagged = True
            folds = str(row["folds"])
            want = (expected or {}).get((row["corpus"], row["train_corpora"]))
            if want is not None and want != row["folds"]:
                folds = f"{row['folds']} of {want} (incomplete)"
            cells = [row["model"], corpus]
            if protocol in ("loco", "cross-corpus"):
                cells.append(row["train_corpora"])
            cells += [
                folds,
                _pm(row["uar_mean"], row["uar_std"]),
                _pm(row["accuracy_mean"], row["accuracy_std"]),
                _pm(row["macro_f1_mean"], row["macro_f1_std"]),
            ]
            if compared:
                cells.append(_vs_baseline(row))
                below = below or row["reaches_baseline"] is False
            if protocol == "emobox":
                ua, _ = emobox.PUBLISHED.get(row["corpus"], (None, None))
                cells.append(
                    f"{ua / 100:.3f}" if ua is not None else emobox.PUBLISHED_NOTES.get(row["corpus"], "–")
                )
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
        lines.append("Mean ± standard deviation over folds (sample std; none for a single fold).")
        if compared:
            lines.append(
                "UAR vs best openSMILE: mean UAR minus that of the best openSMILE baseline on the same test "
                "corpus and training data" + (f"; {BELOW_BASELINE} marks a model below it." if below else ".")
            )
        if flagged:
            lines.append(
                "† not speaker-independent: the same speakers are in the training and test parts of its "
                "folds (EmoBox's CREMA-D, EMO-DB, ShEMO and TESS folds), so figures are optimistic."
            )
        if protocol == "emobox":
            lines.append(f"Published figures: {emobox.SOURCE}.")
        lines.append("")
        if protocol == "cross-corpus":
            for model, rows in table.groupby("model", sort=True):
                corpora = sorted(set(rows["corpus"]) | set(rows["train_corpora"]))
                lines += [f"UAR of `{model}` (rows: training corpus, columns: test corpus):", ""]
                lines += [
                    "| train \\ test | " + " | ".join(corpora) + " |",
                    "|" + "---|" * (len(corpora) + 1),
                ]
                cell = {(r["train_corpora"], r["corpus"]): r["uar_mean"] for _, r in rows.iterrows()}
                for source in corpora:
                    values = [
                        "—" if source == t else (f"{cell[source, t]:.3f}" if (source, t) in cell else "")
                        for t in corpora
                    ]
                    lines.append(f"| {source} | " + " | ".join(values) + " |")
                lines.append("")
    if figure:
        lines += [f"![UAR per model and corpus; confusion matrices summed over folds]({figure})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    lines.append(f"{len(runs)} runs; per-run results in runs.csv.")
    return "\n".join(lines) + "\n"


def run_confusion(row: pd.Series, output_dir: Path) -> tuple[list[str], list[list[int]]] | None:
    """(classes, test confusion matrix) of a runs row: from its `confusion_matrix` column, else from
    `confusion_matrix.json` in its run folder (`run_dir` relative to `output_dir`); None where neither has
    it."""
    recorded = row.get("confusion_matrix")
    if isinstance(recorded, str) and recorded:
        return str(row["classes"]).split(), json.loads(recorded)
    path = Path(output_dir) / row["run_dir"] / "confusion_matrix.json"
    if not path.is_file():
        return None
    with open(path) as f:
        data = json.load(f)
    return data["classes"], data["matrix"]


def confusion_matrix_cell(matrix: Sequence[Sequence[int]] | None) -> str:
    """A runs file's `confusion_matrix` cell: the matrix as compact JSON, "" for none."""
    return (
        "" if matrix is None else json.dumps([[int(v) for v in row] for row in matrix], separators=(",", ":"))
    )


def summed_confusions(
    runs: pd.DataFrame, output_dir: Path
) -> tuple[dict[tuple, tuple[list[str], np.ndarray]], list[str]]:
    """((protocol, model, corpus, training corpora) -> (classes, confusion matrix summed over its folds);
    a note for each of them with runs whose matrix is nowhere: neither in their row of the runs file (runs
    files written before the column) nor in `confusion_matrix.json` in their run folder (deleted or on
    another machine), or a training function that returned none; its matrix then sums the others' or, with
    none, is left out)."""
    sums: dict[tuple, tuple[list[str], np.ndarray]] = {}
    missing: dict[tuple, int] = {}
    totals: dict[tuple, int] = {}
    for _, row in runs.iterrows():
        key = (row["protocol"], row["model"], row["corpus"], row["train_corpora"])
        totals[key] = totals.get(key, 0) + 1
        confusion = run_confusion(row, output_dir)
        if confusion is None:
            missing[key] = missing.get(key, 0) + 1
            continue
        classes, matrix = confusion[0], np.asarray(confusion[1], dtype=np.int64)
        if key in sums and sums[key][0] == classes:
            sums[key] = (classes, sums[key][1] + matrix)
        elif key not in sums:
            sums[key] = (classes, matrix)
    notes = []
    for key, count in missing.items():
        _, model, corpus, _ = key
        shown = "left out" if key not in sums else f"summed over the other {totals[key] - count}"
        notes.append(
            f"{model} on {corpus}: {count} of {totals[key]} runs have no confusion matrix, neither in the "
            "runs file nor as confusion_matrix.json in their run folder (a runs file from before the column "
            "with the folder gone, or a training function that returned no matrix); its confusion matrix in "
            f"the figure is {shown}"
        )
    return sums, notes


def plot_leaderboard(board: pd.DataFrame, confusions: dict, path: str | os.PathLike) -> str:
    """Mean ± std UAR bars per corpus and model, then one confusion matrix (summed over folds, rows
    normalised) per (model, corpus)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(confusions)
    columns = max(1, min(4, panels))
    grid_rows = 1 + (panels + columns - 1) // columns
    fig = plt.figure(figsize=(4.2 * columns, 3.8 * grid_rows))
    ax = fig.add_subplot(grid_rows, 1, 1)
    labels = [
        f"{c}" if p not in ("loco", "cross-corpus") else f"{t}→{c}"
        for p, c, t in zip(board["protocol"], board["corpus"], board["train_corpora"], strict=True)
    ]
    groups = list(dict.fromkeys(labels))
    models = list(dict.fromkeys(board["model"]))
    width = 0.8 / max(1, len(models))
    for m, model in enumerate(models):
        sel = board["model"] == model
        x = [groups.index(lab) + m * width for lab, s in zip(labels, sel, strict=True) if s]
        ax.bar(
            x,
            board.loc[sel, "uar_mean"],
            width,
            yerr=board.loc[sel, "uar_std"].fillna(0),
            capsize=3,
            label=model,
        )
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], labels=groups, rotation=20, ha="right")
    ax.set_ylabel("test UAR (mean ± std over folds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small")
    for i, ((_, model, corpus, train), (classes, matrix)) in enumerate(sorted(confusions.items())):
        cax = fig.add_subplot(grid_rows, columns, columns + i + 1)
        title = f"{model} on {corpus}" + (f" (from {train})" if train != corpus else "")
        draw_confusion_matrix(cax, matrix, classes, title=title, small=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def write_reports(
    output_dir: str | os.PathLike, runs: pd.DataFrame, *, notes: Sequence[str] = ()
) -> pd.DataFrame:
    """leaderboard.csv, leaderboard.md and leaderboard.png in `output_dir` from the runs; returns the
    leaderboard."""
    output_dir = Path(output_dir)
    board = leaderboard(runs)
    write_csv_atomic(board, output_dir / "leaderboard.csv")
    figure = None
    if len(board):
        figure = "leaderboard.png"
        confusions, confusion_notes = summed_confusions(runs, output_dir)
        for note in confusion_notes:
            logger.warning(note)
        notes = [*notes, *confusion_notes]
        plot_leaderboard(board, confusions, output_dir / figure)
    folds_csv = output_dir / "folds.csv"
    expected = expected_folds(folds_csv) if folds_csv.is_file() else None
    write_text_atomic(
        render_markdown(board, runs, expected=expected, figure=figure, notes=notes),
        output_dir / "leaderboard.md",
    )
    return board
