"""A pretrained speaker encoder's embedding beside the CNN's or the S4's linear heads, replayed: no network
trained.

    python speaker_encoder_probe.py --model s4 --data_root ROOT|- --out OUT.jsonl RESULTS_DIR [...]

Needs Resemblyzer (`pip install --no-deps resemblyzer==0.1.4 webrtcvad-wheels`, in a venv of its own beside
the project's: its GE2E speaker encoder, a 3-layer LSTM trained to tell thousands of speakers apart, ships in
the wheel). Every RESULTS_DIR is a run_benchmark.py output folder of one corpus (its folds.csv); all of them
must hold the same clips (partitions of one corpus).

For every clip, once (its middle 4 s, as a run's evaluation cuts it):
- the inputs of each of the model's linear heads fitted after training, as `run_train.py` refits them
  (`training.calibration.linear_head_inputs`; the defaults of `--model`, random network weights: nothing
  before the heads is learnt);
- `emb`: the encoder's utterance embedding (the mean of its 1.6 s partial embeddings, L2-normalised; the
  clip at -30 dBFS or louder, as Resemblyzer's own preprocessing does, without its silence trimming);
- `emb_stats`: the mean and standard deviation of the partial embeddings.
Per fold: each head fitted as the refit fits it (`fit_head_like_baseline`: logistic regression, C by the
validation clips' cross-entropy, on the training clips), their test logits summed (`heads`: the model's
head branch without its gates, its network, its branch weights and its class prior correction);
`heads_gated`: the same with the gated heads (`GATED_HEADS`) kept only where the validation clips show they
help, judged as a run judges them but with the network's logits at zero; for the S4
`heads_without_energy_peaks`: the sum without the energy peaks head (which a run keeps as trained, not
refitted). Each embedding fitted the same way alone and with its logits added to the heads'. One JSON line
per fold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from evaluation.runner import corpus_loader  # noqa: E402
from loaders.loading import select_emotions  # noqa: E402
from training.arguments import load_recipe  # noqa: E402
from training.calibration import (  # noqa: E402
    GATED_HEADS,
    REFITTED_HEADS,
    fit_head_like_baseline,
    head_lowers_cross_entropy,
    linear_head_inputs,
)
from training.data import AudioCollator  # noqa: E402
from training.run_config import build_model  # noqa: E402

CLASSES = ["anger", "happy", "neutral", "sadness"]  # the suite's four default emotions
MAX_SAMPLES = 4 * 16000  # run_train.py's --max_duration_seconds 4, the middle of the clip
BATCH_SIZE = 16


def corpus_clips(tables: list[pd.DataFrame], data_root: str) -> tuple[dict[str, int], list[dict]]:
    """(file -> position, the clips in that order: audio and label) of the corpus that every folds.csv of
    `tables` partitions; `data_root` the benchmark's (- for none)."""
    corpora = {corpus for table in tables for corpus in table.corpus}
    files = sorted({file for table in tables for file in table.file})
    if len(corpora) != 1 or any(sorted(set(table.file)) != files for table in tables):
        raise SystemExit("every RESULTS_DIR must hold the same clips of one corpus")
    load = corpus_loader(None if data_root == "-" else data_root)
    data = select_emotions(load(corpora.pop()), CLASSES, {name: name for name in CLASSES})
    index = {file: i for i, file in enumerate(data["file"])}
    clips = [
        {"input_values": data[index[file]]["audio"]["array"], "label": data[index[file]]["label"]}
        for file in files
    ]
    return {file: i for i, file in enumerate(files)}, clips


def fold_split(table: pd.DataFrame, fold: int, position: dict[str, int]) -> dict[str, np.ndarray]:
    """The positions of the fold's train / validation / test clips."""
    members = table[table.fold == fold]
    return {
        name: np.array([position[file] for file in members[members.split == name].file])
        for name in ("train", "validation", "test")
    }


def linear_heads(model) -> list[str]:
    """The model's linear heads that a run fits or keeps after training, by attribute name."""
    return [name for name in (*REFITTED_HEADS, "energy_peaks_head") if getattr(model, name, None) is not None]


def middle(samples: np.ndarray) -> np.ndarray:
    start = max(0, (len(samples) - MAX_SAMPLES) // 2)
    return samples[start : start + MAX_SAMPLES]


def embeddings(clips: list[dict]) -> dict[str, np.ndarray]:
    from resemblyzer import VoiceEncoder
    from resemblyzer.audio import normalize_volume

    encoder = VoiceEncoder("cpu", verbose=False)
    utterance, stats = [], []
    for clip in clips:
        wav = normalize_volume(middle(np.asarray(clip["input_values"], dtype=np.float32)), -30, True)
        embed, partials, _ = encoder.embed_utterance(wav, return_partials=True)
        utterance.append(embed)
        stats.append(np.hstack([partials.mean(0), partials.std(0)]))
    return {"emb": np.array(utterance, np.float64), "emb_stats": np.array(stats, np.float64)}


def fitted(
    features: np.ndarray, labels: np.ndarray, split: dict[str, np.ndarray]
) -> tuple[np.ndarray, float, np.ndarray]:
    """(test logits, C, validation logits) of a head fitted as run_train.py refits it."""
    train, validation = split["train"], split["validation"]
    fit = fit_head_like_baseline(
        features[train], labels[train], features[validation], labels[validation], CLASSES
    )
    return (
        features[split["test"]] @ fit.weight.T + fit.bias,
        fit.c,
        features[validation] @ fit.weight.T + fit.bias,
    )


def gated_sum(fits: dict[str, tuple], validation_labels: np.ndarray, network_penalty: float) -> np.ndarray:
    """The heads' test logits summed, each of `GATED_HEADS` kept only where it lowers the validation clips'
    cross-entropy, as `training.calibration.gate_fitted_heads` keeps it, with the network's logits at zero."""
    kept = [name for name in fits if name not in GATED_HEADS]
    network = np.zeros_like(fits[kept[0]][2])
    for name in (name for name in GATED_HEADS if name in fits):
        others = sum(fits[k][2] for k in kept)
        if head_lowers_cross_entropy(network, others, fits[name][2], validation_labels, network_penalty):
            kept.append(name)
    return sum(fits[name][0] for name in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results_dirs", nargs="+", type=Path)
    parser.add_argument("--model", choices=("cnn", "s4"), required=True)
    parser.add_argument("--data_root", required=True, help="the benchmark's --data_root; - for none")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tables = {path: pd.read_csv(path / "folds.csv") for path in args.results_dirs}
    position, clips = corpus_clips(list(tables.values()), args.data_root)
    model, extractor = build_model(args.model, None, CLASSES, {})
    heads = linear_heads(model)
    # The gate's penalty on the network's weight, as a run of the model's recipe gives it (0 when unset).
    network_penalty = float(load_recipe(args.model).get("branch_network_penalty", 0.0))
    collator = AudioCollator(extractor, max_samples=MAX_SAMPLES, random_crop=False)
    inputs, labels = linear_head_inputs(model, clips, collator, BATCH_SIZE, heads)
    embedded = embeddings(clips)
    for path, table in tables.items():
        for fold in sorted(set(table.fold)):
            split = fold_split(table, fold, position)
            test_labels = labels[split["test"]]
            fits = {head: fitted(inputs[head], labels, split) for head in heads}
            heads_logits = sum(fit[0] for fit in fits.values())
            gated = gated_sum(fits, labels[split["validation"]], network_penalty)
            row = {
                "results": path.name,
                "model": args.model,
                "fold": int(fold),
                "heads": balanced_accuracy_score(test_labels, heads_logits.argmax(1)),
                "heads_gated": balanced_accuracy_score(test_labels, gated.argmax(1)),
            }
            if "energy_peaks_head" in fits:
                without = heads_logits - fits["energy_peaks_head"][0]
                row["heads_without_energy_peaks"] = balanced_accuracy_score(test_labels, without.argmax(1))
            for name, features in embedded.items():
                logits, c, _ = fitted(features, labels, split)
                row[name] = balanced_accuracy_score(test_labels, logits.argmax(1))
                row[f"heads+{name}"] = balanced_accuracy_score(test_labels, (heads_logits + logits).argmax(1))
                row[f"{name}_c"] = c
            print(json.dumps(row), flush=True)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
