"""The Hub export: what would be uploaded round-trips through Parquet; licences are enforced; no network."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import datasets
import httpx
import huggingface_hub
import numpy as np
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub import CommitInfo, CommitOperationDelete, DatasetCard, HfApi, RepoUrl
from huggingface_hub.errors import RepositoryNotFoundError

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


class FakeHub:
    """The Hub's side of `Dataset.push_to_hub` and of the card update, kept in a local folder.

    Only the network calls are replaced (HfApi's repo_info / create_repo / preupload_lfs_files /
    create_commit / hf_hub_download, and the HfFileSystem datasets reads the old card and shards through),
    so datasets' own sharding, audio embedding and ``configs:`` merging run for real.
    """

    def __init__(self, root: Path):
        self.root = root  # <root>/datasets/<repo_id>/ is a repository's main branch
        self.created: dict[str, dict] = {}
        self.staged: dict[str, bytes] = {}  # preuploaded LFS files, by path in repo, until committed
        self.commits: list[str] = []

    def folder(self, repo_id: str) -> Path:
        return self.root / "datasets" / repo_id

    def install(self, monkeypatch) -> None:
        fake = self

        def repo_info(self, repo_id, *, repo_type=None, revision=None, **kwargs):
            if repo_id not in fake.created:
                request = httpx.Request("GET", f"https://huggingface.co/api/datasets/{repo_id}")
                raise RepositoryNotFoundError("not found", response=httpx.Response(404, request=request))
            return SimpleNamespace(id=repo_id, sha="main")  # "main": paths resolve without an @revision

        def create_repo(self, repo_id, **kwargs):
            fake.created[repo_id] = kwargs
            fake.folder(repo_id).mkdir(parents=True, exist_ok=True)
            return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

        def preupload_lfs_files(self, repo_id, additions, **kwargs):
            for addition in additions:  # datasets deletes the temporary shard once preuploaded
                fake.staged[addition.path_in_repo] = Path(addition.path_or_fileobj).read_bytes()

        def create_commit(self, repo_id, operations, *, commit_message, **kwargs):
            for operation in operations:
                path = fake.folder(repo_id) / operation.path_in_repo
                if isinstance(operation, CommitOperationDelete):
                    path.unlink()
                    continue
                if operation.path_in_repo in fake.staged:
                    content = fake.staged.pop(operation.path_in_repo)
                else:
                    with operation.as_file() as file:
                        content = file.read()
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            fake.commits.append(commit_message)
            url = f"https://huggingface.co/datasets/{repo_id}"
            return CommitInfo(
                commit_url=f"{url}/commit/{len(fake.commits):040x}",
                commit_message=commit_message,
                commit_description="",
                oid=f"{len(fake.commits):040x}",
            )

        def hf_hub_download(self, repo_id, filename, *, repo_type=None, **kwargs):
            path = fake.folder(repo_id) / filename
            assert path.is_file(), f"{filename} was not pushed"
            return str(path)

        for name, function in [
            ("repo_info", repo_info),
            ("create_repo", create_repo),
            ("preupload_lfs_files", preupload_lfs_files),
            ("create_commit", create_commit),
            ("hf_hub_download", hf_hub_download),
        ]:
            monkeypatch.setattr(HfApi, name, function)
        local = DirFileSystem(str(fake.root), LocalFileSystem())
        monkeypatch.setattr(datasets.arrow_dataset, "HfFileSystem", lambda **kwargs: local)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path) -> FakeHub:
    fake = FakeHub(tmp_path / "hub")
    fake.install(monkeypatch)
    return fake


def test_push_goes_through_push_to_hub_privately(
    data_root, cache_dir, emodb, fake_hub, monkeypatch, tmp_path
):
    pushes = []
    real_push = datasets.Dataset.push_to_hub

    def recording_push(self, repo_id, **kwargs):
        pushes.append((repo_id, kwargs))
        return real_push(self, repo_id, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "push_to_hub", recording_push)
    url = hub.push_corpora(data_root, "me/ser", ["emodb"], cache_dir=cache_dir, num_proc=1)
    assert url == "https://huggingface.co/datasets/me/ser"
    assert [(repo_id, k["config_name"], k["split"], k["private"]) for repo_id, k in pushes] == [
        ("me/ser", "emodb", "train", True)
    ]
    assert fake_hub.created["me/ser"]["private"] is True
    repo = fake_hub.folder("me/ser")
    assert sorted(p.name for p in (repo / "emodb").iterdir()) == ["train-00000-of-00001.parquet"]
    loaded = datasets.load_dataset(str(repo), "emodb", split="train", cache_dir=str(tmp_path / "hf"))
    assert_same_rows(loaded, emodb)
    audio = loaded.with_format("arrow")["audio"].to_pylist()
    assert all(item["bytes"] for item in audio)  # embedded, not paths on this machine
    card = DatasetCard.load(repo / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.language == ["de"]
    assert "burkhardt2005emodb" in card.text and "| emodb | de | cc-by-4.0 | 14 |" in card.text


def test_separate_pushes_keep_every_config_in_the_card(data_root, cache_dir, emodb, fake_hub, tmp_path):
    """A second push of another corpus adds its config: the first one stays loadable, listed and described."""
    savee = load_corpus("savee", data_root, cache_dir=cache_dir, num_proc=1)
    hub.push_datasets({"emodb": emodb}, "me/ser")
    with pytest.raises(hub.RestrictedLicenseError):
        hub.push_datasets({"savee": savee}, "me/ser")
    hub.push_datasets({"savee": savee}, "me/ser", allow_restricted=True)
    repo = fake_hub.folder("me/ser")
    card = DatasetCard.load(repo / "README.md")
    assert [config["config_name"] for config in card.data.configs] == ["emodb", "savee"]
    assert card.data.license == "other" and card.data.language == ["de", "en"]
    assert "| emodb | de | cc-by-4.0 | 14 |" in card.text and "| savee | en |" in card.text
    assert "burkhardt2005emodb" in card.text and "redistribution restricted" in card.text
    assert "| anxiety | 2 |  |" in card.text  # the first push's counts, read back from the card
    for name, prepared in [("emodb", emodb), ("savee", savee)]:
        loaded = datasets.load_dataset(str(repo), name, split="train", cache_dir=str(tmp_path / "hf"))
        assert_same_rows(loaded, prepared)

    hub.push_datasets({"emodb": emodb.select(range(7))}, "me/ser")  # a re-push replaces that config's data
    card = DatasetCard.load(repo / "README.md")
    assert [config["config_name"] for config in card.data.configs] == ["emodb", "savee"]
    assert "| emodb | de | cc-by-4.0 | 7 |" in card.text and "| savee | en |" in card.text
    loaded = datasets.load_dataset(str(repo), "emodb", split="train", cache_dir=str(tmp_path / "hf2"))
    assert len(loaded) == 7


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
