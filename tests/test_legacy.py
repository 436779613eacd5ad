"""The original project's API (EC523-SER `dataset.py`) over the loaders: its README snippet runs with only
the import line changed; DataFrame columns and values, labels, resampling, DataLoader batching."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

import loaders
import loaders.download
from loaders.discovery import CorpusFile, CorpusNotFoundError
from loaders.fixtures import _savee_flat_path, build_download, read_manifest
from loaders.legacy import (
    COLUMNS,
    LEGACY_EMOTIONS,
    SpeechEmotionDataset,
    emo2onehot,
    get_dataset_info,
    pad_collate,
)
from loaders.registry import CORPORA, CORPUS_NAMES
from loaders.synthetic import write_synthetic_corpus

SECONDS = 0.05  # every fixture file; 48 kHz RAVDESS -> 2400 samples natively, 800 at 16 kHz

# The original README, with only the import line changed (and the data folder filled in below).
README_SNIPPET = """
from torch.utils.data import DataLoader
from loaders import download_datasets, SpeechEmotionDataset, get_dataset_info
dataset_dir = DATASET_DIR
download_datasets(dataset_dir, dname="emodb")
download_datasets(dataset_dir)
df = get_dataset_info(dataset_dir)
trainset = SpeechEmotionDataset(df, fs=16000)
dataiter = iter(trainset)
data, label = next(dataiter)
print(data)
print(label)
trainloader = DataLoader(trainset, batch_size=4, shuffle=True, num_workers=1)
"""


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    """Fake downloads of all six corpora (one file per emotion, plus the real downloads' clutter and
    duplicate trees), the way `download_datasets` leaves them."""
    root = tmp_path_factory.mktemp("datasets")
    for corpus in CORPUS_NAMES:
        build_download(corpus, root, per_emotion=1, seconds=SECONDS)
    return str(root)


@pytest.fixture(scope="module")
def info(data_root) -> pd.DataFrame:
    return get_dataset_info(data_root)


def test_readme_snippet_runs_with_only_the_import_changed(data_root, monkeypatch, capsys):
    calls = []

    def fake_download(root, corpora=None, **kwargs):  # no network in tests
        calls.append((root, corpora))
        return {}

    monkeypatch.setattr(loaders.download, "download_corpora", fake_download)
    namespace = {}
    exec(README_SNIPPET.replace("DATASET_DIR", repr(data_root)), namespace)
    assert calls == [(data_root, ["emodb"]), (data_root, None)]
    data, label = namespace["data"], namespace["label"]
    assert data.dtype == torch.float32 and data.ndim == 1
    assert label.dtype == torch.uint8 and label.shape == (10,)
    assert "tensor(" in capsys.readouterr().out
    # The fixture clips all last SECONDS, so at 16 kHz they batch even with the default collate.
    waveforms, labels = next(iter(namespace["trainloader"]))
    assert waveforms.shape == (4, int(SECONDS * 16000)) and labels.shape == (4, 10)


def test_dataframe_keeps_the_original_columns_and_adds_the_schema(info, data_root):
    assert list(info.columns) == list(COLUMNS)
    original = ["filename", "speaker_n", "intensity", "emotion", "version", "language", "database"]
    assert list(info.columns[:7]) == original
    # One row per recording: duplicate trees and OS clutter of the downloads are not counted.
    per_corpus = info.groupby("corpus").size().to_dict()
    assert per_corpus == {"cremad": 6, "emodb": 7, "ravdess": 8, "savee": 7, "shemo": 6, "tess": 7}
    assert info["filename"].map(os.path.isabs).all() and info["filename"].map(os.path.isfile).all()
    assert info["filename"].str.startswith(data_root).all()
    assert (info["database"] == info["corpus"]).all()
    assert set(info["emotion"]) <= set(LEGACY_EMOTIONS)
    assert all(s.startswith(c + "/") for s, c in zip(info["speaker"], info["corpus"], strict=True))
    assert set(info["gender"]) <= {"female", "male"}
    assert (info["duration"] - SECONDS).abs().max() < 1e-3
    assert set(info["language"]) == {"german", "english", "persian"}


def row_of(info: pd.DataFrame, corpus: str, emotion: str) -> dict:
    rows = info[(info["corpus"] == corpus) & (info["emotion"] == emotion)]
    return rows.iloc[0].to_dict()


def test_dataframe_values_follow_the_original(info):
    emodb = row_of(info, "emodb", "anger")
    assert (emodb["speaker_n"], emodb["version"], emodb["intensity"]) == (3, "a", "NA")
    assert emodb["file"] == "wav/03a01Wa.wav" and emodb["sample_rate"] == 16000
    ravdess = row_of(info, "ravdess", "calm")
    assert (ravdess["speaker_n"], ravdess["version"], ravdess["intensity"]) == (1, "speech_01", "normal")
    assert ravdess["sample_rate"] == 48000
    cremad = row_of(info, "cremad", "happy")
    assert (cremad["speaker_n"], cremad["version"], cremad["intensity"]) == (1001, "NA", "unknown")
    savee = row_of(info, "savee", "sadness")
    assert (savee["speaker_n"], savee["version"], savee["text"]) == (1, "01", "sa01")
    tess = row_of(info, "tess", "surprise")
    assert (tess["speaker_n"], tess["version"], tess["speaker"]) == (1, "back", "tess/OAF")
    shemo = row_of(info, "shemo", "anger")
    assert (shemo["speaker_n"], shemo["version"], shemo["language"]) == ("01", 1, "persian")


def _original_columns(corpus: str, speaker: str, intensity: str, file: str) -> dict:
    """The original `get_dataset_info`'s per-corpus rules, as `loaders.legacy` wrote them before they moved
    to the corpus modules (`legacy_columns`): the reference the corpus modules are held to."""
    stem = PurePosixPath(file).stem
    if corpus == "savee":
        speaker_n = {"DC": 1, "JE": 2, "JK": 3, "KL": 4}[speaker]
    elif corpus == "tess":
        speaker_n = {"OAF": 1, "YAF": 2}[speaker]
    elif corpus == "shemo":
        speaker_n = speaker[1:3]
    else:
        speaker_n = int(re.sub(r"\D", "", speaker))
    version = "NA"
    if corpus == "emodb":
        version = stem[6]
    elif corpus == "ravdess":
        parts = stem.split("-")
        version = f"{ {'01': 'speech', '02': 'song'}[parts[1]] }_{parts[5]}"
    elif corpus == "savee":
        version = re.search(r"[a-z]+(\d+)$", stem)[1]
    elif corpus == "tess":
        version = stem.lower().split("_")[1]
    elif corpus == "shemo":
        version = int(stem[4:6])
    elif corpus == "synthetic":
        version = re.search(r"_r(\d+)$", stem)[1]
    return {
        "speaker_n": speaker_n,
        "intensity": intensity or ("unknown" if corpus == "cremad" else "NA"),
        "version": version,
    }


def test_every_real_file_name_gets_the_original_columns():
    """All 15,697 real names (both SAVEE layouts, TESS's misnamed OA_ file) and synthetic ones."""
    files = [(row["corpus"], row["path"]) for row in read_manifest()]
    files += [("savee", _savee_flat_path(path)) for corpus, path in files if corpus == "savee"]
    files += [("synthetic", "F01/anger_s03_r1.wav"), ("synthetic", "M02/sadness_s11_r12.wav")]
    for corpus, path in files:
        builder_class = CORPORA[corpus]
        info = builder_class.parse_file(path)
        expected = _original_columns(corpus, info.speaker, info.intensity, path)
        assert builder_class.legacy_columns(CorpusFile(path, path, info)) == expected, (corpus, path)


def test_dname_may_be_a_name_a_list_or_none(data_root, info, tmp_path):
    assert set(get_dataset_info(data_root, "emodb")["corpus"]) == {"emodb"}
    assert set(get_dataset_info(data_root, ["tess", "savee"])["corpus"]) == {"tess", "savee"}
    assert len(get_dataset_info(data_root, list(CORPUS_NAMES))) == len(info)
    with pytest.raises(ValueError, match="unknown corpus"):
        get_dataset_info(data_root, "iemocap")


def test_all_corpora_reads_those_found_and_names_the_missing(tmp_path):
    # The original snippet downloads emodb alone, then calls get_dataset_info(dataset_dir).
    partial = tmp_path / "partial"
    build_download("emodb", partial, per_emotion=1, seconds=SECONDS)
    build_download("tess", partial, per_emotion=1, seconds=SECONDS)
    with pytest.warns(UserWarning, match=r"\['cremad', 'ravdess', 'savee', 'shemo'\] not found") as record:
        frame = get_dataset_info(partial)
    assert "download_datasets(" in str(record[0].message)
    assert frame.groupby("corpus").size().to_dict() == {"emodb": 7, "tess": 7}
    # A corpus asked for by name stays an error, and so does finding none at all.
    with pytest.raises(CorpusNotFoundError, match=r"cremad.*download_datasets\(.*dname='cremad'\)"):
        get_dataset_info(partial, "cremad")
    with pytest.raises(CorpusNotFoundError, match=r"cremad.*dname='cremad'"):
        get_dataset_info(partial, ["emodb", "cremad"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusNotFoundError, match="none of the corpora.*download_datasets"):
        get_dataset_info(empty)


def test_original_layout_under_the_kaggle_names_is_found(tmp_path):
    build_download("emodb", tmp_path, per_emotion=1, seconds=SECONDS)
    os.rename(tmp_path / "emodb", tmp_path / "berlin-database-of-emotional-speech-emodb")
    frame = get_dataset_info(tmp_path, "emodb")
    assert len(frame) == 7
    assert frame["filename"].str.contains("berlin-database-of-emotional-speech-emodb").all()


def test_onehot_reproduces_the_original_quirk():
    assert emo2onehot("neutral").tolist() == [0] * 10
    assert emo2onehot("happy").tolist() == [1] + [0] * 9
    assert emo2onehot("calm").tolist() == [0] * 8 + [1, 0]
    vectors = torch.stack([emo2onehot(e) for e in LEGACY_EMOTIONS])
    assert vectors.dtype == torch.uint8
    assert vectors.sum(0).tolist() == [1] * 9 + [0]  # index 9 is never set
    with pytest.raises(ValueError, match="joy"):
        emo2onehot("joy")


def test_labels_onehot_or_integer(info):
    rows = info[info["corpus"] == "emodb"].reset_index(drop=True)
    onehot = SpeechEmotionDataset(rows)
    integer = SpeechEmotionDataset(rows, onehot=False)
    for i, emotion in enumerate(rows["emotion"]):
        assert torch.equal(onehot[i][1], emo2onehot(emotion))
        assert integer[i][1] == LEGACY_EMOTIONS[emotion]
    everything = integer.__getitem__(0, return_all=True)
    assert everything["fs"] == 16000 and everything["filename"] == rows["filename"][0]


def test_resampling_to_fs(info):
    ravdess = info[info["corpus"] == "ravdess"].reset_index(drop=True)
    native, _ = SpeechEmotionDataset(ravdess)[0]
    assert native.shape == (int(48000 * SECONDS),)
    for fs in (16000, 8000):
        resampled, _ = SpeechEmotionDataset(ravdess, fs=fs)[torch.tensor(0)]
        assert resampled.shape == (int(fs * SECONDS),) and resampled.dtype == torch.float32
    tess = info[info["corpus"] == "tess"].reset_index(drop=True)
    clip, _ = SpeechEmotionDataset(tess, fs=16000)[0]
    assert abs(len(clip) - 16000 * tess["duration"][0]) <= 1


def test_transform_is_applied(info):
    dataset = SpeechEmotionDataset(info, fs=16000, transform=lambda x: x * 0 + 1)
    assert torch.all(dataset[0][0] == 1)


def test_dataloader_with_a_worker_and_pad_collate(info):
    # Native rates: 16, 24.4, 44.1 and 48 kHz clips of the same duration differ in length.
    dataset = SpeechEmotionDataset(info, onehot=False)
    pickle.loads(pickle.dumps(dataset))  # what DataLoader workers receive
    loader = DataLoader(dataset, batch_size=8, shuffle=False, num_workers=1, collate_fn=pad_collate)
    seen = 0
    for padded, lengths, labels in loader:
        assert padded.dtype == torch.float32 and padded.shape[1] == int(lengths.max())
        for i, length in enumerate(lengths.tolist()):
            expected, label = dataset[seen + i]
            assert length == len(expected) and label == labels[i].item()
            assert torch.equal(padded[i, :length], expected)
            assert not padded[i, length:].any()
        seen += len(lengths)
    assert seen == len(info)
    assert len(set(info["sample_rate"])) == 4


def test_pad_collate_onehot_labels_and_bad_batches():
    batch = [(torch.ones(3), emo2onehot("anger")), (torch.ones(5), emo2onehot("neutral"))]
    padded, lengths, labels = pad_collate(batch)
    assert padded.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert lengths.tolist() == [3, 5] and labels.shape == (2, 10)
    padded, _, _ = pad_collate([(torch.ones(2, 3), 0), (torch.ones(2, 4), 1)])
    assert padded.shape == (2, 2, 4)
    with pytest.raises(ValueError, match="last axis"):
        pad_collate([(torch.ones(2, 3), 0), (torch.ones(3, 3), 1)])
    with pytest.raises(ValueError, match="empty"):
        pad_collate([])


def test_bad_dataframes_are_named():
    with pytest.raises(ValueError, match="filename"):
        SpeechEmotionDataset(pd.DataFrame({"emotion": ["anger"]}))
    with pytest.raises(ValueError, match="joy"):
        SpeechEmotionDataset(pd.DataFrame({"filename": ["x.wav"], "emotion": ["joy"]}))
    with pytest.raises(ValueError, match="fs"):
        SpeechEmotionDataset(pd.DataFrame({"filename": ["x.wav"], "emotion": ["anger"]}), fs=-1)


def test_synthetic_corpus_files_work_through_the_original_api(tmp_path):
    write_synthetic_corpus(tmp_path, num_speakers=2, utterances=1)
    frame = get_dataset_info(tmp_path, "synthetic")
    assert len(frame) == 2 * 4
    assert set(frame["speaker"]) == {"synthetic/F01", "synthetic/M01"}
    assert set(frame["language"]) == {"english"} and set(frame["version"]) == {"1"}
    waveform, label = SpeechEmotionDataset(frame, fs=8000)[0]
    assert abs(len(waveform) / 8000 - frame["duration"][0]) < 1e-3
    assert np.isfinite(waveform.numpy()).all() and label.sum() == 1


def _write_float_wav(path, samples) -> None:
    import soundfile as sf

    sf.write(path, np.asarray(samples, dtype=np.float32), 16000, subtype="FLOAT")


@pytest.fixture
def emodb_with_bad_files(tmp_path):
    """EMO-DB with one unreadable file, one float file holding NaN, one holding Inf, one unknown code."""
    corpus = build_download("emodb", tmp_path, per_emotion=2, seconds=SECONDS)
    wav = corpus / "wav"
    (wav / "03a01Wa.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(300))
    nan = np.full(800, 0.1)
    nan[100:] = np.nan
    _write_float_wav(wav / "03a01Fa.wav", nan)
    inf = np.full(800, 0.1)
    inf[400] = np.inf
    _write_float_wav(wav / "03a01Nc.wav", inf)
    _write_float_wav(wav / "03a01Xa.wav", np.zeros(800))  # emotion letter X: unknown code
    return tmp_path


def test_broken_files_are_errors_or_skipped_and_reported_when_lenient(emodb_with_bad_files):
    from loaders.audio import BrokenAudioError
    from loaders.discovery import UnknownCodeError

    with pytest.raises(UnknownCodeError, match="03a01Xa.wav"):
        get_dataset_info(emodb_with_bad_files, "emodb")
    good = emodb_with_bad_files / "emodb" / "wav"
    (good / "03a01Xa.wav").rename(emodb_with_bad_files / "03a01Xa.wav")
    with pytest.raises(BrokenAudioError, match=r"03a01(Wa|Fa).wav"):
        get_dataset_info(emodb_with_bad_files, "emodb")
    (emodb_with_bad_files / "03a01Xa.wav").rename(good / "03a01Xa.wav")

    with pytest.warns(UserWarning, match="undecodable skipped: 3") as record:
        frame = get_dataset_info(emodb_with_bad_files, "emodb", lenient=True)
    report = str(record[0].message)
    for name in ("03a01Wa.wav: undecodable audio", "03a01Fa.wav: undecodable audio", "03a01Nc.wav"):
        assert name in report
    assert "03a01Xa.wav: unknown code" in report
    assert len(frame) == 14 - 3  # 7 emotions x 2, less the three broken files; the unknown code is extra
    skipped = {file: reason for _, file, reason in frame.attrs["skipped"]}
    assert set(skipped) == {"wav/03a01Wa.wav", "wav/03a01Fa.wav", "wav/03a01Nc.wav", "wav/03a01Xa.wav"}
    assert "NaN" in skipped["wav/03a01Fa.wav"] and "Inf" in skipped["wav/03a01Nc.wav"]
    # What is left decodes, and every clip is finite.
    for waveform, _ in SpeechEmotionDataset(frame, fs=16000):
        assert torch.isfinite(waveform).all()


def test_read_audio_refuses_non_finite_samples(tmp_path):
    from loaders.audio import BrokenAudioError
    from loaders.legacy import read_audio

    path = tmp_path / "nan.wav"
    samples = np.full(800, 0.25)
    samples[10] = np.nan
    _write_float_wav(path, samples)
    with pytest.raises(BrokenAudioError, match=r"nan.wav: holds 1 non-finite \(NaN\) samples") as info:
        read_audio(path, 16000)
    # The advice is the legacy API's, not the `prepare` command's.
    assert "get_dataset_info(..., lenient=True)" in str(info.value) and "--lenient" not in str(info.value)
    samples[10] = -np.inf
    _write_float_wav(path, samples)
    with pytest.raises(RuntimeError, match=r"nan.wav: holds 1 non-finite \(Inf\)"):  # still a RuntimeError
        read_audio(path)
    samples[10] = 0.25
    _write_float_wav(path, samples)
    assert torch.equal(read_audio(path)[0], torch.full((800,), 0.25))
