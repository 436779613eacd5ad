"""The Hub export: what would be uploaded round-trips through Parquet; licences are enforced; no network."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import DatasetCard, HfApi

from loaders import hub
from loaders.__main__ import main as cli_main
from loaders.fixtures import build_download
from loaders.loading import load_corpus

METADATA = [
    "label",
    "emotion",
    "corpus",
    "speaker",
    "gender",
    "language",
    "text",
    "intensity",
    "file",
    "duration",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    build_download("emodb", root, per_emotion=2, seconds=0.05)
    build_download("savee", root, per_emotion=1, seconds=0.05)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def emodb(data_root, cache_dir) -> datasets.Dataset:
    return load_corpus("emodb", data_root, cache_dir=cache_dir, num_proc=1)


def assert_same_rows(loaded: datasets.Dataset, prepared: datasets.Dataset) -> None:
    assert loaded.features == prepared.features
    assert len(loaded) == len(prepared)
    for column in METADATA:
        assert loaded[column][:] == prepared[column][:], column
    for i in range(len(prepared)):
        got, want = loaded[i]["audio"], prepared[i]["audio"]
        assert got["sampling_rate"] == want["sampling_rate"] == 16000
        np.testing.assert_array_equal(got["array"], want["array"])


def test_export_round_trips_through_parquet(data_root, cache_dir, emodb, tmp_path):
    names = hub.export_corpora(data_root, tmp_path / "out", ["emodb"], cache_dir=cache_dir, num_proc=1)
    assert names == ["emodb"]
    shards = sorted((tmp_path / "out" / "emodb").glob("*.parquet"))
    assert [p.name for p in shards] == ["train-00000-of-00001.parquet"]
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in shards], split="train", cache_dir=str(tmp_path / "hf")
    )
    assert_same_rows(loaded, emodb)


def test_the_folder_loads_by_config_name_as_from_the_hub(data_root, cache_dir, emodb, tmp_path):
    hub.export_corpora(data_root, tmp_path / "repo", ["emodb"], cache_dir=cache_dir, num_proc=1)
    loaded = datasets.load_dataset(
        str(tmp_path / "repo"), "emodb", split="train", cache_dir=str(tmp_path / "hf")
    )
    assert_same_rows(loaded, emodb)


def test_audio_is_embedded_not_referenced(data_root, cache_dir, tmp_path):
    """The shards must not point at files on this machine: a native-rate load (audio by path) is embedded."""
    native = load_corpus("emodb", data_root, sampling_rate=None, cache_dir=cache_dir, num_proc=1)
    hub.write_parquet_shards(native, tmp_path / "native")
    table = datasets.load_dataset(
        "parquet",
        data_files=str(tmp_path / "native" / "*.parquet"),
        split="train",
        cache_dir=str(tmp_path / "hf"),
    ).data
    audio = table.column("audio").to_pylist()
    assert all(item["bytes"] for item in audio)
    assert all(not item["path"] or not Path(item["path"]).is_absolute() for item in audio)


def test_shards_split_a_large_corpus_and_keep_row_order(emodb, tmp_path):
    max_bytes = emodb._estimate_nbytes() // 4 + 1
    paths = hub.write_parquet_shards(emodb, tmp_path / "emodb", max_shard_bytes=max_bytes)
    assert [p.name for p in paths] == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(p) for p in paths], split="train", cache_dir=str(tmp_path / "hf")
    )
    assert_same_rows(loaded, emodb)
    hub.write_parquet_shards(emodb, tmp_path / "emodb")  # a re-export removes the old shards
    assert [p.name for p in (tmp_path / "emodb").glob("*.parquet")] == ["train-00000-of-00001.parquet"]


def test_restricted_licence_is_refused_and_nothing_written(data_root, cache_dir, tmp_path):
    with pytest.raises(
        hub.RestrictedLicenseError, match=r"savee \(other: free for research use.*allow_restricted"
    ):
        hub.export_corpora(data_root, tmp_path / "out", ["emodb", "savee"], cache_dir=cache_dir, num_proc=1)
    assert not (tmp_path / "out").exists()


def test_restricted_licence_allowed_explicitly(data_root, cache_dir, tmp_path):
    names = hub.export_corpora(
        data_root,
        tmp_path / "out",
        ["emodb", "savee"],
        allow_restricted=True,
        cache_dir=cache_dir,
        num_proc=1,
    )
    assert names == ["emodb", "savee"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert "redistribution restricted" in card
    savee = datasets.load_dataset(
        str(tmp_path / "out"), "savee", split="train", cache_dir=str(tmp_path / "hf")
    )
    assert set(savee["corpus"]) == {"savee"} and len(savee) == 7  # one file per emotion


def test_default_corpora_leave_restricted_ones_out_with_a_warning(data_root, caplog):
    with caplog.at_level(logging.WARNING, logger="loaders.hub"):
        names = hub.choose_corpora(data_root, None, allow_restricted=False)
    assert names == ["emodb"]
    assert "savee" in caplog.text and "no redistribution" in caplog.text
    assert hub.choose_corpora(data_root, None, allow_restricted=True) == ["emodb", "savee"]


def test_card_states_licence_citation_counts_and_schema(emodb, tmp_path):
    hub.export_datasets({"emodb": emodb}, tmp_path)
    card = DatasetCard.load(tmp_path / "README.md")
    assert card.data.license == "cc-by-4.0"
    assert card.data.language == ["de"]
    assert card.data.configs == [
        {"config_name": "emodb", "data_files": [{"split": "train", "path": "emodb/train-*.parquet"}]}
    ]
    text = card.text
    assert "http://emodb.bilderbar.info/" in text
    assert "burkhardt2005emodb" in text
    assert "| emodb | de | cc-by-4.0 | 14 |" in text  # 7 emotions x 2 files
    assert "| anxiety | 2 |" in text
    assert "| `audio` | Audio(sampling_rate=16000) |" in text
    assert "| `speaker` | string |" in text
    assert "kaggle.com/datasets/piyushagni5/berlin-database-of-emotional-speech-emodb" in text


def test_push_uploads_the_exported_folder_privately(data_root, cache_dir, emodb, monkeypatch, tmp_path):
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        calls["upload"] = kwargs
        shutil.copytree(kwargs["folder_path"], tmp_path / "uploaded")  # what would have gone to the Hub

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = hub.push_corpora(data_root, "me/ser", ["emodb"], cache_dir=cache_dir, num_proc=1)
    assert url == "https://huggingface.co/datasets/me/ser"
    assert calls["create"] == ("me/ser", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert calls["upload"]["repo_type"] == "dataset" and calls["upload"]["delete_patterns"] == [
        "emodb/*.parquet"
    ]
    loaded = datasets.load_dataset(
        str(tmp_path / "uploaded"), "emodb", split="train", cache_dir=str(tmp_path / "hf")
    )
    assert_same_rows(loaded, emodb)


def test_cli_push_public_and_refusal(data_root, cache_dir, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_saved_by_login")
    monkeypatch.setattr(
        hub, "push_corpora", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs) or "url"
    )
    assert cli_main(["push", str(data_root), "--repo_id", "me/ser", "--public", "--corpora", "emodb"]) == 0
    assert seen["args"][1:] == ("me/ser", ["emodb"]) and seen["kwargs"]["private"] is False
    monkeypatch.undo()
    code = cli_main(
        ["push", str(data_root), "--repo_id", "me/ser", "--corpora", "savee", "--cache_dir", str(cache_dir)]
    )
    assert code != 0
    assert "savee" in capsys.readouterr().err


def test_cli_push_without_a_token_says_how_to_log_in_before_preparing(data_root, monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise AssertionError("prepared or uploaded without a token")

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no HF_TOKEN, nothing saved by login
    monkeypatch.setattr(hub, "push_corpora", forbidden)
    monkeypatch.setattr(hub, "export_corpora", forbidden)
    monkeypatch.setattr(HfApi, "create_repo", forbidden)
    assert cli_main(["push", str(data_root), "--repo_id", "me/ser", "--corpora", "emodb"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: push --repo_id me/ser: no Hugging Face Hub token")
    assert "hf auth login" in lines[0] and "huggingface-cli login" in lines[0] and "HF_TOKEN" in lines[0]

    seen = {}
    monkeypatch.setattr(hub, "push_corpora", lambda *args, **kwargs: seen.update(kwargs) or "url")
    assert (
        cli_main(["push", str(data_root), "--repo_id", "me/ser", "--corpora", "emodb", "--token", "hf_x"])
        == 0
    )
    assert seen["token"] == "hf_x"
