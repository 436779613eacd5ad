"""A classical baseline for a generated corpus: MFCC statistics + logistic regression.

    python -m benchmarks.speech_corpora.baseline ravdess data_synth/ravdess
    python -m benchmarks.speech_corpora.baseline cremad data_synth/cremad

Reads the corpus through the project's own scanner (loaders.registry.CORPORA[corpus].scan_corpus), resamples
to 16 kHz as the loaders do, and describes each clip by the mean and standard deviation of 20 MFCCs and
their deltas over 25 ms frames (80 numbers). Accuracy of a standardised logistic regression on:
held-out speakers (GroupKFold by speaker, 4 folds: every speaker is tested once, never trained on) and a
random split (StratifiedKFold, 4 folds: the same speakers in train and test). Chance is 1 / classes.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.fft import dct
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loaders.builder import decode_audio, resample
from loaders.registry import CORPORA

RATE = 16000


def _mel_filterbank(n_mels: int, n_fft: int, rate: int) -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(20), mel(rate / 2), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / rate)
    bank = np.zeros((n_mels, len(bins)))
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        bank[i] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)
    return bank


FILTERBANK = _mel_filterbank(40, 512, RATE)


def mfcc(x: np.ndarray, n: int = 20) -> np.ndarray:
    """(frames, n) MFCCs: 25 ms Hamming frames every 10 ms, 40 mel bands, log, DCT-II."""
    win, hop = 400, 160
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop] * np.hamming(win)
    power = np.abs(np.fft.rfft(frames, 512)) ** 2
    return dct(np.log(power @ FILTERBANK.T + 1e-10), type=2, norm="ortho", axis=1)[:, :n]


def features(x: np.ndarray) -> np.ndarray:
    c = mfcc(x)
    d = np.diff(c, axis=0)
    return np.concatenate([c.mean(0), c.std(0), d.mean(0), d.std(0)])


def evaluate(corpus: str, folder: str) -> dict:
    scan = CORPORA[corpus].scan_corpus(folder)
    feats, labels, speakers = [], [], []
    for f in scan.files:
        samples, rate = decode_audio(f.path)
        feats.append(features(resample(samples, rate, RATE).astype(np.float64)))
        labels.append(f.info.emotion)
        speakers.append(f.info.speaker)
    X, y, groups = np.array(feats), np.array(labels), np.array(speakers)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
    held_out = cross_val_score(model, X, y, groups=groups, cv=GroupKFold(n_splits=min(4, len(set(speakers)))))
    random = cross_val_score(model, X, y, cv=StratifiedKFold(n_splits=4, shuffle=True, random_state=0))
    return {
        "files": len(y),
        "skipped": len(scan.skipped),
        "speakers": len(set(speakers)),
        "classes": sorted(set(labels)),
        "held_out_speakers": float(held_out.mean()),
        "random_split": float(random.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speech_corpora.baseline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    r = evaluate(args.corpus, args.folder)
    chance = 1 / len(r["classes"])
    print(
        f"{args.corpus} {args.folder}: {r['files']} files ({r['skipped']} skipped), {r['speakers']} "
        f"speakers, {len(r['classes'])} classes; MFCC-stats + logistic regression accuracy: held-out "
        f"speakers {r['held_out_speakers']:.3f}, random split {r['random_split']:.3f} (chance {chance:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
