"""The one way audio is read: any file or bytes to mono float32 at a rate, and WAV bytes back.

Every reader of the project goes through here: corpus preparation (`loaders.builder`), training's decoding
of the prepared cache (`decode_clip`), prediction, streaming and the demo (`AudioReader`, wrapped by
`inference.audio_io.AudioSource`), the original project's API (`loaders.legacy`) and the openSMILE baseline.

soundfile (libsndfile: WAV, FLAC, OGG, MP3, AIFF, ...) is tried first: it is fast and can seek. Anything it
cannot open (M4A/AAC, Opus in WebM, video containers, ...) goes through torchcodec (FFmpeg). Channels are
averaged to mono; a rate change is soxr's high-quality (HQ) resampler. NaN / Inf samples (only float files
can hold them) make a file undecodable: passed on they become silence in a prepared cache or NaN
probabilities in a prediction, with no sign but a RuntimeWarning naming no file.

Errors are `BrokenAudioError`, one line naming the file. The advice at its end is the corpus preparer's by
default; other callers put their own with `BrokenAudioError.advise` or `AudioReader.advice`.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import numpy as np
import soundfile as sf
import soxr

from .schema import SAMPLING_RATE

AudioInput = str | os.PathLike | bytes | BinaryIO

# Extensions looked at when a folder is walked for prediction; anything else is reported as skipped.
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
        ".caf", ".w64", ".rf64", ".m4a", ".aac", ".mp4", ".webm", ".wma", ".mka", ".mkv", ".amr",
    }
)  # fmt: skip

# libsndfile subtypes that store floats: the only ones that can hold NaN or Inf.
FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})

LENIENT_ADVICE = "re-download the file, or pass --lenient (lenient=True) to skip and report it"

# What soundfile raises for input it cannot read (TypeError: a file object it cannot use).
_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, ValueError, EOFError, TypeError)


class BrokenAudioError(ValueError, RuntimeError):
    """Audio that cannot be decoded (missing, empty, unreadable, or holding NaN / Inf samples).

    A ValueError (bad input, which callers such as run_train.py report in one line) and, as before, a
    RuntimeError. `source` and `reason` are kept apart from the advice, so that a caller can give its own
    (`advise`); they are None for an error made from a message only."""

    def __init__(self, message: str, *, source: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.source = source
        self.reason = reason

    @classmethod
    def about(cls, source: str, reason: str, advice: str = LENIENT_ADVICE) -> BrokenAudioError:
        return cls(f"{source}: {reason}; {advice}", source=source, reason=reason)

    def advise(self, advice: str, cls: type[BrokenAudioError] | None = None) -> BrokenAudioError:
        """The same error with `advice` at its end (as a `cls`, by default its own class)."""
        cls = cls or type(self)
        if self.reason is None:
            return cls(str(self))
        return cls.about(self.source, self.reason, advice)


def broken_audio_message(path: str | os.PathLike, why: str, advice: str = LENIENT_ADVICE) -> str:
    return f"{os.fspath(path)}: {why}; {advice}"


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, at its native rate."""

    path: str
    sampling_rate: int
    channels: int
    num_frames: int
    backend: str  # "soundfile" or "torchcodec"
    subtype: str = ""  # libsndfile's (PCM_16, FLOAT, ...); "" for torchcodec

    @property
    def duration(self) -> float:
        return self.num_frames / self.sampling_rate


# -- small pieces ------------------------------------------------------------------------------------


def source_name(source: AudioInput) -> str:
    """How an error names `source`: its path, or what stands for bytes / a file object."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of audio>"
    return str(getattr(source, "name", "<audio file object>"))


def _one_line(err: BaseException) -> str:
    text = re.sub(r"\s*\n\s*", " ", str(err)).strip()
    return text or type(err).__name__


def _ffmpeg_line(err: BaseException) -> str:
    """An FFmpeg error without torchcodec's C++ source location prefix."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^\w+, \S+:\d+, ", "", text)


def _check_present(source: AudioInput, name: str) -> None:
    """A missing or empty source gets its own reason, not a decoder's message about it."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise BrokenAudioError.about(name, "no such file")
        if os.path.getsize(source) == 0:
            raise BrokenAudioError.about(name, "the file is empty (0 bytes)")
    elif isinstance(source, (bytes, bytearray, memoryview)) and len(source) == 0:
        raise BrokenAudioError.about(name, "the audio is empty (0 bytes)")


def _soundfile_input(source: AudioInput):
    return io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source


def _torchcodec_input(source: AudioInput):
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    source.seek(0)  # soundfile has read from it already
    return source.read()


def _torchcodec_decoder(source: AudioInput, sampling_rate: int | None = None):
    # Imported here: torch + torchcodec take seconds, and only files soundfile cannot read need them.
    from torchcodec.decoders import AudioDecoder

    # FFmpeg's downmix of stereo to mono is the channel average, as soundfile's path does.
    return AudioDecoder(_torchcodec_input(source), sample_rate=sampling_rate, num_channels=1)


def _downmix(block: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) float32, the plain channel average; int16 scaled by 1/32768."""
    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].astype(np.float32)
    if block.dtype == np.int16:
        mono *= 1.0 / 32768.0
    return mono


def _read_frames(audio_file: sf.SoundFile, frames: int = -1) -> np.ndarray:
    """Up to `frames` frames from the current position, mono float32."""
    # 16-bit files (all six corpora) are read as integers and scaled in `_downmix`: libsndfile's own float
    # conversion is twice as slow. Both scale by 1/32768, so the samples are the same.
    dtype = "int16" if audio_file.subtype == "PCM_16" else "float32"
    return _downmix(audio_file.read(frames, dtype=dtype, always_2d=True))


def _unreadable(what: str, sf_error: BaseException, tc_error: BaseException) -> str:
    return f"{what} (soundfile: {_one_line(sf_error)}; FFmpeg: {_ffmpeg_line(tc_error)})"


def non_finite_reason(
    samples: np.ndarray, rate: int | None = None, offset: int = 0, whole: bool = True
) -> str | None:
    """Why `samples` cannot be used (NaN / Inf, how many, where the first is), or None if all are finite.

    `offset` is the frame of `samples[0]` in the file; `whole` False (a block of a longer read) leaves out
    the counts, which would be the block's only."""
    finite = np.isfinite(samples)
    if finite.all():
        return None
    kinds = "/".join(k for k, f in (("NaN", np.isnan), ("Inf", np.isinf)) if f(samples).any())
    if whole:
        bad = finite.size - np.count_nonzero(finite)
        reason = f"holds {bad} non-finite ({kinds}) samples of {samples.size}"
    else:
        reason = f"holds non-finite ({kinds}) samples"
    if rate:
        reason += f", the first at {(offset + int(np.argmin(finite))) / rate:.3f} s"
    return reason


def check_finite(source: AudioInput, samples: np.ndarray, rate: int | None = None) -> np.ndarray:
    """`samples` unchanged, or `BrokenAudioError` naming `source` if any is NaN or Inf."""
    reason = non_finite_reason(samples, rate)
    if reason:
        raise BrokenAudioError.about(source_name(source), reason)
    return samples


# -- whole clips -------------------------------------------------------------------------------------


def read_info(source: AudioInput, *, name: str | None = None) -> AudioInfo:
    """The header of `source` (nothing decoded); `BrokenAudioError` if no decoder can read it."""
    name = name or source_name(source)
    _check_present(source, name)
    try:
        info = sf.info(_soundfile_input(source))
        return AudioInfo(name, info.samplerate, info.channels, info.frames, "soundfile", info.subtype)
    except _SOUNDFILE_ERRORS as sf_error:
        try:
            metadata = _torchcodec_decoder(source).metadata
            rate = int(metadata.sample_rate)
            seconds = metadata.duration_seconds_from_header or metadata.duration_seconds or 0.0
            return AudioInfo(name, rate, int(metadata.num_channels or 1), round(seconds * rate), "torchcodec")
        except Exception as tc_error:  # torchcodec raises several types for non-media input
            raise BrokenAudioError.about(
                name, _unreadable("cannot read audio header", sf_error, tc_error)
            ) from tc_error


def check_file(path: str | os.PathLike) -> AudioInfo:
    """The header of `path`, after checking the file can be used: `BrokenAudioError` if it cannot be read,
    or if it is a float file (the only kind that can) holding NaN / Inf (decoded for that, only then)."""
    info = read_info(path)
    if info.subtype in FLOAT_SUBTYPES:
        decode_audio(path)
    return info


def decode_audio(source: AudioInput, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Samples (mono float32, channels averaged) and rate of `source`, at its native rate."""
    name = name or source_name(source)
    _check_present(source, name)
    try:
        with sf.SoundFile(_soundfile_input(source)) as audio_file:
            rate = audio_file.samplerate
            samples = _read_frames(audio_file)
    except _SOUNDFILE_ERRORS as sf_error:
        try:
            decoded = _torchcodec_decoder(source).get_all_samples()
        except Exception as tc_error:  # torchcodec raises several types for non-media input
            reason = _unreadable("cannot decode audio", sf_error, tc_error)
            raise BrokenAudioError.about(name, reason) from tc_error
        samples = decoded.data.mean(dim=0).numpy().astype(np.float32, copy=False)
        rate = int(decoded.sample_rate)
    reason = non_finite_reason(samples, rate)
    if reason:
        raise BrokenAudioError.about(name, reason)
    return samples, rate


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """soxr's high-quality (HQ) resampler; returns `samples` itself when the rate already matches."""
    if rate == target_rate or len(samples) == 0:
        return samples
    return soxr.resample(samples, rate, target_rate, quality="HQ")


def read_audio(
    source: AudioInput, sampling_rate: int | None = SAMPLING_RATE, *, name: str | None = None
) -> np.ndarray:
    """`source` (a path, bytes or a binary file object) as mono float32 at `sampling_rate` (None: its own).

    For clips: the whole file is decoded at once. Long recordings are read block by block with
    `AudioReader`. `name` is how errors call the source (default: its path)."""
    samples, rate = decode_audio(source, name=name)
    if sampling_rate is not None:
        samples = resample(samples, rate, sampling_rate)
    return np.ascontiguousarray(samples, dtype=np.float32)


def decode_clip(audio: dict, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """Samples of one undecoded `datasets.Audio` value (``{"bytes", "path"}``) as mono float32 at
    `sampling_rate`: the bytes if it holds them, else the file at its path."""
    data, path = audio.get("bytes"), audio.get("path")
    if data:
        return read_audio(data, sampling_rate, name=path or None)
    if path is None:
        raise ValueError("audio value holds neither bytes nor a path")
    return read_audio(path, sampling_rate)


def encode_wav(samples: np.ndarray, rate: int, extra_chunk: bytes | None = None) -> bytes:
    """Mono 16-bit PCM WAV bytes of float samples in [-1, 1].

    The samples are rounded to 16 bits here, not by libsndfile: values beyond full scale (resampling
    overshoot) are clipped, never wrapped, and the stored integers are exactly round(x * 32768), so a
    decoded value x = n / 32768 comes back as itself. `extra_chunk` (a 4-byte id) inserts a 28-byte padding
    chunk before `data`, as RAVDESS files have (used by the fixtures)."""
    # float32 is exact here: scaling by 32768 only changes the exponent (float64 would be ten times slower).
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float32) * 32768.0), -32768, 32767).astype(np.int16)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="WAV", subtype="PCM_16")
    wav = buffer.getvalue()
    if not extra_chunk:
        return wav
    data_at = wav.index(b"data", 12)
    body = wav[8:data_at] + struct.pack("<4sI", extra_chunk, 28) + bytes(28) + wav[data_at:]
    return struct.pack("<4sI", b"RIFF", len(body)) + body


# -- long recordings, block by block -----------------------------------------------------------------


class AudioReader:
    """One audio file opened for block-wise / range-wise reading, delivered mono at `target_rate`.

    Use as a context manager. `info` describes the native file; every read returns float32 mono samples at
    `target_rate` (soxr resampling for soundfile, FFmpeg's for torchcodec, which decodes time ranges).
    A caller only ever holds one block or one range: nothing loads a whole long recording.

    Errors are `error_class` with `advice` at their end; a subclass sets both for its own callers.
    """

    error_class: ClassVar[type[BrokenAudioError]] = BrokenAudioError
    advice: ClassVar[str] = LENIENT_ADVICE

    def __init__(self, path: str | os.PathLike, target_rate: int = SAMPLING_RATE):
        self.path = os.fspath(path)
        self.target_rate = int(target_rate)
        self._file: sf.SoundFile | None = None
        self._decoder = None
        try:
            _check_present(self.path, self.path)
        except BrokenAudioError as err:
            raise err.advise(self.advice, self.error_class) from None
        try:
            self._file = sf.SoundFile(self.path)
            file = self._file
            self.info = AudioInfo(
                self.path, file.samplerate, file.channels, file.frames, "soundfile", file.subtype
            )
        except _SOUNDFILE_ERRORS as sf_error:
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
                raise self._error(_unreadable("not a readable audio file", sf_error, tc_error)) from tc_error
        if self.info.num_frames <= 0 and self._decoder is None:
            self.close()
            raise self._error("the file holds no audio samples")

    def _error(self, reason: str) -> BrokenAudioError:
        return self.error_class.about(self.path, reason, self.advice)

    def _finite(self, samples: np.ndarray, rate: int, offset: int) -> np.ndarray:
        reason = non_finite_reason(samples, rate, offset, whole=False)
        if reason:
            raise self._error(reason)
        return samples

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self):
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
        """Mono float32 blocks at the native rate, `block_frames` long (the last may be shorter)."""
        if self._file is not None:
            self._file.seek(0)
            position = 0
            while True:
                block = _read_frames(self._file, block_frames)
                if len(block) == 0:
                    return
                yield self._finite(block, self.info.sampling_rate, position)
                position += len(block)
        else:
            # torchcodec path: decode time ranges, already at target rate (the "native" rate here).
            yield from self.blocks(block_frames / self.info.sampling_rate)

    @property
    def native_block_rate(self) -> int:
        """Rate of the samples from `native_blocks`."""
        return self.info.sampling_rate if self._file is not None else self.target_rate

    # -- target-rate reads -----------------------------------------------------------------------
    def blocks(self, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
        """The whole file as consecutive mono blocks at `target_rate`, about `block_seconds` each."""
        if self._file is not None:
            rate = self.info.sampling_rate
            block_frames = max(1, round(block_seconds * rate))
            resampler = (
                None
                if rate == self.target_rate
                else soxr.ResampleStream(rate, self.target_rate, 1, dtype="float32", quality="HQ")
            )
            self._file.seek(0)
            position = 0
            while True:
                mono = self._finite(_read_frames(self._file, block_frames), rate, position)
                last = len(mono) < block_frames
                position += len(mono)
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
        """Mono samples at `target_rate` between `start` and `end` seconds."""
        if self._file is not None:
            rate = self.info.sampling_rate
            first = max(0, int(round(start * rate)))
            count = max(0, int(round(end * rate)) - first)
            self._file.seek(min(first, self.info.num_frames))
            mono = self._finite(_read_frames(self._file, count), rate, first)
            return resample(mono, rate, self.target_rate).astype(np.float32, copy=False)
        return self._decode_range(start, end)

    def read_all(self) -> np.ndarray:
        """The whole file, mono at `target_rate`. For clips; long recordings go through `blocks`."""
        if self._file is not None:
            return self.read(0.0, self.duration)
        samples = self._decoder.get_all_samples().data.mean(dim=0).numpy().astype(np.float32, copy=False)
        return self._finite(samples, self.target_rate, 0)

    def _decode_range(self, start: float, stop: float) -> np.ndarray:
        try:
            samples = self._decoder.get_samples_played_in_range(start_seconds=start, stop_seconds=stop)
        except (RuntimeError, ValueError):  # past the end of the stream
            return np.zeros(0, dtype=np.float32)
        mono = samples.data.mean(dim=0).numpy().astype(np.float32, copy=False)
        return self._finite(mono, self.target_rate, round(start * self.target_rate))
