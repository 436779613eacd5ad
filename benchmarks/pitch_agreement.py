"""The models' pitch tracker against openSMILE's (ComParE_2016's F0final), frame by frame, on a corpus.

    python -m benchmarks.pitch_agreement CORPUS [--data_root ROOT] [--clips 60] [--seed 0] [--voicing 0.7]

Both models share one tracker (`modeling_cnn.PitchTracker`, copied into the S4's file); this runs it as the
CNN's defaults configure it (40 ms windows ending where each 25 ms frame ends, 10 ms hop, 75-500 Hz). For
`--clips` clips drawn from CORPUS (`--seed`), each frame that both call voiced (openSMILE: F0final > 0; the
tracker: voicing above `--voicing`, the voiced-F0 threshold of the twenty-fifth round's patch) is compared in
semitones, d = openSMILE's F0 minus the tracker's. The two frame grids are offset (openSMILE's 60 ms F0 window
starts where its frame starts, the tracker's window ends where its frame ends), so each clip is compared at
the shift of -4 to 4 frames with the smallest median |d| (a clip with fewer than 5 frames voiced in both at
every shift is counted as skipped). Printed: the frames voiced by each and by both, the median |d|, the
shares of those frames more than 1 and 5 semitones apart, and of those an octave apart either way (|d - 12|
or |d + 12| under 1.5): an octave error of one of the two. results/dev-speaker-cv/ROUNDS.md, twenty-fifth
round: on festival the two agree within 0.1 semitone; on espeak openSMILE is an octave above the tracker in
about a tenth of the frames.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.opensmile_baseline import require_opensmile  # noqa: E402
from evaluation.runner import corpus_loader  # noqa: E402
from loaders.schema import SAMPLING_RATE  # noqa: E402
from modeling import CNNConfig, CNNForAudioClassification  # noqa: E402

MAX_SHIFT = 4  # frames either way
MIN_FRAMES = 5


@dataclass
class ClipAgreement:
    differences: np.ndarray  # semitones, openSMILE's minus the tracker's, on the frames both call voiced
    shift: int  # the tracker's frame t + shift against openSMILE's frame t
    voiced_opensmile: int
    voiced_tracker: int


def compare_clip(
    opensmile_hz: np.ndarray,
    tracker_semitones: np.ndarray,
    voicing: np.ndarray,
    f0_min: float,
    threshold: float,
) -> ClipAgreement | None:
    """openSMILE's F0 in Hz (0 unvoiced) against the tracker's F0 in semitones above `f0_min` and its voicing,
    at the shift where they agree best; None when no shift leaves `MIN_FRAMES` frames voiced in both."""
    best = None
    for shift in range(-MAX_SHIFT, MAX_SHIFT + 1):
        theirs = opensmile_hz[max(0, -shift) :]
        ours, strength = tracker_semitones[max(0, shift) :], voicing[max(0, shift) :]
        length = min(len(theirs), len(ours))
        theirs, ours, strength = theirs[:length], ours[:length], strength[:length]
        both = (theirs > 0) & (strength > threshold)
        if both.sum() < MIN_FRAMES:
            continue
        differences = 12 * np.log2(theirs[both] / f0_min) - ours[both]
        if best is None or np.median(np.abs(differences)) < np.median(np.abs(best.differences)):
            best = ClipAgreement(
                differences, shift, int((theirs > 0).sum()), int((strength > threshold).sum())
            )
    return best


def summary(clips: Sequence[ClipAgreement], skipped: int) -> str:
    """One line: frames voiced, median |d|, the shares far apart and an octave apart."""
    d = np.concatenate([clip.differences for clip in clips])
    voiced_opensmile = sum(clip.voiced_opensmile for clip in clips)
    voiced_tracker = sum(clip.voiced_tracker for clip in clips)
    below = np.abs(d - 12) < 1.5  # openSMILE an octave above: the tracker an octave below
    above = np.abs(d + 12) < 1.5
    return (
        f"clips {len(clips)} (skipped {skipped}); frames voiced: openSMILE "
        f"{voiced_opensmile}, tracker {voiced_tracker}, both {len(d)}; "
        f"median |d| {np.median(np.abs(d)):.2f} semitones; > 1 st {np.mean(np.abs(d) > 1):.3f}, "
        f"> 5 st {np.mean(np.abs(d) > 5):.3f}; tracker an octave below {below.mean():.3f}, "
        f"above {above.mean():.3f}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", help="a corpus name (run_benchmark.py --corpora), e.g. ravdess, synthetic")
    parser.add_argument("--data_root", default=None, help="the benchmark's --data_root")
    parser.add_argument("--clips", type=int, default=60, help="clips drawn from the corpus")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    parser.add_argument("--voicing", type=float, default=0.7, help="the tracker's voicing threshold")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error(f"--clips {args.clips}: give at least 1")
    if not 0.0 <= args.voicing < 1.0:
        parser.error(f"--voicing {args.voicing}: give a threshold in [0, 1)")
    try:
        opensmile = require_opensmile()
    except ImportError as err:
        parser.error(str(err))
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )
    config = CNNConfig(num_labels=2)
    tracker = CNNForAudioClassification(config).features
    data = corpus_loader(args.data_root)(args.corpus)
    draw = np.random.default_rng(args.seed).choice(len(data), min(args.clips, len(data)), replace=False)
    clips, skipped = [], 0
    for index in sorted(int(i) for i in draw):
        samples = np.asarray(data[index]["audio"]["array"], dtype=np.float32)
        opensmile_hz = smile.process_signal(samples, SAMPLING_RATE)["F0final_sma"].to_numpy()
        waveform = torch.from_numpy(samples)[None]
        with torch.inference_mode():
            pitch = tracker.pitch(waveform, tracker.num_frames(waveform.shape[-1]))[0].numpy()
        clip = compare_clip(opensmile_hz, pitch[:, 0], pitch[:, 1], config.f0_min, args.voicing)
        if clip is None:
            skipped += 1
        else:
            clips.append(clip)
    if not clips:
        sys.exit(
            f"{args.corpus}: no clip had {MIN_FRAMES} frames voiced in both trackers; draw more (--clips)"
        )
    print(f"{args.corpus}: {summary(clips, skipped)}")


if __name__ == "__main__":
    main()
