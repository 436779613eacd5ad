"""The synthetic corpus: deterministic rendering, emotion cues in the right direction, learnable but not
trivially (a summary-feature classifier beats chance, held-out speakers are harder), and the builder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from loaders.discovery import UnknownCodeError
from loaders.emotions import DEFAULT_EMOTIONS, EMOTIONS
from loaders.registry import CORPORA, make_builder, scan_corpus
from loaders.schema import SAMPLING_RATE, corpus_features
from loaders.synthesis import SPEAKERS, render_utterance, speaker_profile
from loaders.synthetic import Synthetic, corpus_plan, write_synthetic_corpus

PCM16_STEP = 1 / 32768


# --- numpy summary features (what a simple classifier sees) --------------------------------------------


def frame_signal(x: np.ndarray, frame: int = 400, hop: int = 160) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), frame)[::hop]


def summary_features(x: np.ndarray) -> np.ndarray:
    """log-energy mean/std, zero-crossing rate, autocorrelation F0 (median, spread), spectral centroid,
    energy peaks per second and voiced share, over the frames within 26 dB of the loudest."""
    frames = frame_signal(x)
    energy = np.log(np.mean(frames**2, axis=1) + 1e-10)
    active = energy > energy.max() - 6.0
    zcr = np.mean(np.abs(np.diff(np.sign(frames), axis=1)) > 0, axis=1)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1))
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / SAMPLING_RATE)
    centroid = (spectrum * freqs).sum(1) / (spectrum.sum(1) + 1e-10)
    f0, voiced = autocorrelation_f0(frames[active])
    log_f0 = np.log(f0[voiced]) if voiced.any() else np.array([np.log(100.0)])
    smooth = np.convolve(energy, np.ones(5) / 5, mode="same")
    peaks = (smooth[1:-1] > smooth[:-2]) & (smooth[1:-1] >= smooth[2:]) & (smooth[1:-1] > smooth.max() - 4)
    peak_rate = peaks.sum() / (active.sum() * 160 / SAMPLING_RATE)
    return np.array(
        [
            energy[active].mean(),
            energy[active].std(),
            zcr[active].mean(),
            np.median(log_f0),
            log_f0.std(),
            centroid[active].mean(),
            peak_rate,
            voiced.mean(),
        ]
    )


def autocorrelation_f0(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F0 (Hz) from the autocorrelation peak in 60-400 Hz, and whether the frame is voiced."""
    centred = frames - frames.mean(1, keepdims=True)
    power = np.abs(np.fft.rfft(centred, n=1024, axis=1)) ** 2
    autocorr = np.fft.irfft(power, axis=1)[:, : SAMPLING_RATE // 60 + 1]
    shortest = SAMPLING_RATE // 400
    lag = shortest + np.argmax(autocorr[:, shortest:], axis=1)
    strength = autocorr[np.arange(len(lag)), lag] / (autocorr[:, 0] + 1e-10)
    return SAMPLING_RATE / lag, strength > 0.4


def logistic_regression(train_x, train_y, test_x, n_classes, steps=500, lr=0.5, l2=1e-3) -> np.ndarray:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    a = np.c_[(train_x - mean) / std, np.ones(len(train_x))]
    b = np.c_[(test_x - mean) / std, np.ones(len(test_x))]
    weights = np.zeros((a.shape[1], n_classes))
    targets = np.eye(n_classes)[train_y]
    for _ in range(steps):
        logits = a @ weights
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        weights -= lr * (a.T @ (p - targets) / len(a) + l2 * weights)
    return np.argmax(b @ weights, 1)


@pytest.fixture(scope="module")
def feature_table():
    """Summary features of 12 speakers x 4 default emotions x 8 utterances."""
    plan = corpus_plan(utterances=8, sentences=8, emotions=DEFAULT_EMOTIONS, seed=0)
    x = np.stack([summary_features(u.render()) for u in plan])
    y = np.array([DEFAULT_EMOTIONS.index(u.emotion) for u in plan])
    speakers = np.array([SPEAKERS.index(u.speaker) for u in plan])
    return x, y, speakers


def split_accuracies(x, y, speakers) -> tuple[float, float]:
    """Mean accuracy over 3 folds of 4 held-out speakers, and over random splits of the same sizes."""
    by_speaker, by_random = [], []
    for fold in range(3):
        test = np.isin(speakers, np.arange(4 * fold, 4 * fold + 4))
        by_speaker.append(np.mean(logistic_regression(x[~test], y[~test], x[test], 4) == y[test]))
        for repeat in range(3):
            test = np.zeros(len(y), bool)
            test[np.random.default_rng(10 * fold + repeat).permutation(len(y))[: len(y) // 3]] = True
            by_random.append(np.mean(logistic_regression(x[~test], y[~test], x[test], 4) == y[test]))
    return float(np.mean(by_speaker)), float(np.mean(by_random))


def test_summary_classifier_learns_emotions_and_held_out_speakers_are_harder(feature_table):
    speaker_accuracy, random_accuracy = split_accuracies(*feature_table)
    print(f"speaker-independent {speaker_accuracy:.3f}, random split {random_accuracy:.3f}")
    assert speaker_accuracy > 0.7  # chance is 0.25
    assert random_accuracy - speaker_accuracy > 0.02
    assert random_accuracy < 0.99  # not trivial


def test_without_speaker_habits_the_gap_closes(feature_table, monkeypatch):
    # The gap comes from the speakers (their voices and habits), not from the split sizes: shuffling the
    # speaker ids across utterances makes the "speaker" split a random split.
    x, y, speakers = feature_table
    shuffled = np.random.default_rng(0).permutation(speakers)
    speaker_accuracy, random_accuracy = split_accuracies(x, y, shuffled)
    assert abs(random_accuracy - speaker_accuracy) < 0.04


# --- rendering -----------------------------------------------------------------------------------------


def test_render_is_deterministic_and_depends_on_every_argument():
    first = render_utterance("F01", "anger", 3, seed=0)
    assert np.array_equal(first, render_utterance("synthetic/F01", "anger", "s03", seed=0))
    for other in (
        render_utterance("F01", "anger", 3, seed=1),
        render_utterance("M01", "anger", 3, seed=0),
        render_utterance("F01", "happy", 3, seed=0),
        render_utterance("F01", "anger", 4, seed=0),
    ):
        assert len(other) != len(first) or not np.allclose(other, first)


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_every_emotion_renders_speech_like_audio(emotion):
    for speaker in ("F02", "M04"):
        audio = render_utterance(speaker, emotion, 5, seed=2)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 1.2 <= len(audio) / SAMPLING_RATE <= 3.8
        assert 0.01 < np.abs(audio).max() < 1.0
        frames = frame_signal(audio)
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        assert level.max() - np.median(level[:3]) > 30  # leading silence well below the speech
        _, voiced = autocorrelation_f0(frames[level > level.max() - 20])
        assert voiced.mean() > 0.5


def mean_cues(speaker: str, emotion: str, sentences: int = 4) -> dict[str, float]:
    rows = []
    for sentence in range(sentences):
        audio = render_utterance(speaker, emotion, sentence, seed=7)
        frames = frame_signal(audio)
        energy = np.mean(frames**2, axis=1)
        active = energy > energy.max() * 10 ** (-2.6)
        f0, voiced = autocorrelation_f0(frames[active])
        rows.append((10 * np.log10(energy[active].mean()), np.median(f0[voiced]), len(audio) / SAMPLING_RATE))
    level, f0, seconds = np.mean(rows, axis=0)
    return {"level": level, "f0": f0, "seconds": seconds}


def test_emotions_move_loudness_pitch_and_rate_the_acted_way():
    cues = {(s.code, e): mean_cues(s.code, e, sentences=2) for s in SPEAKERS for e in DEFAULT_EMOTIONS}

    def average(emotion, cue):  # over speakers; pitch in log scale, as the speakers' F0 differ
        values = [cues[s.code, emotion][cue] for s in SPEAKERS]
        return np.mean(np.log(values)) if cue == "f0" else np.mean(values)

    levels = [average(e, "level") for e in ("anger", "happy", "neutral", "sadness")]
    assert levels == sorted(levels, reverse=True)
    assert min(average("anger", "f0"), average("happy", "f0")) > average("neutral", "f0")
    assert average("neutral", "f0") > average("sadness", "f0")
    assert average("sadness", "seconds") > average("neutral", "seconds") > average("anger", "seconds")
    # Speakers have habits (one speaker's anger is barely higher than their neutral), but every speaker's
    # anger is louder, higher and faster than their sadness.
    for s in SPEAKERS:
        anger, sadness = cues[s.code, "anger"], cues[s.code, "sadness"]
        assert anger["level"] > sadness["level"] + 6
        assert anger["f0"] > sadness["f0"] and anger["seconds"] < sadness["seconds"]


def test_speakers_differ_in_voice_and_female_voices_are_higher():
    f0 = {s.code: mean_cues(s.code, "neutral")["f0"] for s in SPEAKERS[:4]}
    assert min(f0["F01"], f0["F02"]) > 1.4 * max(f0["M01"], f0["M02"])
    assert len({s.code for s in SPEAKERS}) == 12
    assert [s.gender for s in SPEAKERS].count("female") == 6
    # Personal habits: the same emotion is acted differently by different speakers.
    assert speaker_profile("F01", "anger") != speaker_profile("F03", "anger")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="speaker"):
        render_utterance("X99", "anger", 0)
    with pytest.raises(ValueError, match="emotion"):
        render_utterance("F01", "joy", 0)
    with pytest.raises(ValueError, match="sentence"):
        render_utterance("F01", "anger", "third")
    with pytest.raises(ValueError, match="seed"):
        render_utterance("F01", "anger", 0, seed=-1)
    with pytest.raises(ValueError, match="num_speakers"):
        corpus_plan(num_speakers=13)
    with pytest.raises(ValueError, match="emotions"):
        Synthetic(emotions=["joy"])


# --- the corpus ----------------------------------------------------------------------------------------


def test_builder_emits_the_common_schema_with_embedded_16k_audio(tmp_path):
    builder = make_builder("synthetic", None, num_speakers=2, utterances=2, cache_dir=str(tmp_path))
    assert isinstance(builder, Synthetic) and CORPORA["synthetic"] is Synthetic
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    assert ds.features == corpus_features()
    assert len(ds) == 2 * len(DEFAULT_EMOTIONS) * 2
    assert ds.unique("speaker") == ["synthetic/F01", "synthetic/M01"]
    assert ds.unique("corpus") == ["synthetic"] and ds.unique("language") == ["en"]
    assert sorted(ds.unique("text")) == ["s00", "s01"]
    row = ds[0]
    assert row["file"] == "F01/anger_s00_r1.wav"
    assert (row["emotion"], row["gender"], row["intensity"]) == ("anger", "female", "")
    assert ds.features["label"].int2str(row["label"]) == "anger"
    expected = render_utterance("F01", "anger", 0, seed=0)
    audio = row["audio"]
    samples = audio.get_all_samples()
    assert samples.sample_rate == 16000
    np.testing.assert_allclose(samples.data.numpy()[0], expected, atol=PCM16_STEP)
    assert row["duration"] == pytest.approx(len(expected) / SAMPLING_RATE, abs=1e-4)


def test_config_changes_give_a_separate_cache(tmp_path):
    a = Synthetic(num_speakers=2, utterances=2, cache_dir=str(tmp_path))
    b = Synthetic(num_speakers=2, utterances=2, seed=1, cache_dir=str(tmp_path))
    c = Synthetic(config_name="all_emotions", num_speakers=2, utterances=2, cache_dir=str(tmp_path))
    assert len({a.cache_dir, b.cache_dir, c.cache_dir}) == 3
    assert set(c.config.emotions) == set(EMOTIONS)
    assert len(c.plan()) == 2 * 10 * 2


def test_a_changed_synthesiser_gives_a_separate_cache(tmp_path):
    # The synthesiser lives in loaders/synthesis.py, not in the builder's module: the builder's cache key
    # must cover its source too, or an edited synthesis would be served the old audio from the cache.
    import loaders

    copy = tmp_path / "copy"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(loaders.__file__).parent, copy / "loaders", ignore=skip)
    with open(copy / "loaders" / "synthesis.py", "a") as f:
        f.write("# edited\n")
    code = "from loaders.synthetic import Synthetic; print(Synthetic(num_speakers=1, utterances=1).hash)"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    edited = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert edited and edited != Synthetic(num_speakers=1, utterances=1, cache_dir=str(tmp_path)).hash


def test_written_files_scan_like_a_downloaded_corpus(tmp_path):
    corpus_dir = write_synthetic_corpus(tmp_path, num_speakers=2, utterances=2, emotions=["anger", "calm"])
    (corpus_dir / "README.txt").write_text("not audio")
    scan = scan_corpus("synthetic", corpus_dir)
    assert [f.file for f in scan.files] == [u.file for u in corpus_plan(2, 2, emotions=["anger", "calm"])]
    assert scan.skipped == [("README.txt", "not audio (readme, licence or other file)")]
    first = scan.files[0]
    assert (first.info.speaker, first.info.emotion, first.info.text) == ("F01", "anger", "s00")
    samples, rate = sf.read(first.path, dtype="float32")
    assert rate == 16000
    np.testing.assert_allclose(samples, render_utterance("F01", "anger", 0), atol=PCM16_STEP)
    assert Synthetic.parse_file("F01/notes.wav") is None
    with pytest.raises(UnknownCodeError, match="joy"):
        Synthetic.parse_file("F01/joy_s00_r1.wav")


@pytest.mark.slow
def test_default_corpus_loads_through_load_corpora(tmp_path):
    from loaders.loading import load_corpora

    splits = load_corpora(["synthetic"], None, split="speaker", cache_dir=tmp_path)
    total = sum(len(splits[s]) for s in ("train", "validation", "test"))
    assert total == 12 * 4 * 20
    assert splits["train"].features["label"].names == list(DEFAULT_EMOTIONS)
    train, test = set(splits["train"].unique("speaker")), set(splits["test"].unique("speaker"))
    assert train and test and not train & test
