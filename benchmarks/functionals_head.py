"""The functionals head alone, fitted as `run_train.py` refits it, on a benchmark's folds: no training.

    python -m benchmarks.functionals_head RESULTS_DIR [RESULTS_DIR ...] [--data_root ROOT] [--model cnn]
        [--variant NAME='{"config_field": value}' ...] [--opensmile_family NAME=REGEX ...] [--energy_peaks]
        [--max_duration_seconds 4]

RESULTS_DIR is a `run_benchmark.py --output_dir` (its folds.csv and folds.json; `run_benchmark.py --dry_run`
writes them without training anything); `--data_root` is the benchmark's.

Nothing before the linear classifier of the CNN's or the S4's functionals head is learnt: the head sees
functionals of fixed front-end features (mel, MFCC, pitch, energy, spectral shape), standardised by a
BatchNorm whose affine map the fit's own scaler undoes. So a new model's head inputs are a trained model's,
and the refitted head of a run (`training.calibration.refit_functionals_head`) is a function of the audio and
the fold alone: deterministic, the same in every seed. On the development corpora it decides most of the
model's test UAR (results/dev-speaker-cv/ROUNDS.md, twenty-first round), and it costs about a tenth of
a training run to measure.

For each fold of each RESULTS_DIR this computes the head's inputs of every clip (cut to its middle
`--max_duration_seconds`, as a run's evaluation cuts it; run_train.py's default 4 s) and fits the head as
`run_train.py` refits it (`training.calibration.fit_head_like_baseline`: logistic regression, balanced
classes, C chosen by the validation clips' cross-entropy, by their UAR before the thirtieth round and in
functionals-head.md's figures up to it, fitted on the training clips), then scores the test clips. The model
is `--model`'s defaults (`defaults`) and each `--variant`: the defaults with those config fields changed (the
fields of `--config_overrides`: `functionals`, `functionals_mel_group`, `n_mfcc`, ...). An energy peaks head
(the S4's default) is left out: this measures the functionals head alone. Printed per fold, then as mean ±
std over the folds of each RESULTS_DIR, with each variant's difference from the defaults fold by fold.

`--opensmile_family NAME=REGEX` asks what the head lacks that the openSMILE baseline has: the variant NAME is
the defaults' inputs beside the ComParE_2016 functionals whose names match REGEX (`re.match`: `pcm_fftMag`
for the 15 descriptors of the FFT spectrum, `F0final|voicingFinal|jitter|shimmer|logHNR` for prosody, `.`
for all 6373), extracted as the baseline extracts them (`evaluation.opensmile_baseline.extract_functionals`:
whole clips, its cache), fitted the same way. A family that lifts the head names descriptors it is missing.

`--energy_peaks` adds, for each variant, `<variant>+energy_peaks`: the energy peaks head (the twelve peak
functionals of the RMS contour) fitted the same way on its own inputs, with its own C, and its test logits
added to the functionals head's, as a refit of both heads would leave the model's sum of them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.opensmile_baseline import extract_functionals, feature_names  # noqa: E402
from evaluation.runner import corpus_loader  # noqa: E402
from loaders.loading import select_emotions  # noqa: E402
from loaders.schema import SAMPLING_RATE  # noqa: E402
from training.calibration import fit_head_like_baseline, linear_head_inputs  # noqa: E402
from training.data import AudioCollator  # noqa: E402
from training.run_config import UsageError, build_model, parse_config_overrides  # noqa: E402

DEFAULT_MAX_SECONDS = 4.0  # run_train.py's --max_duration_seconds
BATCH_SIZE = 16


def parse_variant(text: str, model_kind: str) -> tuple[str, dict]:
    """'NAME={"field": value}' -> (NAME, overrides), the overrides checked as `--config_overrides` are."""
    name, sep, overrides = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--variant {text!r}: give NAME='{{\"config_field\": value}}'")
    if name == "defaults":
        raise UsageError(
            "--variant defaults: that name is the model's defaults, printed anyway; choose another"
        )
    return name, parse_config_overrides(overrides, model_kind)


def parse_family(text: str, names: Sequence[str]) -> tuple[str, np.ndarray]:
    """'NAME=REGEX' -> (NAME, which of the ComParE functionals `names` REGEX matches)."""
    name, sep, pattern = text.partition("=")
    if not sep or not name or not pattern:
        raise UsageError(f"--opensmile_family {text!r}: give NAME=REGEX, e.g. spectral=pcm_fftMag")
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise UsageError(f"--opensmile_family {text!r}: not a regular expression ({err})") from None
    columns = np.array([compiled.match(feature) is not None for feature in names])
    if not columns.any():
        raise UsageError(
            f"--opensmile_family {text!r}: no ComParE_2016 functional's name starts with a match "
            f"(names are like {names[0]})"
        )
    return name, columns


def load_folds(results_dir: Path) -> tuple[pd.DataFrame, dict[str, dict]]:
    """(folds.csv, run -> its fold's entry of folds.json: classes, mapping)."""
    folds_csv, folds_json = results_dir / "folds.csv", results_dir / "folds.json"
    for path in (folds_csv, folds_json):
        if not path.is_file():
            raise UsageError(
                f"{path}: not found; give a run_benchmark.py --output_dir (run_benchmark.py --dry_run writes "
                "its folds without training)"
            )
    table = pd.read_csv(folds_csv)
    folds = {fold["run"]: fold for fold in json.loads(folds_json.read_text())["folds"]}
    unknown = sorted(set(table["run"]) - set(folds))
    if unknown:
        raise UsageError(
            f"{folds_json}: no entry for the runs {', '.join(unknown)} of folds.csv; run the plan again"
        )
    return table, folds


def probe(
    results_dir: Path,
    data_root: str | None,
    model_kind: str,
    variants: dict[str, dict],
    max_samples: int | None,
    families: dict[str, np.ndarray] | None = None,
    energy_peaks: bool = False,
) -> list[dict]:
    """One row per (fold, variant, then family): the head's test UAR, the C chosen and the number of inputs.
    Each clip's inputs are computed once per variant: they do not depend on the fold. `families`: name ->
    the ComParE_2016 columns set beside the defaults' inputs. `energy_peaks`: also each variant with the
    energy peaks head beside it (`<variant>+energy_peaks`), each head fitted on its own inputs with its own C
    and their logits summed, as the model sums its heads."""
    families = families or {}
    table, folds = load_folds(results_dir)
    load = corpus_loader(data_root)
    rows = []
    for corpus in sorted({fold["corpus"] for fold in folds.values()}):
        runs = sorted(run for run, fold in folds.items() if fold["corpus"] == corpus)
        first = folds[runs[0]]
        for run in runs:
            fold = folds[run]
            if fold["train_corpora"] != [corpus] or set(table[table.run == run].corpus) != {corpus}:
                raise UsageError(
                    f"{results_dir}: {run} trains on other corpora; this probes one corpus a fold"
                )
            if (fold["classes"], fold["mapping"]) != (first["classes"], first["mapping"]):
                raise UsageError(f"{results_dir}: {run} has other classes than {runs[0]}; probe them apart")
        data = select_emotions(load(corpus), first["classes"], first["mapping"])
        index = {file: i for i, file in enumerate(data["file"])}
        members = table[table.run.isin(runs)]
        missing = sorted(set(members.file) - set(index))
        if missing:
            raise UsageError(
                f"{results_dir / 'folds.csv'}: {len(missing)} files of {corpus} are not in the corpus (e.g. "
                f"{missing[0]}); give the benchmark's --data_root"
            )
        files = sorted(set(members.file))
        position = {file: i for i, file in enumerate(files)}
        clips = [
            {"input_values": data[index[file]]["audio"]["array"], "label": data[index[file]]["label"]}
            for file in files
        ]
        inputs, peaks = {}, {}
        heads = ("functionals_head", "energy_peaks_head") if energy_peaks else ("functionals_head",)
        for name, overrides in variants.items():
            overrides = {**overrides, "functionals_head": True, "energy_peaks_head": energy_peaks}
            model, extractor = build_model(model_kind, None, first["classes"], overrides)
            # The refit's own path: the evaluation collator cuts each clip to its middle `max_samples`.
            collator = AudioCollator(extractor, max_samples=max_samples, random_crop=False)
            head_inputs, labels = linear_head_inputs(model, clips, collator, BATCH_SIZE, heads)
            inputs[name] = head_inputs["functionals_head"]
            if energy_peaks:
                peaks[name] = head_inputs["energy_peaks_head"]
        if families:
            compare = extract_functionals(data.select([index[file] for file in files]), "compare")
            for name, columns in families.items():
                inputs[name] = np.hstack([inputs["defaults"], compare[:, columns].astype(np.float64)])
        for run in runs:
            split = {
                name: np.array(
                    [position[file] for file in members[(members.run == run) & (members.split == name)].file]
                )
                for name in ("train", "validation", "test")
            }
            logits = {}
            for name in [*variants, *families]:
                # openSMILE's NaN rows (clips too short for it) as the baseline's imputer fills them.
                logits[name] = fitted_logits(
                    impute(inputs[name], split["train"]), labels, split, first["classes"]
                )
            for name in peaks:
                peak_inputs = impute(peaks[name], split["train"])
                peak_logits = fitted_logits(peak_inputs, labels, split, first["classes"])
                logits[f"{name}+energy_peaks"] = (
                    logits[name][0] + peak_logits[0],
                    peak_logits[1],
                    logits[name][2] + peak_logits[2],
                )
            for name, (test_logits, c, width) in logits.items():
                row = {
                    "results": results_dir.name,
                    "run": run,
                    "variant": name,
                    "uar": balanced_accuracy_score(labels[split["test"]], test_logits.argmax(1)),
                    "C": c,
                    "inputs": width,
                }
                rows.append(row)
                print(
                    f"{row['results']} {run} {name}: head UAR {row['uar']:.3f} (C {c:g}, {width} inputs)",
                    flush=True,
                )
    return rows


def fitted_logits(
    features: np.ndarray, labels: np.ndarray, split: dict[str, np.ndarray], classes: Sequence[str]
) -> tuple[np.ndarray, float, int]:
    """(the test clips' logits, the C chosen, the number of inputs) of a head fitted as `run_train.py` refits
    it on the fold's `split` (positions of its train / validation / test clips in `features`)."""
    fit = fit_head_like_baseline(
        features[split["train"]],
        labels[split["train"]],
        features[split["validation"]],
        labels[split["validation"]],
        classes,
    )
    return features[split["test"]] @ fit.weight.T + fit.bias, fit.c, features.shape[1]


def impute(features: np.ndarray, train: np.ndarray) -> np.ndarray:
    """`features` with each NaN replaced by its column's mean over the rows `train` (0 where all are NaN)."""
    missing = np.isnan(features)
    if not missing.any():
        return features
    with np.errstate(invalid="ignore"):
        means = np.nan_to_num(np.nanmean(features[train], axis=0))
    return np.where(missing, means, features)


def summary(rows: list[dict], variants: Sequence[str]) -> list[str]:
    """Markdown rows: per RESULTS_DIR and variant, mean ± std of the test UAR over the folds and, beside the
    defaults, the mean difference fold by fold and how many folds it won / lost."""
    lines = [
        "| results | variant | inputs | folds | head UAR | vs defaults | folds better / worse |",
        "|---|---|---|---|---|---|---|",
    ]
    for results in dict.fromkeys(row["results"] for row in rows):
        uar = {
            name: {
                row["run"]: row["uar"] for row in rows if row["results"] == results and row["variant"] == name
            }
            for name in variants
        }
        for name in variants:
            values = list(uar[name].values())
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            inputs = next(r["inputs"] for r in rows if r["results"] == results and r["variant"] == name)
            if name == "defaults":
                versus = better = ""
            else:
                differences = [uar[name][run] - uar["defaults"][run] for run in uar[name]]
                versus = f"{statistics.mean(differences):+.3f}"
                better = f"{sum(d > 0 for d in differences)} / {sum(d < 0 for d in differences)}"
            lines.append(
                f"| {results} | {name} | {inputs} | {len(values)} | "
                f"{statistics.mean(values):.3f} ± {spread:.3f} | {versus} | {better} |"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results_dirs", nargs="+", type=Path, help="run_benchmark.py output folders")
    parser.add_argument("--data_root", default=None, help="the benchmark's --data_root")
    parser.add_argument("--model", choices=("cnn", "s4"), default="cnn", help="whose functionals head")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="""NAME='{"config_field": value}': the defaults with these fields changed (repeatable)""",
    )
    parser.add_argument(
        "--opensmile_family",
        action="append",
        default=[],
        help="NAME=REGEX: the defaults' inputs and the ComParE_2016 functionals REGEX matches (repeatable)",
    )
    parser.add_argument(
        "--energy_peaks",
        action="store_true",
        help="also each variant with the energy peaks head beside it, fitted on its own (its own C)",
    )
    parser.add_argument(
        "--max_duration_seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help="clips are cut to their middle this long, as a run's evaluation cuts them (0: whole clips)",
    )
    args = parser.parse_args(argv)
    try:
        variants = {"defaults": {}}
        for text in args.variant:
            name, overrides = parse_variant(text, args.model)
            if name in variants:
                raise UsageError(f"--variant {name}: given twice")
            variants[name] = overrides
        families = {}
        if args.opensmile_family:
            try:
                names = feature_names("compare")
            except ImportError as err:
                raise UsageError(f"--opensmile_family: {err}") from None
            for text in args.opensmile_family:
                name, columns = parse_family(text, names)
                if name in variants or name in families:
                    raise UsageError(f"--opensmile_family {name}: that name is given twice")
                families[name] = columns
        for results_dir in args.results_dirs:  # every folder checked before any clip is read
            load_folds(results_dir)
    except UsageError as err:
        parser.error(str(err))
    max_samples = int(args.max_duration_seconds * SAMPLING_RATE) if args.max_duration_seconds else None
    rows = []
    try:
        for results_dir in args.results_dirs:
            rows += probe(
                results_dir, args.data_root, args.model, variants, max_samples, families, args.energy_peaks
            )
    except UsageError as err:
        parser.error(str(err))
    peaks = [f"{name}+energy_peaks" for name in variants] if args.energy_peaks else []
    print("\n".join(summary(rows, [*variants, *families, *peaks])))


if __name__ == "__main__":
    main()
