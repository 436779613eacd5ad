"""The one feature extractor every model of the project saves: mono 16 kHz waveforms in, `input_values` out.

`SERFeatureExtractor` is transformers' `Wav2Vec2FeatureExtractor` (zero-mean / unit-variance per clip over its
real samples, right padding with zeros, an `attention_mask` with 1 for real samples) with the input checks
the base class leaves out:

* an empty clip, or one with NaN / inf samples, is an error naming the clip;
* a `sampling_rate` other than 16 kHz is an error that says to resample (the audio-classification pipeline
  resamples by itself when given ``{"array": ..., "sampling_rate": ...}``);
* multi-channel audio is an error, never a silent batch. The base class reads any 2-D array as a batch, so a
  stereo clip shaped (2, samples), as torchaudio and torchcodec return it, would become two "clips" and two
  predictions. A 2-D array with one axis of 2-8 and a longer other axis is therefore refused with the
  downmix to write (``audio.mean(axis=0)``); pass a batch as a list of 1-D arrays. An axis of size 1 is one
  channel: (samples, 1) is squeezed to mono, (1, samples) is a batch of one (the same thing).
  Refusing is deliberate: a (4, 48000) array may be four clips or four channels, and guessing wrong is silent;
* a clip shorter than the model's front-end window (`min_samples`, set per model when it is saved) is an
  error naming the minimum, instead of a shape error deep inside a convolution.

These are the only input checks: the CNN's and S4's `forward` repeat none of them (they stay plain tensor
code that `torch.export` and the ONNX exporter trace), so a clip that bypasses this class and is shorter than
the model's window gets NaN logits, not an error.

This module imports only numpy and transformers: it is copied next to every saved model (auto_map entry for
`AutoFeatureExtractor`) and must import on a machine where this project is not installed.
"""

from __future__ import annotations

import numpy as np
from transformers import Wav2Vec2FeatureExtractor

# Audio with more channels than this is not something the corpora or microphones produce; a 2-D array with a
# larger short axis is read as a batch, as the base class does.
MAX_CHANNELS = 8


class SERFeatureExtractor(Wav2Vec2FeatureExtractor):
    r"""Wav2Vec2FeatureExtractor with checks for empty, multi-channel, too short or wrongly sampled audio.

    Args:
        feature_size (`int`, defaults to 1): one value per time step (mono waveform).
        sampling_rate (`int`, defaults to 16000): the rate every model of the project expects.
        padding_value (`float`, defaults to 0.0): value written into padded samples.
        do_normalize (`bool`, defaults to `True`): zero-mean, unit-variance per clip, over its real samples.
        return_attention_mask (`bool`, defaults to `True`): return the mask of real samples. All three models
            use it for masked pooling (see `modeling.wav2vec2` for what it does and does not guarantee for
            wav2vec2 checkpoints with `feat_extract_norm="group"`).
        min_samples (`int`, defaults to 0): shortest clip the model accepts; shorter clips are an error.
    """

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        do_normalize: bool = True,
        min_samples: int = 0,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            do_normalize=do_normalize,
            **kwargs,
        )
        self.min_samples = int(min_samples)

    def __call__(self, raw_speech, *args, sampling_rate: int | None = None, **kwargs):
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise ValueError(
                f"sampling_rate: the audio is sampled at {sampling_rate} Hz but the model expects "
                f"{self.sampling_rate} Hz. Resample it to {self.sampling_rate // 1000} kHz first (e.g. "
                f"torchaudio.functional.resample(audio, {sampling_rate}, {self.sampling_rate}) or soxr), "
                "or give "
                'the audio-classification pipeline {"array": audio, "sampling_rate": '
                f"{sampling_rate}}} and it resamples for you."
            )
        clips = [self._check_clip(clip, index) for index, clip in enumerate(self._split_clips(raw_speech))]
        return super().__call__(clips, *args, sampling_rate=sampling_rate, **kwargs)

    def _split_clips(self, raw_speech) -> list:
        """One entry per clip, whatever the container (array, tensor, list of floats, list of clips)."""
        if hasattr(raw_speech, "detach") and hasattr(
            raw_speech, "numpy"
        ):  # a torch tensor, without importing torch
            raw_speech = raw_speech.detach().cpu().numpy()
        if isinstance(raw_speech, np.ndarray):
            if raw_speech.ndim == 1:
                return [raw_speech]
            if raw_speech.ndim == 2:
                return self._split_2d(raw_speech, "raw_speech")
            raise ValueError(
                f"raw_speech: got a {raw_speech.ndim}-D array of shape {raw_speech.shape}; "
                "give one mono clip "
                "(1-D array) or a list of them."
            )
        if isinstance(raw_speech, (list, tuple)):
            if len(raw_speech) == 0:
                raise ValueError(
                    "raw_speech: got an empty list; give at least one clip (a 1-D array of samples)."
                )
            first = raw_speech[0]
            if isinstance(first, (np.ndarray, list, tuple)) or hasattr(first, "numpy"):
                return list(raw_speech)
            return [np.asarray(raw_speech, dtype=np.float32)]
        raise TypeError(
            f"raw_speech: expected a 1-D numpy array (or a list of them), got {type(raw_speech).__name__}."
        )

    @staticmethod
    def _split_2d(array: np.ndarray, name: str) -> list[np.ndarray]:
        rows, cols = array.shape
        if cols == 1 and rows > 1:  # (samples, 1): one channel in soundfile's layout
            return [array[:, 0]]
        short, long_ = min(rows, cols), max(rows, cols)
        if 2 <= short <= MAX_CHANNELS and long_ > MAX_CHANNELS:
            channel_axis = 0 if rows == short else 1
            raise ValueError(
                f"{name}: got a 2-D array of shape {array.shape}, which looks like {short}-channel audio "
                f"(channels on axis {channel_axis}). The models take mono audio: downmix it first "
                f"(audio.mean(axis={channel_axis})). To pass a batch of clips, pass a list of 1-D arrays."
            )
        return list(array)

    def _check_clip(self, clip, index: int) -> np.ndarray:
        if hasattr(clip, "detach") and hasattr(clip, "numpy"):
            clip = clip.detach().cpu().numpy()
        clip = np.asarray(clip)
        if clip.ndim == 2:
            parts = self._split_2d(clip, f"clip {index}")
            if len(parts) != 1:
                raise ValueError(
                    f"clip {index}: got a 2-D array of shape {clip.shape}; give a 1-D mono array."
                )
            clip = parts[0]
        if clip.ndim != 1:
            raise ValueError(f"clip {index}: got an array of shape {clip.shape}; give a 1-D mono array.")
        if clip.size == 0:
            raise ValueError(
                f"clip {index}: the audio is empty (0 samples); drop it or check how it was decoded."
            )
        if not np.issubdtype(clip.dtype, np.floating):
            raise ValueError(
                f"clip {index}: samples are {clip.dtype}; give floats in [-1, 1] (e.g. int16 PCM / 32768)."
            )
        if not np.isfinite(clip).all():
            raise ValueError(f"clip {index}: the audio contains NaN or infinite samples.")
        if clip.size < self.min_samples:
            raise ValueError(
                f"clip {index}: {clip.size} samples ({1000 * clip.size / self.sampling_rate:.1f} ms) "
                "is shorter "
                f"than this model's minimum of {self.min_samples} samples "
                f"({1000 * self.min_samples / self.sampling_rate:.1f} ms at {self.sampling_rate} Hz); "
                "pad it or leave it out."
            )
        return clip


SERFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
