"""loaders.audio: the one reader of audio (files, bytes, file objects), its errors, and WAV encoding."""

from __future__ import annotations

import io
import pickle
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from inference.audio_io import AudioReadError, AudioSource
from loaders import audio
from loaders.audio import BrokenAudioError, decode_clip, encode_wav, read_audio, read_info
from loaders.schema import SAMPLING_RATE


def tone(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    mono = 0.4 * np.sin(2 * np.pi * 220.0 * t) + 0.05 * rng.standard_normal(t.size)
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (0.5 + c / channels) for c in range(channels)], axis=1).astype(np.float32)


def write(path, samples, rate, subtype="PCM_16") -> str:
    sf.write(path, samples, rate, subtype=subtype)
    return str(path)


# -- what is read -------------------------------------------------------------------------------------


def test_path_bytes_and_file_object_give_the_same_samples(tmp_path):
    path = write(tmp_path / "a.wav", tone(0.5, 44100, channels=2), 44100)
    from_path = read_audio(path)
    from_bytes = read_audio(open(path, "rb").read())
    with open(path, "rb") as handle:
        from_file = read_audio(handle)
    assert from_path.dtype == np.float32 and from_path.ndim == 1 and from_path.flags["C_CONTIGUOUS"]
    assert abs(len(from_path) - 8000) <= 1
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_array_equal(from_path, from_file)


def test_int16_is_scaled_by_1_over_32768_and_channels_are_averaged(tmp_path):
    ints = np.array([[-32768, 32767], [0, 2], [100, -100], [16384, 16384]], dtype=np.int16)
    path = write(tmp_path / "ints.wav", ints, SAMPLING_RATE)
    samples = read_audio(path)
    expected = ints.astype(np.float64).mean(axis=1) / 32768
    np.testing.assert_array_equal(samples, expected.astype(np.float32))


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT", "DOUBLE"])
def test_every_sample_format_reads_as_its_values(tmp_path, subtype):
    clip = tone(0.25, SAMPLING_RATE)
    path = write(tmp_path / f"{subtype}.wav", clip, SAMPLING_RATE, subtype=subtype)
    samples = read_audio(path)
    tolerance = {"PCM_16": 1 / 32768, "PCM_24": 1 / 2**23}.get(subtype, 0)
    np.testing.assert_allclose(samples, clip, atol=tolerance)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled_with_soxr_hq(tmp_path, rate):
    clip = tone(0.5, rate, channels=2)
    path = write(tmp_path / f"{rate}.wav", clip, rate, subtype="FLOAT")
    samples = read_audio(path)
    expected = soxr.resample(clip.mean(axis=1), rate, SAMPLING_RATE, quality="HQ")
    np.testing.assert_allclose(samples, expected, atol=1e-6)
    native = read_audio(path, None)
    np.testing.assert_allclose(native, clip.mean(axis=1), atol=1e-7)
    decoded, native_rate = audio.decode_audio(path)
    assert native_rate == rate and np.array_equal(decoded, native)


def test_the_block_reader_reads_what_read_audio_reads(tmp_path):
    """Prediction (AudioSource) and training / preparation (read_audio) see the same samples."""
    path = write(tmp_path / "a.wav", tone(1.3, 22050, channels=2), 22050)
    with AudioSource(path, SAMPLING_RATE) as source:
        whole = source.read_all()
        blocks = np.concatenate(list(source.blocks(0.25)))
    clip = read_audio(path)
    np.testing.assert_array_equal(whole, clip)
    np.testing.assert_allclose(blocks[: len(clip)], clip[: len(blocks)], atol=1e-4)


def test_decode_clip_reads_a_datasets_audio_value(tmp_path):
    path = write(tmp_path / "a.wav", tone(0.2, 48000), 48000)
    expected = read_audio(path)
    np.testing.assert_array_equal(decode_clip({"bytes": open(path, "rb").read(), "path": "a.wav"}), expected)
    np.testing.assert_array_equal(decode_clip({"bytes": None, "path": path}), expected)
    np.testing.assert_array_equal(
        decode_clip({"bytes": open(path, "rb").read()}, 8000), read_audio(path, 8000)
    )
    with pytest.raises(ValueError, match="neither bytes nor a path"):
        decode_clip({"bytes": None, "path": None})


# -- what is refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_samples_are_refused_naming_the_source(tmp_path, bad, kind):
    clip = tone(0.5, SAMPLING_RATE)
    clip[4000] = bad
    path = write(tmp_path / "bad.wav", clip, SAMPLING_RATE, subtype="FLOAT")
    with pytest.raises(BrokenAudioError) as error:
        read_audio(path)
    message = str(error.value)
    assert message.startswith(f"{path}: holds 1 non-finite ({kind}) samples of 8000, the first at 0.250 s; ")
    assert "--lenient" in message and "\n" not in message
    assert isinstance(error.value, ValueError) and isinstance(error.value, RuntimeError)
    # Bytes are named by what the caller calls them (a datasets row: its `path`).
    with pytest.raises(BrokenAudioError, match=r"^wav/bad.wav: holds 1 non-finite"):
        decode_clip({"bytes": open(path, "rb").read(), "path": "wav/bad.wav"})
    with pytest.raises(BrokenAudioError, match=r"^<\d+ bytes of audio>: holds 1 non-finite"):
        read_audio(open(path, "rb").read())
    # Prediction's reader refuses it too, with its own error class and advice.
    with AudioSource(path, SAMPLING_RATE) as source:
        with pytest.raises(
            AudioReadError,
            match=rf"^{path}: holds non-finite \({kind}\) samples, the first at 0.250 s; re-export",
        ):
            source.read_all()


@pytest.mark.parametrize(
    "content, reason",
    [(None, "no such file"), (b"", "the file is empty"), (b"not audio at all" * 40, "cannot decode audio")],
)
def test_unreadable_files_are_one_line_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "broken.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BrokenAudioError) as error:
        read_audio(path)
    assert str(error.value).startswith(f"{path}: {reason}") and "\n" not in str(error.value)
    if content:
        # Both decoders were tried, and both say why they refused.
        assert "soundfile:" in str(error.value) and "FFmpeg:" in str(error.value)
        with pytest.raises(BrokenAudioError, match=r"cannot read audio header \(soundfile: .*FFmpeg: "):
            read_info(path)
    with pytest.raises(BrokenAudioError, match="empty"):
        read_audio(b"")


def test_an_error_keeps_its_source_and_reason_through_advice_and_pickling():
    error = BrokenAudioError.about("x.wav", "holds 1 non-finite (NaN) samples of 2")
    advised = error.advise("leave it out", AudioReadError)
    assert (
        type(advised) is AudioReadError
        and str(advised) == "x.wav: holds 1 non-finite (NaN) samples of 2; leave it out"
    )
    # Worker processes send errors back pickled.
    back = pickle.loads(pickle.dumps(error))
    assert str(back) == str(error) and back.source == "x.wav" and back.reason == error.reason
    plain = BrokenAudioError("x.wav: something")
    assert str(plain.advise("ignored")) == "x.wav: something"


# -- WAV encoding ------------------------------------------------------------------------------------


def test_encode_wav_round_trips_pcm16_values_exactly():
    ints = np.concatenate([np.arange(-32768, 32768, 7), [32767, -32768, 0]]).astype(np.int16)
    samples = ints.astype(np.float32) / 32768
    wav = encode_wav(samples, 16000)
    back, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == 16000 and np.array_equal(back, ints)
    np.testing.assert_array_equal(read_audio(wav), samples)


def test_encode_wav_clips_overshoot_instead_of_wrapping():
    back, _ = sf.read(io.BytesIO(encode_wav(np.array([1.2, -1.7, 0.99999, -1.0]), 8000)), dtype="int16")
    assert back.tolist() == [32767, -32768, 32767, -32768]


def test_encode_wav_writes_the_plain_44_byte_header():
    """Nothing but RIFF / fmt / data: the prepared caches hold the same bytes as before soundfile wrote them
    (the cache folder is keyed by the corpus files, not by this code, so a changed encoding would mix)."""
    wav = encode_wav(np.zeros(10, np.float32), 22050)
    expected = (
        struct.pack("<4sI4s", b"RIFF", 36 + 20, b"WAVE")
        + struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 22050, 44100, 2, 16)
        + struct.pack("<4sI", b"data", 20)
    )
    assert wav == expected + bytes(20)


def test_encode_wav_extra_chunk_is_skipped_by_readers():
    samples = tone(0.1, 48000)
    wav = encode_wav(samples, 48000, extra_chunk=b"FLLR")
    assert wav[36:40] == b"FLLR" and wav[72:76] == b"data"
    assert struct.unpack("<I", wav[4:8])[0] == len(wav) - 8
    np.testing.assert_array_equal(read_audio(wav, None), read_audio(encode_wav(samples, 48000), None))


# -- compressed formats ------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed")
def test_a_format_soundfile_cannot_read_goes_through_ffmpeg(tmp_path):
    wav = write(tmp_path / "clip.wav", tone(1.0, 44100, channels=2), 44100)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", wav, "-c:a", "aac", str(m4a)], check=True)
    with pytest.raises(sf.LibsndfileError):
        sf.info(m4a)  # the fallback, not soundfile, is what reads it
    info = read_info(m4a)
    assert info.backend == "torchcodec" and info.sampling_rate == 44100 and abs(info.duration - 1.0) < 0.1
    samples = read_audio(m4a)
    assert samples.dtype == np.float32 and abs(len(samples) - SAMPLING_RATE) < 0.1 * SAMPLING_RATE
    assert np.isfinite(samples).all() and 0.1 < np.sqrt(np.mean(samples**2)) < 1.0
    np.testing.assert_array_equal(read_audio(m4a.read_bytes()), samples)
