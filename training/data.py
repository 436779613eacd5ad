"""From a `load_corpora` DatasetDict to model inputs: no second cache, decode per batch, crop, pad.

The corpus cache already holds every clip once, decoded, resampled to 16 kHz and stored as PCM-16 WAV bytes
(`loaders`). `prepare_model_inputs` adds only what batching needs (each clip's `length`, read from its WAV
header) and drops clips shorter than the model can classify; `AudioCollator` decodes each batch's bytes
(`loaders.audio.decode_clip`: a PCM read, no resampling, tens of microseconds a clip) and crops them, a random
window in training and the centre in evaluation. An earlier version decoded every split into a float32 Arrow
cache beside the corpus cache: twice the corpus's size on disk and a full decoding pass before the first
step, for no gain in step time (benchmarks/bench_data_path.py measures both).

The per-clip normalisation (zero mean, unit variance over the real samples) is left to the model's own
feature extractor, called in the collator on the cropped clips: training sees exactly what the saved
feature extractor gives the model at inference time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import soxr
import torch
from sklearn.utils.class_weight import compute_class_weight

from loaders.audio import decode_clip, read_info
from loaders.schema import SAMPLING_RATE
from modeling.encoders import batch_features

logger = logging.getLogger(__name__)

# What a prepared split keeps: the undecoded audio, its length, the class, the corpus (per-corpus metrics).
MODEL_INPUT_COLUMNS: tuple[str, ...] = ("audio", "length", "label", "corpus")


def centre_crop(samples: np.ndarray, max_samples: int | None) -> np.ndarray:
    """The middle `max_samples` of a clip (the whole clip if it is not longer)."""
    if max_samples is None or len(samples) <= max_samples:
        return samples
    start = (len(samples) - max_samples) // 2
    return samples[start : start + max_samples]


def clip_length(audio: dict, sampling_rate: int = SAMPLING_RATE) -> int:
    """Samples of one undecoded `Audio` value at `sampling_rate`, from its header (nothing decoded)."""
    data, path = audio.get("bytes"), audio.get("path")
    info = read_info(data or path, name=path or None)
    if info.sampling_rate == sampling_rate:
        return info.num_frames
    return int(round(info.num_frames * sampling_rate / info.sampling_rate))


def prepare_model_inputs(
    dataset: datasets.DatasetDict,
    *,
    max_duration_seconds: float | None = None,
    min_samples: int = 0,
    sampling_rate: int = SAMPLING_RATE,
    train_split: str = "train",
) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """Each split as `audio` (undecoded), `length`, `label`, `corpus`; returns (prepared, dropped).

    Nothing is decoded or written: `length` comes from the WAV headers and is added beside the memory-mapped
    corpus cache. The train split's `length` is capped at the crop, so that length grouping sees what a batch
    will hold. Clips shorter than `min_samples` (the model's receptive field) cannot be classified: they are
    dropped, and `dropped` counts them per split (and the log names the count).
    """
    max_samples = int(round(max_duration_seconds * sampling_rate)) if max_duration_seconds else None
    prepared, dropped = {}, {}
    for split, ds in dataset.items():
        undecoded = ds.cast_column("audio", datasets.Audio(sampling_rate=None, decode=False))
        undecoded = undecoded.select_columns(["audio", "label", "corpus"])
        lengths = np.asarray(
            [clip_length(audio, sampling_rate) for audio in undecoded["audio"]], dtype=np.int64
        )
        keep = np.flatnonzero(lengths >= min_samples)
        too_short = len(lengths) - len(keep)
        if too_short:
            logger.warning(
                "%s: dropping %d clip(s) shorter than the model's minimum of %d samples (%.0f ms)",
                split,
                too_short,
                min_samples,
                1000 * min_samples / sampling_rate,
            )
        if split == train_split and max_samples:
            lengths = np.minimum(lengths, max_samples)
        with_lengths = undecoded.add_column("length", lengths.tolist())
        if too_short:
            with_lengths = with_lengths.select(keep)
        dropped[split] = too_short
        prepared[split] = with_lengths.select_columns(list(MODEL_INPUT_COLUMNS))
    return datasets.DatasetDict(prepared), dropped


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """scikit-learn's "balanced" class weights, n / (k * n_c), so a balanced set gets all ones.

    A class without training examples gets weight 0 (it cannot contribute to the loss anyway)."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    weights = np.zeros(num_classes)
    # k counts every class, present or not, so that the weights of present classes match n / (k * n_c).
    balanced = compute_class_weight("balanced", classes=present, y=labels)
    weights[present] = balanced * len(present) / num_classes
    return torch.tensor(weights, dtype=torch.float32)


@dataclass
class AudioCollator:
    """Perturbs the speed of, crops, normalises and pads a batch of clips into `input_values`,
    `attention_mask` and `labels`.

    With `speed_factors` (training only), each clip is first played at a speed drawn uniformly from them
    (Ko et al. 2015's speed perturbation: resampled by the factor, so tempo and pitch move together; 0.9 /
    1.0 / 1.1 is the usual set); a factor that would leave a clip shorter than `min_samples` is not used for
    it. Clips longer than `max_samples` are cut to a random window when `random_crop` (training: a different
    window every epoch), else to the centre. The feature extractor then normalises each clip over its real
    samples and pads to the longest clip of the batch with a 0/1 `attention_mask`; Whisper's extractor pads
    every clip to its window (the only length its encoder takes) into log-mel `input_features`, without a
    mask (its classifier takes none). The batch holds the extractor's `model_input_names`.
    """

    feature_extractor: object
    max_samples: int | None = None
    random_crop: bool = True
    sampling_rate: int = SAMPLING_RATE
    speed_factors: Sequence[float] | None = None
    min_samples: int = 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        clips = [self._crop(self._perturb(self._samples(f))) for f in features]
        out = batch_features(self.feature_extractor, clips, self.sampling_rate)
        if "label" in features[0]:
            out["labels"] = torch.tensor([int(f["label"]) for f in features], dtype=torch.long)
        return out

    def _samples(self, feature: dict) -> np.ndarray:
        # Prepared splits hold undecoded audio; a caller may also hand over decoded `input_values`.
        if "audio" in feature:
            return decode_clip(feature["audio"], self.sampling_rate)
        return np.asarray(feature["input_values"], dtype=np.float32)

    def _perturb(self, clip: np.ndarray) -> np.ndarray:
        if not self.speed_factors:
            return clip
        # torch's generator, as for the crops: the Trainer's seed governs the draws.
        factor = float(self.speed_factors[int(torch.randint(len(self.speed_factors), (1,)))])
        if factor == 1.0 or len(clip) / factor < self.min_samples:
            return clip
        # Played `factor` times faster = resampled to sampling_rate / factor and read at sampling_rate.
        return soxr.resample(clip, self.sampling_rate, self.sampling_rate / factor).astype(np.float32)

    def _crop(self, clip: np.ndarray) -> np.ndarray:
        if self.max_samples is None or len(clip) <= self.max_samples:
            return clip
        if not self.random_crop:
            return centre_crop(clip, self.max_samples)
        # torch's generator, so the Trainer's seed (and each dataloader worker's seed) governs the crops.
        start = int(torch.randint(0, len(clip) - self.max_samples + 1, (1,)))
        return clip[start : start + self.max_samples]
