"""Prediction on files, folders and long recordings (inference.predict and the inference package)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
from conftest import TINY_CNN_LABELS as LABELS

from inference.audio_io import AudioReadError, AudioSource, read_audio
from inference.classify import (
    EmotionClassifier,
    FileResult,
    PredictOptions,
    SegmentPrediction,
    plan_segments,
    predict_files,
    top_labels,
)
from inference.inputs import collect_inputs
from inference.predict import main
from inference.segmentation import VadConfig, fixed_windows
from modeling import save_for_hub

BURSTS = [(5.0, 8.0), (20.0, 21.5), (40.0, 52.0), (90.0, 93.0), (140.0, 146.0)]  # seconds, in a 150 s file


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory, make_tiny_cnn):
    model = make_tiny_cnn()
    out = tmp_path_factory.mktemp("cnn")
    save_for_hub(model, None, out)
    return str(out)


@pytest.fixture(scope="module")
def classifier(cnn_dir):
    return EmotionClassifier.from_pretrained(cnn_dir)


def tone(seconds: float, rate: int, rng, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wobble = 1 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (level * np.sin(2 * np.pi * 220 * t) * wobble + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """150 s of stereo 22.05 kHz: quiet noise (-75 dBFS) with five loud bursts at BURSTS."""
    rate, rng = 22050, np.random.default_rng(0)
    signal = (rng.standard_normal(150 * rate) * 10 ** (-75 / 20)).astype(np.float32)
    for start, end in BURSTS:
        burst = tone(end - start, rate, rng)
        signal[round(start * rate) : round(start * rate) + burst.size] += burst
    path = tmp_path_factory.mktemp("long") / "meeting.wav"
    sf.write(path, np.stack([signal, 0.5 * signal], axis=1), rate)
    return str(path)


def write_clip(path, seconds=2.0, rate=16000, channels=1, seed=1):
    clip = tone(seconds, rate, np.random.default_rng(seed))
    sf.write(path, np.stack([clip] * channels, axis=1) if channels > 1 else clip, rate)
    return str(path)


# -- reading ----------------------------------------------------------------------------------------


def test_read_audio_downmixes_and_resamples(tmp_path):
    path = write_clip(tmp_path / "stereo.wav", seconds=1.5, rate=44100, channels=2)
    audio = read_audio(path, 16000)
    native, _ = sf.read(path, dtype="float32")
    expected = soxr.resample(native.mean(axis=1), 44100, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 24000) <= 1
    np.testing.assert_allclose(audio, expected[: len(audio)], atol=1e-5)


def test_blocks_resample_continuously(tmp_path):
    path = write_clip(tmp_path / "a.wav", seconds=3.0, rate=22050)
    with AudioSource(path, 16000) as source:
        streamed = np.concatenate(list(source.blocks(0.37)))
    whole = soxr.resample(sf.read(path, dtype="float32")[0], 22050, 16000)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-4)


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"hello, not audio" * 20, "not a readable")])
def test_unreadable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioReadError, match=message) as error:
        AudioSource(path, 16000)
    assert str(path) in str(error.value)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_formats_soundfile_cannot_read_go_through_ffmpeg(tmp_path, classifier):
    wav = write_clip(tmp_path / "clip.wav", seconds=2.0, rate=44100, channels=2)
    m4a = tmp_path / "clip.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", wav, "-c:a", "aac", str(m4a)], check=True)
    with AudioSource(m4a, 16000) as source:
        assert source.info.backend == "torchcodec"
    result = next(predict_files(classifier, [(str(m4a), None)]))
    assert result.status == "ok", result.error
    assert abs(result.duration - 2.0) < 0.1


# -- segmentation -----------------------------------------------------------------------------------


def test_vad_segments_match_the_bursts(long_file):
    options = PredictOptions(segment="vad", vad=VadConfig(max_segment=10.0))
    with AudioSource(long_file, 16000) as source:
        used, segments = plan_segments(source, options)
    assert used == "vad"
    assert all(s.duration <= 10.0 + 1e-6 for s in segments)
    # Merge the pieces of split regions back and compare with the bursts (padding is 0.1 s).
    regions = []
    for segment in segments:
        if regions and abs(segment.start - regions[-1][1]) < 1e-6:
            regions[-1][1] = segment.end
        else:
            regions.append([segment.start, segment.end])
    assert len(regions) == len(BURSTS)
    for (start, end), (burst_start, burst_end) in zip(regions, BURSTS, strict=True):
        assert abs(start - burst_start) < 0.2 and abs(end - burst_end) < 0.2
    # the 12 s burst was split into two pieces of at most 10 s
    assert sum(40.0 - 0.2 < s.start < 52.0 for s in segments) == 2


def test_fixed_windows_cover_the_recording():
    windows = fixed_windows(23.0, window=5.0, overlap=1.0)
    assert windows[0].start == 0.0 and windows[-1].end == 23.0
    assert all(w.duration <= 5.0 + 1e-9 for w in windows)
    assert all(b.start < a.end for a, b in zip(windows, windows[1:], strict=False))  # overlapping, no gaps
    assert fixed_windows(3.0, 5.0, 1.0)[0].end == 3.0
    with pytest.raises(ValueError, match="overlap"):
        fixed_windows(10.0, 5.0, 5.0)


def test_auto_falls_back_to_fixed_windows_without_pauses(tmp_path):
    rate, rng = 16000, np.random.default_rng(3)
    path = tmp_path / "hum.wav"
    sf.write(path, 0.2 * np.ones(25 * rate, dtype=np.float32) + 0.001 * rng.standard_normal(25 * rate), rate)
    with AudioSource(path, 16000) as source:
        used, segments = plan_segments(source, PredictOptions(segment="auto"))
    # a steady level is all "speech": one 25 s region, split to <= 10 s, or fixed windows
    assert used in ("vad", "fixed") and segments[0].start == 0.0 and segments[-1].end == pytest.approx(25.0)


def test_long_file_is_read_in_blocks(long_file, classifier, monkeypatch):
    """Memory bound: no read asks for more than one block (VAD pass) or one segment (classification)."""
    requested = []
    original = sf.SoundFile.read

    def recording_read(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", recording_read)
    options = PredictOptions(segment="vad", block_seconds=5.0, batch_size=2)
    result = next(predict_files(classifier, [(long_file, None)], options))
    assert result.status == "ok", result.error
    total = sf.info(long_file).frames
    assert -1 not in requested and len(requested) > 30
    assert max(requested) <= 10.0 * 22050 + 1  # the longest segment, never the file (150 s)
    assert max(requested) < total / 10


# -- classification -------------------------------------------------------------------------------


def test_timeline_and_duration_weighted_summary(long_file, classifier):
    result = next(predict_files(classifier, [(long_file, None)], PredictOptions(segment="vad", batch_size=3)))
    assert result.status == "ok" and result.segmentation == "vad"
    assert len(result.segments) == 6  # five bursts, the 12 s one in two pieces
    weights = np.array([s.end - s.start for s in result.segments])
    expected = (weights[:, None] * np.stack([s.probabilities for s in result.segments])).sum(
        0
    ) / weights.sum()
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-6)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    # each segment's probabilities are the model's on that stretch of audio
    first = result.segments[0]
    with AudioSource(long_file, 16000) as source:
        direct = classifier.probabilities([source.read(first.start, first.end)])[0]
    np.testing.assert_allclose(first.probabilities, direct, atol=1e-5)


def test_batch_size_does_not_change_results(tmp_path, classifier):
    paths = [write_clip(tmp_path / f"c{i}.wav", seconds=0.8 + 0.4 * i, seed=i) for i in range(5)]
    one = list(predict_files(classifier, [(p, None) for p in paths], PredictOptions(batch_size=1)))
    many = list(predict_files(classifier, [(p, None) for p in paths], PredictOptions(batch_size=4)))
    assert [r.path for r in one] == paths == [r.path for r in many]
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_one_ranking_for_top_k_and_best_emotion(classifier):
    """Ties rank by class id everywhere (the first, as argmax): the table, CSV, JSON and timeline agree."""
    labels = [f"e{i}" for i in range(40)]
    probabilities = np.full(40, 0.02)
    probabilities[[7, 30]] = 0.1
    expected = [("e7", 0.1), ("e30", 0.1), ("e0", 0.02), ("e1", 0.02)]
    assert top_labels(probabilities, labels, 4) == expected
    assert top_labels(probabilities, labels, 0) == expected[:1]  # at least one
    assert len(top_labels(probabilities, labels, 99)) == 40
    assert FileResult("x.wav", probabilities=probabilities).top_k(labels, 4) == expected
    assert FileResult("x.wav", status="failed").top_k(labels, 4) == []
    assert SegmentPrediction(0.0, 1.0, probabilities).emotion(labels) == expected[0]
    four = np.array([0.1, 0.4, 0.1, 0.4])
    assert classifier.top_k(four, 3) == [(classifier.labels[i], four[i]) for i in (1, 3, 0)]


def test_collect_inputs_walks_folders_and_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    a = write_clip(tmp_path / "a.wav")
    b = write_clip(tmp_path / "sub" / "b.flac")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    entries = dict(collect_inputs([str(tmp_path), a]))  # a twice: once only
    assert set(entries) == {a, b, str(tmp_path / "notes.txt")}
    assert (
        entries[a] is None
        and entries[b] is None
        and "not an audio file" in entries[str(tmp_path / "notes.txt")]
    )
    assert [p for p, _ in collect_inputs([str(tmp_path / "**" / "*.flac")])] == [b]
    assert collect_inputs([str(tmp_path / "missing-*.wav")]) == [(str(tmp_path / "missing-*.wav"), None)]


def test_cli_reports_bad_files_and_keeps_going(tmp_path, cnn_dir, long_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_clip(folder / "good_44k_stereo.wav", rate=44100, channels=2)
    write_clip(folder / "good.flac", seconds=1.0, seed=4)
    sf.write(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "broken.wav").write_bytes(b"RIFF....garbage" * 10)
    (folder / "readme.txt").write_text("not audio")
    out_csv, out_json, timeline = tmp_path / "out.csv", tmp_path / "out.json", tmp_path / "timeline.csv"
    status = main(
        [
            cnn_dir,
            str(folder),
            long_file,
            "--top_k",
            "2",
            "--output",
            str(out_csv),
            "--timeline",
            str(timeline),
            "--batch_size",
            "3",
            "--no_progress",
        ]
    )
    assert status == 1  # something failed
    rows = {r["file"].split("/")[-1]: r for r in csv.DictReader(open(out_csv))}
    assert {k: rows[k]["status"] for k in rows} == {
        "good_44k_stereo.wav": "ok",
        "good.flac": "ok",
        "silent.wav": "failed",
        "empty.wav": "failed",
        "broken.wav": "failed",
        "readme.txt": "skipped",
        "meeting.wav": "ok",
    }
    assert "silence only" in rows["silent.wav"]["error"] and "empty" in rows["empty.wav"]["error"]
    assert rows["good.flac"]["emotion_1"] in LABELS and float(rows["good.flac"]["score_1"]) > 0
    assert sum(float(rows["good.flac"][f"prob_{k}"]) for k in LABELS) == pytest.approx(1.0, abs=1e-4)
    assert rows["meeting.wav"]["segmentation"] == "vad" and rows["meeting.wav"]["segments"] == "6"
    timeline_rows = list(csv.DictReader(open(timeline)))
    meeting = [r for r in timeline_rows if r["file"].endswith("meeting.wav")]
    assert len(meeting) == 6 and float(meeting[0]["start"]) == pytest.approx(4.9, abs=0.2)
    printed = capsys.readouterr()
    assert "FAILED" in printed.out and "3 classified, 3 failed, 1 skipped" in printed.err

    assert main([cnn_dir, str(folder / "good.flac"), "--output", str(out_json), "--no_progress"]) == 0
    payload = json.loads(out_json.read_text())
    assert payload[0]["status"] == "ok" and len(payload[0]["top_k"]) == 3
    assert payload[0]["timeline"][0]["emotion"] == payload[0]["top_k"][0]["emotion"]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("segment", ["auto", "none"])
def test_non_finite_samples_fail_the_file_by_name(tmp_path, classifier, bad, segment):
    """NaN/Inf in a float WAV would make every probability NaN: the file is undecodable, the rest go on."""
    clip = tone(1.0, 16000, np.random.default_rng(2))
    clip[9000] = bad
    path = tmp_path / "corrupt.wav"
    sf.write(path, clip, 16000, subtype="FLOAT")
    good = write_clip(tmp_path / "good.wav")
    results = list(
        predict_files(classifier, [(str(path), None), (good, None)], PredictOptions(segment=segment))
    )
    assert results[0].status == "failed" and results[0].probabilities is None
    assert str(path) in results[0].error and "non-finite (" in results[0].error
    assert "0.562 s" in results[0].error  # where: sample 9000 at 16 kHz
    assert results[1].status == "ok" and np.isfinite(results[1].probabilities).all()


def test_non_finite_samples_are_refused_by_every_read(tmp_path):
    clip = tone(1.0, 22050, np.random.default_rng(2))
    clip[100] = np.nan
    path = tmp_path / "corrupt.wav"
    sf.write(path, clip, 22050, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="non-finite"):
        read_audio(path, 16000)
    with AudioSource(path, 16000) as source:
        with pytest.raises(AudioReadError, match="non-finite"):
            list(source.blocks(0.5))
        with pytest.raises(AudioReadError, match="non-finite"):
            list(source.native_blocks(1000))
        assert np.isfinite(source.read(0.5, 1.0)).all()  # a stretch without the bad sample reads fine


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a model is loaded or a file classified or exported: argument errors come first."""
    import inference.onnx_export as onnx_export
    import inference.predict as predict

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(predict.EmotionClassifier, "from_pretrained", forbidden)
    monkeypatch.setattr(predict, "predict_files", forbidden)
    monkeypatch.setattr(onnx_export, "load_model", forbidden, raising=False)
    monkeypatch.setattr(onnx_export, "export_onnx", forbidden)


@pytest.mark.parametrize(
    "args, names",
    [
        (["{tmp}/no-such-model", "{clip}"], ["model {tmp}/no-such-model", "no such folder"]),
        (["runs/cnn-missing", "{clip}"], ["model runs/cnn-missing", "no such folder"]),  # a Hub id's form
        (["{tmp}", "{clip}"], ["model {tmp}", "no config.json"]),
        (["{cnn}", "{clip}", "--output", "{tmp}/missing/out.csv"], ["--output", "does not exist"]),
        (["{cnn}", "{clip}", "--timeline", "{tmp}/missing/t.csv"], ["--timeline", "does not exist"]),
        (["{cnn}", "{clip}", "--output", "{tmp}/out.xlsx"], [".xlsx is not a format", "{tmp}/out.csv"]),
        (["{cnn}", "{clip}", "--max_segment", "0"], ["--max_segment 0", "greater than 0"]),
        (["{cnn}", "{clip}", "--batch_size", "0"], ["--batch_size 0", "greater than 0"]),
        (["{cnn}", "{clip}", "--chunk_ms", "0"], ["--chunk_ms 0", "greater than 0"]),
        (["{cnn}", "{clip}", "--stream", "--chunk_ms", "-20"], ["--chunk_ms -20", "greater than 0"]),
        (["{cnn}", "{clip}", "--top_k", "0"], ["--top_k 0", "greater than 0"]),
        (["export-onnx", "{cnn}", "{tmp}/missing/m.onnx"], ["export-onnx {tmp}/missing/m.onnx", "not exist"]),
        (["export-onnx", "{tmp}/no-such-model", "{tmp}/m.onnx"], ["model {tmp}/no-such-model"]),
    ],
    ids=[
        "missing-model-path",
        "missing-model-relative",
        "folder-without-model",
        "output-folder-missing",
        "timeline-folder-missing",
        "output-xlsx",
        "max-segment-0",
        "batch-size-0",
        "chunk-ms-0",
        "chunk-ms-negative",
        "top-k-0",
        "onnx-folder-missing",
        "onnx-missing-model",
    ],
)
def test_bad_arguments_are_one_line_before_any_work(tmp_path, cnn_dir, no_work, capsys, args, names):
    clip = write_clip(tmp_path / "clip.wav")
    fill = {"tmp": str(tmp_path), "cnn": cnn_dir, "clip": clip}
    assert main([a.format(**fill) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "; " in lines[0], captured.err
    for name in names:
        assert name.format(**fill) in lines[0]
    assert not (tmp_path / "out.xlsx").exists() and not (tmp_path / "m.onnx").exists()


def test_old_command_name_runs_the_same_main():
    """`python -m modeling.predict` (the README's old command) is an alias, not a second copy."""
    import inference.predict
    import modeling.predict

    assert modeling.predict.main is inference.predict.main


# -- memory between clips ---------------------------------------------------------------------------

PAGE_FAULTS = """
import resource, sys, torch
from inference.allocator import keep_freed_memory
from modeling import S4Config, S4ForAudioClassification
if sys.argv[1] == "keep" and not keep_freed_memory():
    raise SystemExit(3)
torch.set_num_threads(1)
model = S4ForAudioClassification(S4Config(num_labels=4)).eval()  # the defaults: pitch channels
clip = torch.randn(1, 48000) * 0.1
with torch.inference_mode():
    for _ in range(3):
        model(clip)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        model(clip)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def test_inference_keeps_freed_memory_between_clips(tmp_path, monkeypatch, cnn_dir):
    """Without it glibc handed the pitch tracker's ~1 MB temporaries back after every clip and faulted them
    in again at the next (about 1,100 page faults per 3 s clip, 40 % of the S4 defaults' time); the CLI sets
    it."""
    result = subprocess.run(
        [sys.executable, "-c", PAGE_FAULTS, "keep"], capture_output=True, text=True, check=False, timeout=300
    )
    if result.returncode == 3:
        pytest.skip("this C library has no glibc mallopt")
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 50, f"{result.stdout} minor page faults per clip"
    calls = []
    monkeypatch.setattr("inference.predict.keep_freed_memory", lambda: calls.append(True))
    clip = write_clip(tmp_path / "clip.wav")
    assert main([cnn_dir, clip, "--output", str(tmp_path / "out.json"), "--no_progress"]) == 0
    assert calls == [True]
