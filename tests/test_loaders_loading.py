"""Builders and loading: schema, 16 kHz resampling, caching, leniency, emotion choice, concatenation."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import pytest

from loaders import builder as builder_module
from loaders import fixtures
from loaders.audio import BrokenAudioError, encode_wav
from loaders.discovery import CorpusNotFoundError
from loaders.emodb import EmoDB
from loaders.emotions import EMOTIONS
from loaders.loading import load_corpora, load_corpus
from loaders.ravdess import Ravdess
from loaders.schema import corpus_features


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    fixtures.build_download("emodb", root, per_emotion=2, seconds=0.25)
    fixtures.build_download("ravdess", root, per_emotion=2, seconds=0.25)
    return root


def test_builder_round_trip_schema_16k_mono_duration(data_root, tmp_path):
    builder = Ravdess(data_dir=data_root / "ravdess", cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")
    assert list(builder.info.splits) == ["train"]
    assert ds.features == corpus_features()
    assert len(ds) == 16  # 8 emotions x 2; the duplicate tree and the clutter are left out
    row = ds[0]
    assert row["audio"]["sampling_rate"] == 16000
    assert row["audio"]["array"].ndim == 1 and len(row["audio"]["array"]) == 4000
    assert row["duration"] == pytest.approx(0.25)
    assert row["corpus"] == "ravdess" and row["speaker"].startswith("ravdess/") and row["language"] == "en"
    assert row["file"] == "Actor_01/03-01-01-01-01-01-01.wav"
    assert ds.features["label"].int2str(row["label"]) == row["emotion"] == "neutral"
    assert ds.data.column("audio")[0]["path"].as_py() == row["file"]  # bytes embedded, path kept
    assert ds.data.column("audio")[0]["bytes"].as_py()[:4] == b"RIFF"
    assert ds["file"] == sorted(ds["file"])


def test_resampled_sine_keeps_its_frequency_and_length(tmp_path):
    rows = [r for r in fixtures.read_manifest() if r["corpus"] == "ravdess"][:1]
    corpus_dir = fixtures.build_download("ravdess", tmp_path, manifest=rows, quirks=False)
    t = np.arange(48000) / 48000.0  # 1 s at 48 kHz
    sine = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    (corpus_dir / rows[0]["path"]).write_bytes(encode_wav(sine, 48000))
    builder = Ravdess(data_dir=corpus_dir, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    audio = builder.as_dataset(split="train")[0]["audio"]
    samples = audio["array"]
    assert audio["sampling_rate"] == 16000 and len(samples) == 16000
    expected = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(16000) / 16000.0)
    middle = slice(200, -200)  # the resampling filter's edges
    assert np.max(np.abs(samples[middle] - expected[middle])) < 2e-3
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) == 1000  # 1 Hz bins


def test_stereo_is_downmixed(tmp_path):
    import soundfile as sf

    rows = [r for r in fixtures.read_manifest() if r["corpus"] == "emodb"][:1]
    corpus_dir = fixtures.build_download("emodb", tmp_path, manifest=rows, quirks=False)
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.25)], axis=1)
    sf.write(corpus_dir / rows[0]["path"], stereo, 16000, subtype="PCM_16")
    builder = EmoDB(data_dir=corpus_dir, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    samples = builder.as_dataset(split="train")[0]["audio"]["array"]
    assert samples.ndim == 1 and np.allclose(samples, 0.125, atol=1e-4)


def test_second_load_reads_the_cache_without_decoding(data_root, tmp_path, monkeypatch):
    first = load_corpus("emodb", data_root, cache_dir=tmp_path / "cache", num_proc=1)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(builder_module, "decode_audio", no_decoding)
    second = load_corpus("emodb", data_root, cache_dir=tmp_path / "cache", num_proc=1)
    assert second["file"] == first["file"] and len(second) == 14
    assert np.array_equal(second[3]["audio"]["array"], first[3]["audio"]["array"])


def test_a_load_without_cache_dir_writes_to_the_test_process_cache(data_root):
    """conftest gives each test process a datasets cache of its own, so the suite leaves nothing in the user's
    ~/.cache (where every run's fixture corpora used to pile up)."""
    dataset = load_corpus("emodb", data_root, num_proc=1)
    process_cache = Path(os.environ["HF_DATASETS_CACHE"])
    files = [Path(cache_file["filename"]) for cache_file in dataset.cache_files]
    assert process_cache.name.startswith("ser-tests-datasets-")
    assert files and all(process_cache in file.parents for file in files)
    assert Path(datasets.config.HF_DATASETS_CACHE) == process_cache


def test_cache_is_keyed_by_folder_content_and_sampling_rate(data_root, tmp_path):
    corpus_dir = data_root / "emodb"
    a = EmoDB(data_dir=corpus_dir, cache_dir=str(tmp_path / "cache"))
    b = EmoDB(data_dir=corpus_dir, cache_dir=str(tmp_path / "cache"), sampling_rate=8000)
    assert a.cache_dir != b.cache_dir
    (corpus_dir / "wav" / "03a01Wa.wav").unlink()
    c = EmoDB(data_dir=corpus_dir, cache_dir=str(tmp_path / "cache"))
    assert c.cache_dir != a.cache_dir
    other = fixtures.build_download("emodb", tmp_path / "other", per_emotion=2, seconds=0.25)
    assert EmoDB(data_dir=other, cache_dir=str(tmp_path / "cache")).cache_dir != a.cache_dir


def test_parallel_preparation_keeps_the_order(tmp_path):
    corpus_dir = fixtures.build_download("emodb", tmp_path, per_emotion=3, seconds=0.1)
    one = load_corpus("emodb", corpus_dir, cache_dir=tmp_path / "c1", num_proc=1)
    two = load_corpus("emodb", corpus_dir, cache_dir=tmp_path / "c2", num_proc=2)
    assert one["file"] == two["file"] == sorted(one["file"])
    assert one["label"] == two["label"]


def test_native_rate_references_files_without_decoding(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(builder_module, "decode_audio", lambda path: pytest.fail("decoded"))
    ds = load_corpus("ravdess", data_root, sampling_rate=None, cache_dir=tmp_path / "cache", num_proc=1)
    assert ds.features["audio"].sampling_rate is None
    stored = ds.data.column("audio")[0].as_py()
    assert stored["bytes"] is None and Path(stored["path"]).is_file()
    assert ds[0]["audio"]["sampling_rate"] == 48000
    assert ds[0]["duration"] == pytest.approx(0.25)


def test_broken_audio_is_an_error_or_skipped_and_counted_when_lenient(data_root, tmp_path, caplog):
    broken = data_root / "emodb" / "wav" / "03a01Wa.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(3000))
    # Strict: one line naming the file, a ValueError (run_train.py's one-line errors), before any decoding.
    with pytest.raises(ValueError, match=r"03a01Wa.wav: cannot read audio header .*--lenient") as info:
        load_corpus("emodb", data_root, cache_dir=tmp_path / "cache", num_proc=1)
    assert isinstance(info.value, BrokenAudioError) and "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.arrow"))
    ds = load_corpus("emodb", data_root, lenient=True, cache_dir=tmp_path / "cache", num_proc=1)
    assert len(ds) == 13 and "wav/03a01Wa.wav" not in ds["file"]
    assert "skipped 1 undecodable audio files" in caplog.text and "03a01Wa.wav" in caplog.text


@pytest.mark.parametrize("num_proc", [1, 2])
def test_decoding_errors_come_out_as_themselves_not_wrapped(tmp_path, monkeypatch, num_proc):
    # A file that passes the header check but fails to decode: datasets wraps the error of a shard in
    # DatasetGenerationError, and a worker process sends back only that wrapper.
    corpus_dir = fixtures.build_download("emodb", tmp_path, per_emotion=2, seconds=0.05)
    decode = builder_module.decode_audio

    def failing(path):
        if path.endswith("03a01Wa.wav"):
            raise BrokenAudioError(f"{path}: cannot decode audio (simulated); re-download the file")
        return decode(path)

    monkeypatch.setattr(builder_module, "decode_audio", failing)
    with pytest.raises(BrokenAudioError, match=r"03a01Wa.wav: cannot decode audio \(simulated\)") as info:
        load_corpus("emodb", corpus_dir, cache_dir=tmp_path / "cache", num_proc=num_proc)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize("where", ["nan", "inf"])
def test_non_finite_audio_is_undecodable(tmp_path, caplog, where):
    import soundfile as sf

    corpus_dir = fixtures.build_download("emodb", tmp_path, per_emotion=2, seconds=0.05)
    samples = np.full(1600, 0.1, dtype=np.float32)
    samples[100:] = np.nan if where == "nan" else 0.1
    if where == "inf":
        samples[800] = np.inf
    sf.write(corpus_dir / "wav" / "03a01Wa.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(BrokenAudioError, match=r"03a01Wa.wav: holds \d+ non-finite"):
        load_corpus("emodb", corpus_dir, cache_dir=tmp_path / "cache", num_proc=1)
    ds = load_corpus("emodb", corpus_dir, lenient=True, cache_dir=tmp_path / "cache", num_proc=1)
    assert len(ds) == 13 and "wav/03a01Wa.wav" not in ds["file"]
    assert "skipped 1 undecodable audio files" in caplog.text
    # Native-rate references decode nothing else, but a float file is checked before it is referenced.
    with pytest.raises(BrokenAudioError, match="non-finite"):
        load_corpus("emodb", corpus_dir, sampling_rate=None, cache_dir=tmp_path / "cache", num_proc=1)
    # The decoder itself refuses, for any caller that skips the pre-check.
    with pytest.raises(BrokenAudioError, match="non-finite"):
        builder_module.decode_audio(str(corpus_dir / "wav" / "03a01Wa.wav"))


def test_sampling_rate_must_be_positive(data_root, tmp_path):
    for rate in (0, -16000, 16000.5):
        with pytest.raises(ValueError, match=f"sampling_rate={rate!r}: not a positive number of Hz"):
            load_corpus("emodb", data_root, sampling_rate=rate, cache_dir=tmp_path / "cache")


def test_cremad_silent_file_is_kept(tmp_path):
    rows = [
        r
        for r in fixtures.read_manifest()
        if r["path"].endswith(("1076_MTI_SAD_XX.wav", "1076_MTI_ANG_XX.wav"))
    ]
    corpus_dir = fixtures.build_download("cremad", tmp_path, manifest=rows, seconds=0.1)
    ds = load_corpus("cremad", corpus_dir, cache_dir=tmp_path / "cache", num_proc=1)
    silent = ds[ds["file"].index("AudioWAV/1076_MTI_SAD_XX.wav")]
    assert len(ds) == 2 and not np.any(silent["audio"]["array"])


def test_load_corpora_concatenates_and_relabels_over_the_chosen_emotions(data_root, tmp_path):
    ds = load_corpora(["emodb", "ravdess"], data_root, split=None, cache_dir=tmp_path / "cache", num_proc=1)
    assert ds.features["label"].names == ["anger", "happy", "neutral", "sadness"]
    assert len(ds) == 16  # 4 emotions x 2 files x 2 corpora
    assert set(ds["corpus"]) == {"emodb", "ravdess"}
    names = ds.features["label"].names
    assert all(names[label] == emotion for label, emotion in zip(ds["label"], ds["emotion"], strict=True))
    assert ds.column_names == list(corpus_features().keys())
    assert ds[0]["audio"]["sampling_rate"] == 16000


def test_load_corpora_merges_keep_the_original_emotion(data_root, tmp_path):
    ds = load_corpora(
        ["emodb", "ravdess"],
        data_root,
        emotions=["fear", "neutral"],
        merge={"anxiety": "fear", "calm": "neutral"},
        split=None,
        cache_dir=tmp_path / "cache",
        num_proc=1,
    )
    assert sorted(set(ds["emotion"])) == ["anxiety", "calm", "fear", "neutral"]
    names = ds.features["label"].names
    merged = {"anxiety": "fear", "calm": "neutral"}
    assert all(names[label] == merged.get(e, e) for label, e in zip(ds["label"], ds["emotion"], strict=True))
    assert len(ds) == 4 + 6  # 2 files each of emodb anxiety, neutral; ravdess calm, fear, neutral
    assert ds["emotion"].count("anxiety") == 2 and ds["emotion"].count("calm") == 2


def test_load_corpora_all_ten_emotions_single_corpus(data_root, tmp_path):
    ds = load_corpus("emodb", data_root, cache_dir=tmp_path / "cache", num_proc=1)
    assert ds.features["label"].names == list(EMOTIONS)
    assert sorted(set(ds["emotion"])) == [
        "anger",
        "anxiety",
        "bored",
        "disgust",
        "happy",
        "neutral",
        "sadness",
    ]


def test_load_corpora_split(data_root, tmp_path):
    pytest.importorskip("loaders.splits")
    dsd = load_corpora(
        ["emodb", "ravdess"], data_root, split="random", cache_dir=tmp_path / "cache", num_proc=1
    )
    assert set(dsd) == {"train", "validation", "test"}
    assert sum(len(d) for d in dsd.values()) == 16


def test_load_corpora_errors(data_root, tmp_path):
    with pytest.raises(ValueError, match="unknown corpus name.*valid corpora"):
        load_corpora(["emodb", "iemocap"], data_root, split=None)
    with pytest.raises(ValueError, match="emotion 'surprise': none of the corpora"):
        load_corpora(
            ["emodb"], data_root, emotions=["anger", "surprise"], split=None, cache_dir=tmp_path / "c"
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        load_corpora(["emodb"], empty, split=None)


def test_load_corpora_finds_every_folder_before_preparing_any(data_root, tmp_path):
    """A missing last corpus is an error at once, not after the first ones were prepared."""
    with pytest.raises(CorpusNotFoundError, match="no folder .*tess.*--corpora tess"):
        load_corpora(["emodb", "tess"], data_root, split=None, cache_dir=tmp_path / "cache", num_proc=1)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.arrow"))
    with pytest.raises(FileNotFoundError, match="--corpora tess"):
        load_corpora(["tess"], data_root, split=None)


def test_prepare_cli_builds_the_cache_then_reuses_it(data_root, tmp_path, capsys, monkeypatch):
    from loaders.__main__ import main

    args = ["prepare", str(data_root), "--cache_dir", str(tmp_path / "cache"), "--num_proc", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "emodb: 14 files at 16000 Hz" in out and "ravdess: 16 files at 16000 Hz" in out
    assert "duplicate copies ignored: 16" in out  # the second RAVDESS tree
    monkeypatch.setattr(builder_module, "decode_audio", lambda path: pytest.fail("decoded"))
    assert main(args + ["--corpora", "emodb"]) == 0
    assert "emodb: 14 files" in capsys.readouterr().out
