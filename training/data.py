"""From a `load_corpora` DatasetDict to model inputs: decode once, crop, pad.

`prepare_model_inputs` decodes every clip once with `datasets.map` into a float32 `input_values` column
(plus `length` for length-grouped batching), cached as Arrow beside the corpus cache, so no epoch decodes
audio again and a second run (or the other processes of a distributed run) reuse it. Evaluation splits are
centre-cropped to `max_duration_seconds` there, once; training clips are kept whole so that
`AudioCollator` can draw a fresh random crop every step.

The per-clip normalisation (zero mean, unit variance over the real samples) is left to the model's own
feature extractor, called in the collator on the cropped clips: training sees exactly what the saved
feature extractor gives the model at inference time.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import soundfile as sf
import soxr
import torch
from sklearn.utils.class_weight import compute_class_weight
from transformers import WhisperFeatureExtractor

logger = logging.getLogger(__name__)

# What a prepared split keeps: the model input, its length, the class, the corpus (per-corpus metrics).
MODEL_INPUT_COLUMNS: tuple[str, ...] = ("input_values", "length", "label", "corpus")
SAMPLING_RATE = 16_000


def decode_clip(audio: dict, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Samples of one undecoded `Audio` value (``{"bytes", "path"}``) as float32 mono at `sampling_rate`."""
    source = io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio.get("path")
    if source is None:
        raise ValueError("audio value holds neither bytes nor a path")
    samples, rate = sf.read(source, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != sampling_rate:
        samples = soxr.resample(samples, rate, sampling_rate, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def centre_crop(samples: np.ndarray, max_samples: int | None) -> np.ndarray:
    """The middle `max_samples` of a clip (the whole clip if it is not longer)."""
    if max_samples is None or len(samples) <= max_samples:
        return samples
    start = (len(samples) - max_samples) // 2
    return samples[start : start + max_samples]


def _decode_batch(batch: dict, sampling_rate: int, max_samples: int | None) -> dict:
    # A module-level function with plain arguments: `datasets` hashes it into a stable cache fingerprint.
    clips = [centre_crop(decode_clip(audio, sampling_rate), max_samples) for audio in batch["audio"]]
    return {"input_values": clips, "length": [len(clip) for clip in clips]}


def prepare_model_inputs(
    dataset: datasets.DatasetDict,
    *,
    max_duration_seconds: float | None = None,
    min_samples: int = 0,
    num_proc: int | None = None,
    sampling_rate: int = SAMPLING_RATE,
    train_split: str = "train",
) -> tuple[datasets.DatasetDict, dict[str, int]]:
    """Decode each split once into `input_values` (float32) and `length`; returns (prepared, dropped).

    Evaluation splits are centre-cropped to `max_duration_seconds`; the train split stays whole (random crops
    come from `AudioCollator`), its `length` is capped at the crop so that length grouping sees what a batch
    will hold. Clips shorter than `min_samples` (the model's receptive field) cannot be classified: they are
    dropped, and `dropped` counts them per split (and the log names the count).
    """
    max_samples = int(round(max_duration_seconds * sampling_rate)) if max_duration_seconds else None
    prepared, dropped = {}, {}
    for split, ds in dataset.items():
        if len(ds) == 0:
            prepared[split] = _empty_inputs(ds)
            dropped[split] = 0
            continue
        undecoded = ds.cast_column("audio", datasets.Audio(sampling_rate=None, decode=False))
        features = datasets.Features(
            {
                "input_values": datasets.List(datasets.Value("float32")),
                "length": datasets.Value("int64"),
                "label": ds.features["label"],
                "corpus": datasets.Value("string"),
            }
        )
        is_train = split == train_split
        mapped = undecoded.select_columns(["audio", "label", "corpus"]).map(
            _decode_batch,
            batched=True,
            batch_size=32,
            writer_batch_size=64,  # rows are large (a few hundred kB): small Arrow batches keep memory flat
            fn_kwargs={"sampling_rate": sampling_rate, "max_samples": None if is_train else max_samples},
            remove_columns=["audio"],
            features=features,
            num_proc=num_proc if num_proc and num_proc > 1 and len(ds) >= 64 * num_proc else None,
            desc=f"Decoding {split} audio",
        )
        too_short = sum(1 for n in mapped["length"] if n < min_samples)
        if too_short:
            logger.warning(
                "%s: dropping %d clip(s) shorter than the model's minimum of %d samples (%.0f ms)",
                split,
                too_short,
                min_samples,
                1000 * min_samples / sampling_rate,
            )
            mapped = mapped.filter(lambda n: n >= min_samples, input_columns="length")
        if is_train and max_samples:
            capped = np.minimum(np.asarray(mapped["length"]), max_samples)
            mapped = mapped.remove_columns("length").add_column("length", capped.tolist())
        dropped[split] = too_short
        prepared[split] = mapped.select_columns(list(MODEL_INPUT_COLUMNS)).with_format(
            "numpy", columns=["input_values"], output_all_columns=True
        )
    return datasets.DatasetDict(prepared), dropped


def _empty_inputs(ds: datasets.Dataset) -> datasets.Dataset:
    features = datasets.Features(
        {
            "input_values": datasets.List(datasets.Value("float32")),
            "length": datasets.Value("int64"),
            "label": ds.features["label"],
            "corpus": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict({k: [] for k in MODEL_INPUT_COLUMNS}, features=features)


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
        clips = [self._crop(self._perturb(np.asarray(f["input_values"], dtype=np.float32))) for f in features]
        whisper = isinstance(self.feature_extractor, WhisperFeatureExtractor)
        batch = self.feature_extractor(
            clips,
            sampling_rate=self.sampling_rate,
            padding="max_length" if whisper else "longest",
            return_attention_mask=not whisper,
            return_tensors="pt",
        )
        names = getattr(self.feature_extractor, "model_input_names", None) or list(batch)
        out = {name: batch[name] for name in names if name in batch}
        if "label" in features[0]:
            out["labels"] = torch.tensor([int(f["label"]) for f in features], dtype=torch.long)
        return out

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
