"""Reading audio of any length, rate and channel count as 16 kHz-style mono float32, in bounded memory.

soundfile (libsndfile: WAV, FLAC, OGG, MP3, AIFF, ...) is tried first because it can seek and read a
given number of frames; anything it cannot open (M4A/AAC, Opus in WebM, video containers, ...) goes
through torchcodec (FFmpeg), which decodes time ranges. Either way a caller only ever holds one block
or one segment: nothing here loads a whole long recording unless asked to with :func:`read_audio`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

# Extensions looked at when a folder is walked; anything else is reported as skipped, not decoded.
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
        ".caf", ".w64", ".rf64", ".m4a", ".aac", ".mp4", ".webm", ".wma", ".mka", ".mkv", ".amr",
    }
)  # fmt: skip


class AudioReadError(RuntimeError):
    """A file that no decoder could read, that holds no samples, or NaN/Inf. The message names the file."""


def _check_finite(samples: np.ndarray, path: str, start_seconds: float, rate: int) -> np.ndarray:
    """``samples`` unchanged, or AudioReadError when any is NaN or infinite.

    A float WAV can hold NaN/Inf (written from a failed computation); passed on, they turn every
    probability into NaN, so such a file counts as undecodable, like one no decoder can read.
    """
    finite = np.isfinite(samples)
    if not finite.all():
        at = start_seconds + int(np.argmin(finite)) / rate
        raise AudioReadError(
            f"{path}: undecodable: holds non-finite samples (NaN or Inf, the first at {at:.3f} s); "
            "re-export the audio or remove the file from the input"
        )
    return samples


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sampling_rate: int  # the file's native rate
    channels: int
    num_frames: int  # at the native rate
    backend: str  # "soundfile" or "torchcodec"

    @property
    def duration(self) -> float:
        return self.num_frames / self.sampling_rate


def _downmix(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32, the plain channel average."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].astype(np.float32)


def _first_line(error: Exception) -> str:
    """An FFmpeg error without torchcodec's C++ source location prefix."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return re.sub(r"^\w+, \S+:\d+, ", "", text)


def _torchcodec_decoder(path: str, sampling_rate: int | None = None):
    from torchcodec.decoders import AudioDecoder

    return AudioDecoder(path, sample_rate=sampling_rate, num_channels=1)


class AudioSource:
    """One audio file opened for block-wise / range-wise reading, delivered mono at ``target_rate``.

    Use as a context manager. ``info`` describes the native file; every read returns float32 mono
    samples at ``target_rate`` (soxr resampling for soundfile, FFmpeg's for torchcodec).
    """

    def __init__(self, path: str | os.PathLike, target_rate: int):
        self.path = os.fspath(path)
        self.target_rate = int(target_rate)
        self._file: sf.SoundFile | None = None
        self._decoder = None
        if not os.path.isfile(self.path):
            raise AudioReadError(f"{self.path}: no such file")
        if os.path.getsize(self.path) == 0:
            raise AudioReadError(f"{self.path}: the file is empty (0 bytes)")
        try:
            self._file = sf.SoundFile(self.path)
            self.info = AudioInfo(
                self.path, self._file.samplerate, self._file.channels, self._file.frames, "soundfile"
            )
        except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
            try:
                self._decoder = _torchcodec_decoder(self.path, self.target_rate)
                meta = self._decoder.metadata
                native = _torchcodec_decoder(self.path).metadata
                rate = int(native.sample_rate or self.target_rate)
                duration = meta.duration_seconds_from_header or meta.duration_seconds or 0.0
                self.info = AudioInfo(
                    self.path, rate, int(native.num_channels or 1), round(duration * rate), "torchcodec"
                )
            except Exception as tc_error:  # torchcodec raises several types for non-media input
                raise AudioReadError(
                    f"{self.path}: not a readable audio file (soundfile: {sf_error}; FFmpeg: "
                    f"{_first_line(tc_error)}). Convert it to WAV/FLAC or remove it from the input."
                ) from tc_error
        if self.info.num_frames <= 0 and self._decoder is None:
            self.close()
            raise AudioReadError(f"{self.path}: the file holds no audio samples")

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def duration(self) -> float:
        return self.info.duration

    # -- native-rate blocks (for voice-activity detection: no resampling needed) ----------------
    def native_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Mono float32 blocks at the native rate, ``block_frames`` long (the last may be shorter)."""
        if self._file is not None:
            self._file.seek(0)
            position = 0
            while True:
                block = self._file.read(block_frames, dtype="float32", always_2d=True)
                if len(block) == 0:
                    return
                rate = self.info.sampling_rate
                yield _check_finite(_downmix(block), self.path, position / rate, rate)
                position += len(block)
        else:
            # torchcodec path: decode time ranges, already at target rate (the "native" rate here).
            yield from self.blocks(block_frames / self.info.sampling_rate)

    @property
    def native_block_rate(self) -> int:
        """Rate of the samples from :meth:`native_blocks`."""
        return self.info.sampling_rate if self._file is not None else self.target_rate

    # -- target-rate reads -----------------------------------------------------------------------
    def blocks(self, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
        """The whole file as consecutive mono blocks at ``target_rate``, about ``block_seconds`` each."""
        if self._file is not None:
            rate = self.info.sampling_rate
            block_frames = max(1, round(block_seconds * rate))
            resampler = (
                None
                if rate == self.target_rate
                else soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32")
            )
            self._file.seek(0)
            position = 0
            while True:
                block = self._file.read(block_frames, dtype="float32", always_2d=True)
                last = len(block) < block_frames
                mono = _check_finite(_downmix(block), self.path, position / rate, rate)
                position += len(block)
                if resampler is not None:
                    mono = resampler.resample_chunk(mono, last=last)
                if len(mono):
                    yield mono
                if last:
                    return
        else:
            start = 0.0
            while True:
                stop = start + block_seconds
                samples = self._decode_range(start, stop)
                if len(samples):
                    yield samples
                if len(samples) < round(block_seconds * self.target_rate) * 0.99:
                    return
                start = stop

    def read(self, start: float, end: float) -> np.ndarray:
        """Mono samples at ``target_rate`` between ``start`` and ``end`` seconds."""
        if self._file is not None:
            rate = self.info.sampling_rate
            first = max(0, int(round(start * rate)))
            count = max(0, int(round(end * rate)) - first)
            self._file.seek(min(first, self.info.num_frames))
            mono = _downmix(self._file.read(count, dtype="float32", always_2d=True))
            _check_finite(mono, self.path, first / rate, rate)
            if rate != self.target_rate and len(mono):
                mono = soxr.resample(mono, rate, self.target_rate).astype(np.float32, copy=False)
            return mono
        return self._decode_range(start, end)

    def _decode_range(self, start: float, stop: float) -> np.ndarray:
        try:
            samples = self._decoder.get_samples_played_in_range(start_seconds=start, stop_seconds=stop)
        except (RuntimeError, ValueError):  # past the end of the stream
            return np.zeros(0, dtype=np.float32)
        mono = samples.data.mean(dim=0).numpy().astype(np.float32, copy=False)
        return _check_finite(mono, self.path, start, self.target_rate)


def read_audio(path: str | os.PathLike, target_rate: int) -> np.ndarray:
    """The whole file, mono float32 at ``target_rate``. For clips; long recordings go through blocks."""
    with AudioSource(path, target_rate) as source:
        if source._file is not None:
            return source.read(0.0, source.duration)
        mono = source._decoder.get_all_samples().data.mean(dim=0).numpy().astype(np.float32, copy=False)
        return _check_finite(mono, source.path, 0.0, target_rate)
