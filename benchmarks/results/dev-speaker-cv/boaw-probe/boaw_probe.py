"""Bag-of-audio-words beside the S4's linear heads, replayed on a benchmark's folds: no network trained.

    python benchmarks/results/dev-speaker-cv/boaw-probe/boaw_probe.py RESULTS_DIR DATA_ROOT|- OUT.jsonl \
        [--codebook 256] [--assign 5]

A bag of audio words (Schmitt et al. 2016, openXBOW) summarises how a clip's frames are spread over a
codebook of typical frames, where functionals summarise each channel alone.

For every clip: the S4 defaults' head inputs (each linear head's standardised inputs, as the refit sees them)
and the frames its functionals and MFCC heads summarise (26 contours + 20 MFCCs, with their frame-to-frame
difference). Per fold: each head fitted as run_train.py refits it (its own C by the validation cross-entropy,
on the training clips) and their test logits summed (`heads`); a codebook of the training clips' frames
(k-means on standardised frames), each clip's histogram of its frames' `assign` nearest words (per frame),
fitted the same way (`boaw`); and the two summed (`heads+boaw`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import balanced_accuracy_score

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
# The speaker encoder probe's loading of the folds' clips and its fit of a head: one home for both.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speaker-encoder-probe"))
from speaker_encoder_probe import (  # noqa: E402
    BATCH_SIZE,
    CLASSES,
    MAX_SAMPLES,
    corpus_clips,
    fitted,
    fold_split,
    linear_heads,
)

from training.calibration import linear_head_inputs  # noqa: E402
from training.data import AudioCollator  # noqa: E402
from training.run_config import build_model  # noqa: E402


def head_inputs_and_frames(
    model, clips, collator
) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
    """`linear_head_inputs` of the model's heads, and from the same pass each clip's real frames of the
    functionals head's contours and the MFCC head's MFCCs, with their frame-to-frame differences."""
    captured = {"functionals_head": [], "mfcc_head": []}
    hooks = [
        getattr(model, name).register_forward_pre_hook(
            lambda module, args, kwargs, name=name: captured[name].append((args[0], args[1])),
            with_kwargs=True,
        )
        for name in captured
    ]
    try:
        inputs, labels = linear_head_inputs(model, clips, collator, BATCH_SIZE, linear_heads(model))
    finally:
        for hook in hooks:
            hook.remove()
    frames = []
    for (contours, mask), (mfcc, _) in zip(*captured.values(), strict=True):  # one pair per batch
        both = torch.cat([contours, mfcc], dim=-1).double().numpy()
        for features, real in zip(both, mask.numpy(), strict=True):
            x = features[real]
            frames.append(np.hstack([x, np.vstack([np.zeros((1, x.shape[1])), np.diff(x, axis=0)])]))
    return inputs, labels, frames


def histograms(frames, mean, std, codebook, assign) -> np.ndarray:
    words = codebook.shape[0]
    rows = []
    for x in frames:
        z = (x - mean) / std
        distance = (z * z).sum(1)[:, None] - 2 * z @ codebook.T + (codebook * codebook).sum(1)[None]
        nearest = np.argpartition(distance, assign, axis=1)[:, :assign]
        counts = np.bincount(nearest.ravel(), minlength=words) / len(x)
        rows.append(np.log1p(counts * words))  # a logarithmic term weighting, as openXBOW offers
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("data_root")
    parser.add_argument("out", type=Path)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--assign", type=int, default=5)
    args = parser.parse_args()
    table = pd.read_csv(args.results_dir / "folds.csv")
    position, clips = corpus_clips([table], args.data_root)
    model, extractor = build_model("s4", None, CLASSES, {})
    collator = AudioCollator(extractor, max_samples=MAX_SAMPLES, random_crop=False)
    inputs, labels, frames = head_inputs_and_frames(model, clips, collator)
    for fold in sorted(set(table.fold)):
        split = fold_split(table, fold, position)
        test_labels = labels[split["test"]]
        heads = {head: fitted(inputs[head], labels, split) for head in inputs}
        heads_logits = sum(fit[0] for fit in heads.values())
        train_frames = np.vstack([frames[i] for i in split["train"]])
        mean, std = train_frames.mean(0), train_frames.std(0) + 1e-8
        rng = np.random.default_rng(0)
        sample = train_frames[rng.choice(len(train_frames), min(50000, len(train_frames)), replace=False)]
        kmeans = MiniBatchKMeans(args.codebook, random_state=0, n_init=3, batch_size=4096)
        kmeans.fit((sample - mean) / std)
        bag = histograms(frames, mean, std, kmeans.cluster_centers_, args.assign)
        boaw_logits, boaw_c, _ = fitted(bag, labels, split)
        row = {
            "results": args.results_dir.name,
            "fold": int(fold),
            "codebook": args.codebook,
            "assign": args.assign,
            "heads": balanced_accuracy_score(test_labels, heads_logits.argmax(1)),
            "functionals_head": balanced_accuracy_score(test_labels, heads["functionals_head"][0].argmax(1)),
            "boaw": balanced_accuracy_score(test_labels, boaw_logits.argmax(1)),
            "heads+boaw": balanced_accuracy_score(test_labels, (heads_logits + boaw_logits).argmax(1)),
            "boaw_c": boaw_c,
        }
        print(json.dumps(row), flush=True)
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
