"""Cutting a long recording into the pieces a clip classifier can take.

Energy voice-activity detection (:func:`detect_speech`): one RMS value per 10 ms hop, computed block
by block so only one float per hop is kept (360 000 floats for an hour); a frame is speech when its
level is above a threshold set from the recording itself (the noise floor plus a margin, never below an
absolute floor); short gaps are bridged, short blips dropped, edges padded, and long regions split so
no segment exceeds ``max_segment``. Fixed windows with overlap (:func:`fixed_windows`) are the fallback
for recordings without usable pauses (music beds, continuous noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class VadConfig:
    """Energy voice-activity detection settings.

    hop: seconds per energy frame. smooth: seconds of power averaging before thresholding.
    margin_db: how far above the noise floor (the 10th percentile of frame levels) speech must be.
    floor_db: absolute level (dBFS) below which nothing counts as speech; also the "silence only" test.
    threshold_db: a fixed threshold in dBFS that overrides the adaptive one when given.
    min_speech: drop speech regions shorter than this. min_silence: bridge gaps shorter than this.
    pad: seconds added before and after each region. max_segment: longer regions are split evenly.
    """

    hop: float = 0.01
    smooth: float = 0.03
    margin_db: float = 12.0
    floor_db: float = -55.0
    threshold_db: float | None = None
    min_speech: float = 0.25
    min_silence: float = 0.3
    pad: float = 0.1
    max_segment: float = 10.0


class FrameEnergy:
    """Accumulates per-hop mean power from consecutive blocks of one mono signal."""

    def __init__(self, sampling_rate: int, hop: float = 0.01):
        self.sampling_rate = sampling_rate
        self.hop_frames = max(1, round(hop * sampling_rate))
        self._carry = np.zeros(0, dtype=np.float32)
        self._powers: list[np.ndarray] = []
        self.num_samples = 0

    def push(self, block: np.ndarray) -> None:
        self.num_samples += len(block)
        data = np.concatenate([self._carry, block]) if len(self._carry) else block
        usable = len(data) - len(data) % self.hop_frames
        if usable:
            frames = data[:usable].reshape(-1, self.hop_frames).astype(np.float64)
            self._powers.append(np.mean(frames * frames, axis=1).astype(np.float32))
        self._carry = data[usable:].copy()

    def finish(self) -> np.ndarray:
        """Mean power per hop; a trailing partial hop counts as one frame."""
        if len(self._carry):
            self._powers.append(np.array([np.mean(self._carry.astype(np.float64) ** 2)], dtype=np.float32))
            self._carry = np.zeros(0, dtype=np.float32)
        return np.concatenate(self._powers) if self._powers else np.zeros(0, dtype=np.float32)

    @property
    def hop_seconds(self) -> float:
        return self.hop_frames / self.sampling_rate


def power_to_db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def speech_threshold_db(levels_db: np.ndarray, config: VadConfig) -> float:
    """The level above which a frame is speech, from the recording's own level distribution."""
    if config.threshold_db is not None:
        return config.threshold_db
    noise_floor = float(np.percentile(levels_db, 10))
    peak = float(np.max(levels_db))
    # A recording with no pauses has its 10th percentile inside speech; capping at peak - margin keeps
    # most of it above threshold instead of cutting it into syllables.
    return max(config.floor_db, min(noise_floor + config.margin_db, peak - config.margin_db))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a boolean array."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def split_long(segments: Iterable[Segment], max_segment: float) -> list[Segment]:
    """Split every segment longer than ``max_segment`` into equal consecutive parts."""
    out: list[Segment] = []
    for seg in segments:
        parts = max(1, math.ceil(seg.duration / max_segment - 1e-9))
        step = seg.duration / parts
        out.extend(Segment(seg.start + i * step, seg.start + (i + 1) * step) for i in range(parts))
    return out


def segments_from_energy(
    power: np.ndarray, hop_seconds: float, duration: float, config: VadConfig
) -> list[Segment]:
    """Speech segments from per-hop mean power (see the module docstring for the rules)."""
    if len(power) == 0:
        return []
    width = max(1, round(config.smooth / hop_seconds))
    smoothed = np.convolve(power, np.ones(width) / width, mode="same") if width > 1 else power
    levels = power_to_db(smoothed)
    speech = levels > speech_threshold_db(levels, config)
    regions = _runs(speech)
    # Bridge short gaps, then drop short regions.
    merged: list[list[int]] = []
    max_gap = config.min_silence / hop_seconds
    for start, end in regions:
        if merged and start - merged[-1][1] < max_gap:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    min_len = config.min_speech / hop_seconds
    kept = [(s, e) for s, e in merged if e - s >= min_len]
    padded: list[Segment] = []
    for s, e in kept:
        start = max(0.0, s * hop_seconds - config.pad)
        end = min(duration, e * hop_seconds + config.pad)
        if padded and start <= padded[-1].end:
            padded[-1] = Segment(padded[-1].start, end)
        else:
            padded.append(Segment(start, end))
    return split_long(padded, config.max_segment)


def is_silent(power: np.ndarray, config: VadConfig) -> bool:
    """True when no frame reaches ``floor_db``: nothing to classify."""
    return len(power) == 0 or float(power_to_db(power).max()) < config.floor_db


def fixed_windows(duration: float, window: float, overlap: float, min_last: float = 0.5) -> list[Segment]:
    """Windows of ``window`` seconds every ``window - overlap`` seconds covering ``[0, duration]``.

    The last window ends at ``duration``; a remainder shorter than ``min_last`` seconds is left to the
    previous window rather than classified alone.
    """
    if overlap < 0 or overlap >= window:
        raise ValueError(f"overlap must be in [0, window); got overlap={overlap}, window={window}")
    if duration <= window:
        return [Segment(0.0, duration)] if duration > 0 else []
    step = window - overlap
    out: list[Segment] = []
    start = 0.0
    while start + window < duration - 1e-9:
        out.append(Segment(start, start + window))
        start += step
    if duration - out[-1].end >= min_last:
        out.append(Segment(max(0.0, duration - window), duration))
    else:
        out[-1] = Segment(out[-1].start, duration)
    return out
