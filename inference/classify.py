"""Classifying files and long recordings with any of the project's models.

:class:`EmotionClassifier` wraps a model and its feature extractor: a list of waveforms in, a
probability matrix out. :func:`predict_files` runs it over many files: each file is read lazily and cut
into segments (whole clip, voice-activity segments or fixed windows), segments from consecutive files
share batches, and each file ends with a timeline (one row per segment) and a summary (the
duration-weighted mean of the segment probabilities). Memory stays bounded by one block of audio plus
one batch of segments, whatever the recordings' length; a file that fails is reported and the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from modeling.encoders import batch_features

from .audio_io import AudioReadError, AudioSource
from .segmentation import FrameEnergy, Segment, VadConfig, fixed_windows, is_silent, segments_from_energy

SEGMENT_MODES = ("auto", "vad", "fixed", "none")


def top_labels(probabilities: np.ndarray, labels: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` (at least 1) most probable ``(label, probability)``, best first.

    The one ranking behind every top-k and best-emotion in prediction, the streaming loop and the demo.
    A stable sort, so ties go to the lower class id, as ``argmax`` would.
    """
    order = np.argsort(-np.asarray(probabilities), kind="stable")[: max(1, k)]
    return [(labels[i], float(probabilities[i])) for i in order]


def load_model(name_or_path: str, device: str | torch.device = "cpu", trust_remote_code: bool = False):
    """(model, feature_extractor) from a local directory or a Hub id, in eval mode on ``device``."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    import modeling.auto  # noqa: F401  (registers the project's model types with the Auto classes)

    remote = {"trust_remote_code": trust_remote_code}
    model = AutoModelForAudioClassification.from_pretrained(name_or_path, **remote)
    feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **remote)
    return model.to(device).eval(), feature_extractor


class EmotionClassifier:
    """A model plus its feature extractor: waveforms at ``sampling_rate`` in, class probabilities out."""

    def __init__(self, model, feature_extractor, device: str | torch.device | None = None):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        id2label = model.config.id2label
        self.labels = [id2label[i] for i in range(len(id2label))]
        self.sampling_rate = int(getattr(feature_extractor, "sampling_rate", 16000))
        # Shorter inputs cannot fill the model's front-end window (the feature extractor refuses them).
        from modeling.auto import min_input_samples

        self.min_samples = max(
            int(getattr(feature_extractor, "min_samples", 0) or 0), min_input_samples(model), 1
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str, device: str = "cpu", trust_remote_code: bool = False):
        model, feature_extractor = load_model(name_or_path, device, trust_remote_code)
        return cls(model, feature_extractor, device)

    def prepare(self, waveforms: list[np.ndarray]) -> dict[str, torch.Tensor]:
        inputs = batch_features(self.feature_extractor, waveforms, self.sampling_rate)
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.inference_mode()
    def logits(self, waveforms: list[np.ndarray]) -> np.ndarray:
        return self.model(**self.prepare(waveforms)).logits.float().cpu().numpy()

    def probabilities(self, waveforms: list[np.ndarray]) -> np.ndarray:
        logits = torch.from_numpy(self.logits(waveforms))
        return torch.softmax(logits, dim=-1).numpy()

    def top_k(self, probabilities: np.ndarray, k: int) -> list[tuple[str, float]]:
        return top_labels(probabilities, self.labels, k)


@dataclass
class SegmentPrediction:
    start: float
    end: float
    probabilities: np.ndarray

    def emotion(self, labels: list[str]) -> tuple[str, float]:
        return top_labels(self.probabilities, labels, 1)[0]


@dataclass
class FileResult:
    """What happened to one input path.

    status: ``"ok"`` (classified), ``"failed"`` (unreadable, empty, silence only, ...: see ``error``) or
    ``"skipped"`` (not an audio file, met while walking a folder; see ``error``).
    probabilities: the duration-weighted mean over segments (``None`` unless ok).
    """

    path: str
    status: str = "ok"
    error: str = ""
    duration: float = 0.0
    segmentation: str = ""
    segments: list[SegmentPrediction] = field(default_factory=list)
    probabilities: np.ndarray | None = None
    silent_segments: int = 0  # segments dropped because nothing in them reached the VAD floor

    def summarize(self) -> None:
        if not self.segments:
            self.status = "failed"
            self.error = self.error or f"{self.path}: no speech found (every segment is silent or too short)"
            return
        weights = np.array([max(s.end - s.start, 1e-6) for s in self.segments])
        stacked = np.stack([s.probabilities for s in self.segments])
        self.probabilities = (weights[:, None] * stacked).sum(0) / weights.sum()

    def top_k(self, labels: list[str], k: int) -> list[tuple[str, float]]:
        return [] if self.probabilities is None else top_labels(self.probabilities, labels, k)


@dataclass
class PredictOptions:
    """How files are cut and batched.

    segment: ``auto`` (clips up to ``max_segment`` s whole; longer ones by voice activity, falling back to
    fixed windows when no pause is found), ``vad``, ``fixed`` or ``none`` (the whole file as one input:
    loads it entirely, meant for short clips). window / overlap: fixed-window size and overlap in seconds.
    block_seconds: how much audio is read at a time while measuring energy.
    """

    segment: str = "auto"
    batch_size: int = 8
    window: float = 5.0
    overlap: float = 1.0
    block_seconds: float = 30.0
    vad: VadConfig = field(default_factory=VadConfig)

    def __post_init__(self):
        if self.segment not in SEGMENT_MODES:
            raise ValueError(f"segment={self.segment!r} is not one of {SEGMENT_MODES}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def _measure_energy(source: AudioSource, options: PredictOptions) -> tuple[np.ndarray, float]:
    """Per-hop power of the whole file, read block by block: (power, hop_seconds)."""
    energy = FrameEnergy(source.native_block_rate, options.vad.hop)
    # Whole hops per block, so no partial hop is carried between blocks.
    hops_per_block = max(1, round(options.block_seconds * source.native_block_rate / energy.hop_frames))
    for block in source.native_blocks(hops_per_block * energy.hop_frames):
        energy.push(block)
    return energy.finish(), energy.hop_seconds


def _measure_and_screen(source: AudioSource, options: PredictOptions) -> tuple[np.ndarray, float, float]:
    """(power, hop_seconds, duration) of one opened file; AudioReadError for NaN/Inf or silence only."""
    power, hop = _measure_energy(source, options)  # reads every sample: NaN/Inf raise here
    # Torchcodec's header duration can be missing or approximate; the decoded length is the truth.
    duration = source.duration
    if source.info.backend == "torchcodec":
        duration = max(duration, len(power) * hop)
    if duration <= 0:
        raise AudioReadError(f"{source.path}: the file holds no audio samples")
    if is_silent(power, options.vad):
        raise AudioReadError(
            f"{source.path}: silence only (no part reaches {options.vad.floor_db:g} dBFS); nothing to "
            "classify"
        )
    return power, hop, duration


def _too_short(path: str, samples: int, min_samples: int, rate: int) -> AudioReadError:
    return AudioReadError(
        f"{path}: {samples} samples ({1000 * samples / rate:.0f} ms) is shorter than the model's minimum of "
        f"{min_samples} samples"
    )


def screen_file(source: AudioSource, options: PredictOptions, min_samples: int) -> float:
    """The file's duration, or AudioReadError for what offline prediction refuses in a whole file.

    NaN/Inf samples, silence only, fewer than ``min_samples`` samples at the target rate: the checks of
    :func:`predict_files`, for a caller that feeds the file on by itself (streaming) and must refuse the
    same files before it has shown anything for them. Reads the file once, block by block.
    """
    _, _, duration = _measure_and_screen(source, options)
    samples = round(duration * source.target_rate)
    if samples < min_samples:
        raise _too_short(source.path, samples, min_samples, source.target_rate)
    return duration


def plan_segments(source: AudioSource, options: PredictOptions) -> tuple[str, list[Segment]]:
    """(segmentation used, segments) for one opened file. Raises AudioReadError for silence-only input."""
    if options.segment == "none":
        return "none", [Segment(0.0, source.duration)]
    power, hop, duration = _measure_and_screen(source, options)
    if options.segment == "fixed":
        return "fixed", fixed_windows(duration, options.window, options.overlap)
    if options.segment == "auto" and duration <= options.vad.max_segment:
        return "whole", [Segment(0.0, duration)]
    segments = segments_from_energy(power, hop, duration, options.vad)
    if options.segment == "auto" and not segments:
        return "fixed", fixed_windows(duration, options.window, options.overlap)
    return "vad", segments


def _segment_is_silent(audio: np.ndarray, floor_db: float) -> bool:
    if len(audio) == 0:
        return True
    return 10 * np.log10(max(float(np.max(audio.astype(np.float64) ** 2)), 1e-12)) < floor_db


def predict_files(
    classifier: EmotionClassifier,
    entries: Iterable[tuple[str, str | None]],
    options: PredictOptions | None = None,
) -> Iterator[FileResult]:
    """Classify each ``(path, skip_reason)``; yields one :class:`FileResult` per entry, in input order.

    ``skip_reason`` set means the path was not decoded (e.g. not an audio extension in a walked folder)
    and comes back as ``status="skipped"``. Segments of consecutive files are batched together; a
    file's result is yielded as soon as its last segment has been classified.
    """
    options = options or PredictOptions()
    pending: list[tuple[FileResult, Segment, np.ndarray]] = []
    open_results: list[FileResult] = []  # in input order, not yet yielded
    remaining: dict[int, int] = {}  # id(result) -> segments queued but not classified yet

    def fail(result: FileResult, error: Exception) -> None:
        result.status, result.error = "failed", f"{result.path}: the model failed on it: {error}"
        result.segments.clear()

    def flush() -> None:
        if not pending:
            return
        try:
            probabilities = list(classifier.probabilities([audio for _, _, audio in pending]))
        except (RuntimeError, ValueError):
            # Retry one by one so that only the file the model refuses fails, not its batch neighbours.
            probabilities = []
            for result, _, audio in pending:
                try:
                    probabilities.append(classifier.probabilities([audio])[0])
                except (RuntimeError, ValueError) as error:
                    fail(result, error)
                    probabilities.append(None)
        for (result, segment, _), probs in zip(pending, probabilities, strict=True):
            remaining[id(result)] -= 1
            if result.status == "ok" and probs is not None:
                result.segments.append(SegmentPrediction(segment.start, segment.end, probs))
        pending.clear()

    def finished() -> Iterator[FileResult]:
        while open_results and remaining[id(open_results[0])] == 0:
            result = open_results.pop(0)
            del remaining[id(result)]
            if result.status == "ok":
                result.segments.sort(key=lambda s: s.start)
                result.summarize()
            yield result

    for path, skip_reason in entries:
        result = FileResult(path=os.fspath(path))
        remaining[id(result)] = 0
        open_results.append(result)
        if skip_reason:
            result.status, result.error = "skipped", skip_reason
            yield from finished()
            continue
        try:
            with AudioSource(path, classifier.sampling_rate) as source:
                result.segmentation, segments = plan_segments(source, options)
                result.duration = max(source.duration, segments[-1].end if segments else 0.0)
                for segment in segments:
                    audio = source.read(segment.start, segment.end)
                    if len(audio) < classifier.min_samples:
                        if len(segments) == 1:
                            raise _too_short(
                                path, len(audio), classifier.min_samples, classifier.sampling_rate
                            )
                        result.silent_segments += 1  # a sliver at a boundary: too short to hold speech
                        continue
                    if _segment_is_silent(audio, options.vad.floor_db):
                        result.silent_segments += 1
                        continue
                    remaining[id(result)] += 1
                    pending.append((result, segment, audio))
                    if len(pending) >= options.batch_size:
                        flush()
        except (AudioReadError, OSError, RuntimeError, ValueError) as error:
            # Segments of this file already queued are dropped with it: a half-read file is a failure.
            pending[:] = [p for p in pending if p[0] is not result]
            remaining[id(result)] = 0  # its segments in batches already run were counted off there
            result.segments.clear()
            result.status, result.error = "failed", str(error)
        if remaining[id(result)] == 0 and result.status == "ok" and not result.segments:
            result.summarize()  # every segment was silent: marks the file failed with the reason
        yield from finished()
    flush()
    yield from finished()
