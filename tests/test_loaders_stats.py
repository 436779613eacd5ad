"""`python -m loaders stats` on full-size fake downloads reproduces the corpora README's table exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loaders import fixtures
from loaders.__main__ import main
from loaders.registry import CORPUS_NAMES
from loaders.stats import collect_stats, format_stats

# The table in shared/corpora/README.md (the project's origin document), typed in by hand.
README_TABLE = {
    "anger": (1271, 127, 192, 60, 1059, 400),
    "anxiety": (0, 69, 0, 0, 0, 0),
    "bored": (0, 81, 0, 0, 0, 0),
    "calm": (0, 0, 192, 0, 0, 0),
    "disgust": (1271, 46, 192, 60, 0, 400),
    "fear": (1271, 0, 192, 60, 38, 400),
    "happy": (1271, 71, 192, 60, 201, 400),
    "neutral": (1087, 79, 96, 120, 1028, 400),
    "sadness": (1271, 62, 192, 60, 449, 400),
    "surprise": (0, 0, 192, 60, 225, 400),
}
README_COUNTS = {
    corpus: {emotion: row[i] for emotion, row in README_TABLE.items() if row[i]}
    for i, corpus in enumerate(CORPUS_NAMES)
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """All six downloads, every file name, tiny audio, with the clutter real downloads hold."""
    root = tmp_path_factory.mktemp("data")
    manifest = fixtures.read_manifest()
    for name in CORPUS_NAMES:
        extra = "ejlok1/toronto-emotional-speech-set-tess/versions/1" if name == "tess" else ""
        fixtures.build_download(name, root, manifest=manifest, extra_levels=extra)
    # The original project named the EMO-DB folder after the Kaggle slug.
    (root / "emodb").rename(root / "berlin-database-of-emotional-speech-emodb")
    return root


def test_stats_json_reproduces_the_readme_table(data_root, capsys):
    assert main(["stats", str(data_root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == README_COUNTS
    corpora = report["corpora"]
    assert {n: corpora[n]["files"] for n in CORPUS_NAMES} == {
        "cremad": 7442,
        "emodb": 535,
        "ravdess": 1440,
        "savee": 480,
        "shemo": 3000,
        "tess": 2800,
    }
    assert {n: corpora[n]["speakers"] for n in CORPUS_NAMES} == {
        "cremad": 91,
        "emodb": 10,
        "ravdess": 24,
        "savee": 4,
        "shemo": 87,
        "tess": 2,
    }
    assert corpora["cremad"]["speakers_by_gender"] == {"female": 43, "male": 48}
    assert corpora["shemo"]["speakers_by_gender"] == {"female": 31, "male": 56}
    # Duplicate trees counted once, and reported.
    assert {n: corpora[n]["duplicates"] for n in CORPUS_NAMES} == {
        "cremad": 0,
        "emodb": 0,
        "ravdess": 1440,
        "savee": 480,
        "shemo": 0,
        "tess": 2800,
    }
    assert corpora["shemo"]["sample_rates"] == {"22050": 121, "44100": 2879}
    assert corpora["tess"]["sample_rates"] == {"24414": 2799, "96000": 1}
    for name in CORPUS_NAMES:
        assert corpora[name]["skipped_by_reason"] == {
            "OS metadata (.DS_Store)": 2,
            "not audio (readme, licence or other file)": 2,
            "macOS metadata (__MACOSX/)": 2,
            "macOS AppleDouble metadata (._*)": 1,
            "empty folder": 1,
        }
    assert report["missing"] == {}


def test_stats_table_has_totals_and_per_corpus_lines(data_root):
    text = format_stats(collect_stats(data_root))
    assert "| anger | 1271 | 127 | 192 | 60 | 1059 | 400 | 3109 |" in text
    assert "| total | 7442 | 535 | 1440 | 480 | 3000 | 2800 | 15697 |" in text
    assert "native rates: 22050 Hz: 121, 44100 Hz: 2879" in text
    assert "duplicate copies ignored: 2800; skipped: 8" in text


def test_stats_cli_runs_as_a_module(data_root):
    result = subprocess.run(
        [sys.executable, "-m", "loaders", "stats", str(data_root), "--corpora", "savee", "--json"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert json.loads(result.stdout)["counts"] == {"savee": README_COUNTS["savee"]}


def test_stats_hours_and_missing_corpora(tmp_path):
    fixtures.build_download("emodb", tmp_path, full_length=True, quirks=False)
    stats = collect_stats(tmp_path)
    assert stats.corpora["emodb"].seconds / 3600 == pytest.approx(0.4131, abs=1e-3)  # 25 min
    assert set(stats.missing) == {"cremad", "ravdess", "savee", "shemo", "tess"}
    assert "download" in stats.missing["cremad"]
    (tmp_path / "tess").mkdir()  # an empty folder (a download that failed) is a corpus not there
    stats = collect_stats(tmp_path)
    assert list(stats.corpora) == ["emodb"] and "tess" in stats.missing
    assert "is empty" in stats.missing["tess"] and "--corpora tess" in stats.missing["tess"]


def test_stats_broken_audio_is_an_error_or_skipped_when_lenient(tmp_path, capsys):
    corpus_dir = fixtures.build_download("savee", tmp_path, per_emotion=2, quirks=False)
    broken = corpus_dir / "AudioData" / "DC" / "a01.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(2000))
    assert main(["stats", str(tmp_path), "--corpora", "savee"]) == 2
    assert "a01.wav" in capsys.readouterr().err
    assert main(["stats", str(tmp_path), "--corpora", "savee", "--lenient", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["corpora"]["savee"]
    assert report["files"] == 13
    assert report["skipped_by_reason"] == {"undecodable audio": 1}


def test_stats_errors(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["stats", str(tmp_path), "--corpora", "iemocap"]) == 2
    assert "valid corpora" in capsys.readouterr().err
    assert main(["stats", str(tmp_path), "--corpora", "tess"]) == 2
    assert "python -m loaders download" in capsys.readouterr().err
