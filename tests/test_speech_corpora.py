"""The synthesised corpora (benchmarks/speech_corpora) are read by the project's own scanners unchanged.

A tiny corpus per engine (4 speakers x 4 emotions x 2 sentences): every file parses with nothing skipped,
with the right speakers, genders, emotions and rate; emotions differ in the intended direction; and a
file's audio depends only on the seed and its name.
"""

from __future__ import annotations

import shutil
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf

from benchmarks.speech_corpora import espeak, festival
from benchmarks.speech_corpora.generate import generate, main
from loaders.emotions import DEFAULT_EMOTIONS
from loaders.registry import CORPORA


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} not installed: bash tools/install_tts.sh")


def _check_audio(scan, rate: int) -> dict[tuple[str, str], list[float]]:
    """Every file is 16-bit mono at `rate`, 1-8 s and not silent; returns durations by (speaker, emotion)."""
    durations = defaultdict(list)
    for f in scan.files:
        info = sf.info(f.path)
        assert (info.samplerate, info.channels, info.subtype) == (rate, 1, "PCM_16"), f.file
        assert 1.0 < info.duration < 8.0, f.file
        samples, _ = sf.read(f.path)
        assert np.sqrt(np.mean(samples**2)) > 1e-3, f"{f.file} is silent"
        durations[f.info.speaker, f.info.emotion].append(info.duration)
    return durations


def _slower_when_sad(durations: dict[tuple[str, str], list[float]], speakers: list[str]) -> None:
    # Sadness is spoken slowly and anger fast (EMOTION_EFFECTS rate 0.8 vs 1.12), for every speaker.
    for speaker in speakers:
        assert np.mean(durations[speaker, "sadness"]) > np.mean(durations[speaker, "anger"]), speaker


def test_espeak_corpus_reads_as_ravdess(tmp_path):
    _need(espeak.BINARY)
    out = tmp_path / "ravdess"
    written = generate("espeak", out, speakers=4, seed=3, jobs=2)
    scan = CORPORA["ravdess"].scan_corpus(out)
    assert scan.skipped == []
    # Per actor: neutral 2 statements x 2 repetitions, the others also at 2 intensities.
    assert len(scan.files) == len(written) == 4 * (4 + 3 * 8)
    speakers = sorted({f.info.speaker for f in scan.files})
    assert speakers == ["01", "02", "03", "04"]
    assert {f.info.speaker: f.info.gender for f in scan.files} == {
        "01": "male",
        "02": "female",
        "03": "male",
        "04": "female",
    }
    assert {f.info.emotion for f in scan.files} == set(DEFAULT_EMOTIONS)
    assert {f.info.intensity for f in scan.files} == {"normal", "strong"}
    assert all(f.file.startswith(f"Actor_{f.info.speaker}/03-01-") for f in scan.files)
    _slower_when_sad(_check_audio(scan, espeak.RATE), speakers)

    # Same seed, a smaller plan: the same bytes for the files both hold.
    again = generate("espeak", tmp_path / "again", speakers=1, seed=3, emotions=["anger"], sentences=["01"])
    assert len(again) == 4
    for path in again:
        name = path.split("again/")[1]
        assert (out / name).read_bytes() == open(path, "rb").read(), name


def test_festival_corpus_reads_as_cremad(tmp_path):
    _need(festival.BINARY)
    out = tmp_path / "cremad"
    written = generate("festival", out, speakers=4, seed=3, jobs=2, sentences=["IEO", "DFA"])
    scan = CORPORA["cremad"].scan_corpus(out)
    assert scan.skipped == []
    # IEO: neutral XX plus three emotions at LO/MD/HI; DFA: the four emotions at XX.
    assert len(scan.files) == len(written) == 4 * (1 + 3 * 3 + 4)
    speakers = sorted({f.info.speaker for f in scan.files})
    assert speakers == ["1001", "1002", "1003", "1004"]
    # The gender comes from CREMA-D's own list (loaders/cremad.py); the voice must match it.
    assert {f.info.speaker: f.info.gender for f in scan.files} == {
        "1001": "male",
        "1002": "female",
        "1003": "female",
        "1004": "female",
    }
    plan = festival.plan(4, list(DEFAULT_EMOTIONS), 3, ["DFA"])
    assert [job["voice"].gender for job in plan] == ["male", "female", "female", "female"]
    assert {f.info.emotion for f in scan.files} == set(DEFAULT_EMOTIONS)
    assert {f.info.text for f in scan.files} == {"IEO", "DFA"}
    assert {f.info.intensity for f in scan.files} == {"", "low", "medium", "high"}
    _slower_when_sad(_check_audio(scan, festival.RATE), speakers)

    again = generate(
        "festival", tmp_path / "again", speakers=1, seed=3, emotions=["sadness"], sentences=["DFA"]
    )
    assert [p.split("again/")[1] for p in again] == ["AudioWAV/1001_DFA_SAD_XX.wav"]
    assert (out / "AudioWAV/1001_DFA_SAD_XX.wav").read_bytes() == open(again[0], "rb").read()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["espeak", "{out}", "--speakers", "25"], "--speakers 25: the ravdess layout has 1-24 speakers"),
        (["festival", "{out}", "--emotions", "surprise"], "--emotions surprise: not in the cremad grammar"),
        (["festival", "{out}", "--sentences", "XYZ"], "--sentences XYZ: unknown sentence code"),
        (["espeak", "{full}"], "exists and is not an empty folder"),
    ],
)
def test_bad_arguments_stop_before_generating(tmp_path, capsys, argv, message):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.wav").write_bytes(b"")
    out = tmp_path / "new"
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(out=out, full=full) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("python -m benchmarks.speech_corpora: error: ")
    assert message in err[-1]
    assert not out.exists()
