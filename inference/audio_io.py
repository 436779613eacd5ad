"""Reading audio for prediction: `loaders.audio`'s reader with prediction's errors and advice.

Decoding, downmixing and resampling are `loaders.audio`'s (soundfile, else FFmpeg via torchcodec): the
files a model is trained on and the files it is asked about are read the same way. What is added here is
how a failure is reported: as `AudioReadError`, advising to fix or leave out the file, since a prediction
run goes on with the other files.
"""

from __future__ import annotations

import os

import numpy as np

from loaders.audio import AUDIO_EXTENSIONS, AudioInfo, AudioReader, BrokenAudioError

INPUT_ADVICE = "re-export or convert it (e.g. to WAV or FLAC), or remove it from the input"


class AudioReadError(BrokenAudioError):
    """A file that no decoder could read, that holds no samples, or NaN/Inf. The message names the file."""


class AudioSource(AudioReader):
    """One audio file opened for block-wise / range-wise reading, delivered mono at ``target_rate``
    (see `loaders.audio.AudioReader`); errors are `AudioReadError`."""

    error_class = AudioReadError
    advice = INPUT_ADVICE


def read_audio(path: str | os.PathLike, target_rate: int) -> np.ndarray:
    """The whole file, mono float32 at ``target_rate``. For clips; long recordings go through blocks."""
    with AudioSource(path, target_rate) as source:
        return source.read_all()


__all__ = ["AUDIO_EXTENSIONS", "AudioInfo", "AudioReadError", "AudioSource", "read_audio"]
