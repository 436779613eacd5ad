"""Downloads: credentials, completeness checks, atomic replacement. Only the network call itself is faked."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from loaders import download
from loaders.__main__ import main as cli_main
from loaders.download import DownloadError, download_corpora, find_kaggle_credentials
from loaders.fixtures import build_download
from loaders.registry import CORPORA

EMODB_SLUG = "piyushagni5/berlin-database-of-emotional-speech-emodb"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real credentials, home or working directory leak into a test."""
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr("builtins.input", _no_prompt)
    return home


def _no_prompt(*args):
    raise AssertionError("prompted for input")


def write_json(path: Path, username: str, key: str = "k") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"username": username, "key": key}))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def emodb_download(tmp_path_factory) -> Path:
    """A complete fake EMO-DB download (all 535 names, a few ms of audio each, with readmes etc.)."""
    return build_download("emodb", tmp_path_factory.mktemp("kaggle"))


def fake_kaggle(source: Path, calls: list | None = None):
    """Stands in for the transfer: "unzips" `source` into the target folder."""

    def transfer(slug, target, credentials):
        if calls is not None:
            calls.append((slug, Path(target), credentials))
        shutil.copytree(source, target, dirs_exist_ok=True)

    return transfer


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ---- credentials ------------------------------------------------------------------------------------


def test_credentials_lookup_order(isolated, monkeypatch, tmp_path):
    home, cwd = isolated, Path.cwd()
    write_json(cwd / "kaggle.json", "from-cwd")
    assert find_kaggle_credentials().username == "from-cwd"
    write_json(home / ".config" / "kaggle" / "kaggle.json", "from-xdg")
    assert find_kaggle_credentials().username == "from-xdg"
    write_json(home / ".kaggle" / "kaggle.json", "from-home")
    assert find_kaggle_credentials().username == "from-home"
    monkeypatch.setenv(
        "KAGGLE_CONFIG_DIR", str(write_json(tmp_path / "cfg" / "kaggle.json", "from-config-dir").parent)
    )
    found = find_kaggle_credentials()
    assert (found.username, found.source) == ("from-config-dir", str(tmp_path / "cfg" / "kaggle.json"))
    (home / ".kaggle" / "access_token").write_text("saved-token\n")
    assert find_kaggle_credentials().environment() == {"KAGGLE_API_TOKEN": "saved-token"}
    monkeypatch.setenv("KAGGLE_USERNAME", "from-env")
    monkeypatch.setenv("KAGGLE_KEY", "env-key")
    found = find_kaggle_credentials()
    assert (found.username, found.key, found.source) == ("from-env", "env-key", "environment")
    assert found.environment() == {"KAGGLE_USERNAME": "from-env", "KAGGLE_KEY": "env-key"}
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok")
    assert find_kaggle_credentials().environment() == {"KAGGLE_API_TOKEN": "tok"}


def test_missing_credentials_say_the_three_ways_and_never_prompt_without_a_terminal():
    with pytest.raises(DownloadError) as error:
        find_kaggle_credentials()  # pytest's stdin is not a terminal; input() would fail the test
    message = str(error.value)
    assert "~/.kaggle/" in message and "current directory" in message and "KAGGLE_USERNAME" in message


def test_prompt_when_interactive(monkeypatch):
    answers = iter(["alice"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    monkeypatch.setattr(download.getpass, "getpass", lambda prompt: "secret")
    found = find_kaggle_credentials(interactive=True)
    assert (found.username, found.key, found.source) == ("alice", "secret", "prompt")


def test_broken_kaggle_json_is_named():
    (Path.cwd() / "kaggle.json").write_text("{not json")
    with pytest.raises(DownloadError, match=r"kaggle\.json is not a valid kaggle\.json"):
        find_kaggle_credentials()


def test_world_readable_kaggle_json_warns(isolated, caplog):
    path = write_json(isolated / ".kaggle" / "kaggle.json", "bob")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="loaders.download"):
        find_kaggle_credentials()
    assert "chmod 600" in caplog.text


# ---- Kaggle downloads ---------------------------------------------------------------------------------


def test_download_checks_and_renames(emodb_download, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    calls = []
    monkeypatch.setattr(download, "_kaggle_download", fake_kaggle(emodb_download, calls))
    root = tmp_path / "data"
    report = download_corpora(root, ["emodb"])
    assert report == {"emodb": {"status": "downloaded", "path": str(root / "emodb"), "files": 535}}
    assert leftovers(root) == ["emodb"]
    slug, target, credentials = calls[0]
    assert slug == EMODB_SLUG and target == root / ".emodb.partial" and credentials.username == "u"


def test_kaggle_client_gets_the_credentials(emodb_download, monkeypatch, tmp_path):
    """The real `_kaggle_download`, logging in with the Kaggle client; only its transfer call is replaced."""
    from kaggle.api.kaggle_api_extended import KaggleApi

    seen = {}

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False, licenses=()):
        seen.update(user=self.config_values.get("username"), key=self.config_values.get("key"), unzip=unzip)
        shutil.copytree(emodb_download, path, dirs_exist_ok=True)

    monkeypatch.setattr(KaggleApi, "dataset_download_files", dataset_download_files)
    write_json(Path.cwd() / "kaggle.json", "carol", "carols-key")
    report = download_corpora(tmp_path / "data", ["emodb"])
    assert report["emodb"]["status"] == "downloaded"
    assert seen == {"user": "carol", "key": "carols-key", "unzip": True}
    assert "KAGGLE_USERNAME" not in download.os.environ  # handed over for the login only


def test_complete_corpus_is_skipped(emodb_download, monkeypatch, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(emodb_download, root / "emodb")
    monkeypatch.setattr(download, "_kaggle_download", _no_transfer)
    report = download_corpora(root, ["emodb"])  # no credentials needed either
    assert report["emodb"] == {"status": "present", "path": str(root / "emodb"), "files": 535}


def test_original_slug_named_folder_counts_as_present(emodb_download, monkeypatch, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(emodb_download, root / "berlin-database-of-emotional-speech-emodb")
    monkeypatch.setattr(download, "_kaggle_download", _no_transfer)
    assert download_corpora(root, ["emodb"])["emodb"]["status"] == "present"


def _no_transfer(*args):
    raise AssertionError("downloaded a complete corpus again")


def test_incomplete_folder_needs_force(emodb_download, monkeypatch, tmp_path):
    root = tmp_path / "data"
    build_download("emodb", root, per_emotion=1)
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setattr(download, "_kaggle_download", fake_kaggle(emodb_download))
    with pytest.raises(DownloadError, match=r"holds 7 of the 535 emodb files.*--force"):
        download_corpora(root, ["emodb"])
    report = download_corpora(root, ["emodb"], force=True)
    assert report["emodb"]["files"] == 535
    assert leftovers(root) == ["emodb"]


def test_wrong_file_count_leaves_nothing_behind(monkeypatch, tmp_path):
    partial_download = build_download("emodb", tmp_path / "short", per_emotion=2)
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setattr(download, "_kaggle_download", fake_kaggle(partial_download))
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="holds 14 corpus files, expected 535"):
        download_corpora(root, ["emodb"])
    assert leftovers(root) == []


@pytest.mark.parametrize("failure", [ConnectionError("connection reset"), KeyboardInterrupt()])
def test_broken_transfer_leaves_nothing_behind(emodb_download, monkeypatch, tmp_path, failure):
    def transfer(slug, target, credentials):
        shutil.copytree(emodb_download / "wav", Path(target) / "wav")  # half the work done, then it fails
        raise failure

    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setattr(download, "_kaggle_download", transfer)
    root = tmp_path / "data"
    with pytest.raises(DownloadError if isinstance(failure, Exception) else KeyboardInterrupt) as error:
        download_corpora(root, ["emodb"])
    if isinstance(failure, Exception):
        assert "connection reset" in str(error.value) and "nothing was kept" in str(error.value)
    assert leftovers(root) == []


def test_forced_download_failing_keeps_the_old_corpus(emodb_download, monkeypatch, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(emodb_download, root / "emodb")
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setattr(
        download, "_kaggle_download", fake_kaggle(build_download("emodb", tmp_path / "s", per_emotion=1))
    )
    with pytest.raises(DownloadError):
        download_corpora(root, ["emodb"], force=True)
    assert leftovers(root) == ["emodb"]
    assert download_corpora(root, ["emodb"])["emodb"]["status"] == "present"


def test_missing_credentials_fail_before_any_transfer(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "_kaggle_download", _no_transfer)
    with pytest.raises(DownloadError, match="no Kaggle credentials"):
        download_corpora(tmp_path / "data", ["emodb"])


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"source 'http' is unknown.*\['kaggle', 'git'\]"):
        download_corpora("x", ["emodb"], source="http")
    with pytest.raises(ValueError, match=r"--source git serves only \['cremad'\], not \['emodb'\]"):
        download_corpora("x", ["emodb"], source="git")
    with pytest.raises(ValueError, match="iemocap.*valid corpora: cremad, emodb"):
        download_corpora("x", ["iemocap"])
    with pytest.raises(ValueError, match="choose at least one corpus"):  # not a silent no-op
        download_corpora("x", [])


def test_synthetic_corpus_needs_no_download(tmp_path):
    if "synthetic" not in CORPORA:
        pytest.skip("the synthetic corpus is not registered in this tree")
    assert download_corpora(tmp_path, ["synthetic"])["synthetic"]["status"] == "generated"


# ---- git-lfs (CREMA-D) --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cremad_files(tmp_path_factory) -> Path:
    # 18 files: the git flow is under test here; the count check is tested on the full EMO-DB above.
    return build_download("cremad", tmp_path_factory.mktemp("cremad"), quirks=False, per_emotion=3)


def fake_git(cremad_files: Path, lfs_works: bool, log: list):
    """Stands in for git's network commands: a clone holds pointer stubs; `git lfs pull` fills in audio."""

    def run_git(args, cwd=None, env=None):
        log.append((args, env))
        if args[0] == "clone":
            clone = Path(args[-1])
            for name in (
                "AudioWAV/1001_DFA_ANG_XX.wav",
                "AudioWAV/1001_DFA_DIS_XX.wav",
                "VideoFlash/1001.flv",
            ):
                (clone / name).parent.mkdir(parents=True, exist_ok=True)
                (clone / name).write_text(
                    "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"
                )
        elif args[:2] == ["lfs", "pull"] and lfs_works:
            shutil.rmtree(Path(cwd) / "AudioWAV")
            shutil.copytree(cremad_files / "AudioWAV", Path(cwd) / "AudioWAV")

    return run_git


def test_git_source_keeps_the_audio_folder_only(cremad_files, monkeypatch, tmp_path):
    monkeypatch.setattr(CORPORA["cremad"], "EXPECTED_FILES", 18)
    log = []
    monkeypatch.setattr(download, "_require_git_lfs", lambda: None)
    monkeypatch.setattr(download, "_run_git", fake_git(cremad_files, True, log))
    root = tmp_path / "data"
    report = download_corpora(root, source="git")
    assert report == {"cremad": {"status": "downloaded", "path": str(root / "cremad"), "files": 18}}
    assert leftovers(root / "cremad") == ["AudioWAV"]
    assert log[0][1] == {"GIT_LFS_SKIP_SMUDGE": "1"}
    assert log[1][0] == ["lfs", "pull", "--include", "AudioWAV/**"]


def test_git_lfs_stubs_are_detected_and_removed(cremad_files, monkeypatch, tmp_path):
    monkeypatch.setattr(download, "_require_git_lfs", lambda: None)
    monkeypatch.setattr(download, "_run_git", fake_git(cremad_files, False, []))
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="git-lfs pointer stubs"):
        download_corpora(root, ["cremad"], source="git")
    assert leftovers(root) == []


def test_missing_git_lfs_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(download.shutil, "which", lambda name: "/usr/bin/git")
    monkeypatch.setattr(
        download.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "not a git command")
    )
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"git-lfs is not installed.*--source kaggle"):
        download_corpora(root, ["cremad"], source="git")
    assert leftovers(root) == []


# ---- command line -------------------------------------------------------------------------------------


def test_cli_download(emodb_download, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KAGGLE_USERNAME", "u")
    monkeypatch.setenv("KAGGLE_KEY", "k")
    monkeypatch.setattr(download, "_kaggle_download", fake_kaggle(emodb_download))
    assert cli_main(["download", str(tmp_path / "data"), "--corpora", "emodb"]) == 0
    out = capsys.readouterr().out
    assert "emodb" in out and "downloaded" in out and "535 files" in out
    assert cli_main(["download", str(tmp_path / "data"), "--corpora", "emodb"]) == 0
    assert "present" in capsys.readouterr().out
    monkeypatch.delenv("KAGGLE_USERNAME")
    assert cli_main(["download", str(tmp_path / "data2"), "--corpora", "emodb"]) != 0
    assert "no Kaggle credentials" in capsys.readouterr().err
