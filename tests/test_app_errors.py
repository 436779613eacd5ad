"""The demo (app.py) without a browser: what it says for a busy port, a missing model, non-audio uploads."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import soundfile as sf

import app
from inference.classify import EmotionClassifier, PredictOptions, predict_files
from inference.outputs import timeline_records


@pytest.fixture(scope="module")
def classifier(make_tiny_cnn):
    from modeling.auto import feature_extractor_for

    model = make_tiny_cnn()
    return EmotionClassifier(model, feature_extractor_for(model))


@pytest.fixture
def model_dir(tmp_path, make_tiny_cnn):
    from modeling import save_for_hub

    save_for_hub(make_tiny_cnn(), None, tmp_path / "cnn")
    return str(tmp_path / "cnn")


@pytest.fixture
def no_launch(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the app was built before the arguments were checked")

    monkeypatch.setattr(app, "build_app", forbidden)
    monkeypatch.setattr(app, "demo", None)


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error: "), captured
    return lines[0]


def test_busy_port_is_one_line_naming_the_port_option(model_dir, no_launch, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            app.main([model_dir, "--port", str(port)])
    assert exit_info.value.code == 2
    line = one_error_line(capsys)
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in line
    assert f"--port {port + 1}" in line and "GRADIO_SERVER_PORT" not in line


def test_bad_port_and_missing_model_are_one_line_before_launch(tmp_path, no_launch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main([str(tmp_path / "no-such-model"), "--port", "0"])
    assert exit_info.value.code == 2
    assert "error: --port 0: not a TCP port" in one_error_line(capsys)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(SystemExit):
        app.main([str(tmp_path / "no-such-model"), "--port", str(port)])
    assert f"model {tmp_path / 'no-such-model'}: no such folder" in one_error_line(capsys)


@pytest.mark.parametrize(
    "name, content", [("notes.txt", b"meeting notes, not audio\n" * 4), ("song.mp3", b"")]
)
def test_non_audio_upload_says_what_is_wrong(tmp_path, classifier, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    scores, status, table, plot = app.analyze(classifier, str(path), PredictOptions())
    assert scores == {} and table.empty and plot.empty
    assert status.startswith(f"**Could not classify `{name}`:**") and str(tmp_path) not in status
    assert ("not a readable audio file" if content else "empty") in status
    if content:
        assert "Upload a recording: WAV, FLAC, MP3" in status  # what to do instead


def test_an_unexpected_failure_is_shown_not_raised(tmp_path, classifier, monkeypatch):
    """An exception from the model would leave the page blank (Gradio shows only a bare 'Error')."""
    path = tmp_path / "clip.wav"
    sf.write(path, 0.3 * np.sin(np.arange(16000) / 5).astype(np.float32), 16000)

    def broken(waveforms):
        raise IndexError("index 7 is out of bounds for dimension 0 with size 4")

    monkeypatch.setattr(classifier, "probabilities", broken)
    scores, status, _, _ = app.analyze(classifier, str(path), PredictOptions())
    assert scores == {}
    assert (
        status == "**Could not classify `clip.wav`:** IndexError: index 7 is out of bounds for dimension 0 "
        "with size 4"
    )


def test_the_page_says_what_to_upload_before_any_result(classifier):
    demo = app.build_app(classifier)
    markdown = [c for c in demo.config["components"] if c["props"].get("elem_id") == "status-output"]
    assert len(markdown) == 1 and "WAV, FLAC, MP3" in markdown[0]["props"]["value"]


def test_the_page_shows_the_timeline_the_command_line_writes(tmp_path, classifier):
    """Table, plot and scores on the page are the rows of `--timeline` and the file's top-k, rounded."""
    rate, rng = 16000, np.random.default_rng(3)
    audio = np.zeros(6 * rate, dtype=np.float32)
    for start in (0.5, 4.0):
        t = np.arange(rate) / rate
        burst = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)
        audio[round(start * rate) : round(start * rate) + rate] = burst
    path = tmp_path / "two-bursts.wav"
    sf.write(path, audio, rate)
    options = PredictOptions()
    options.vad.max_segment = 2.0
    scores, status, table, plot = app.analyze(classifier, str(path), options)
    result = next(predict_files(classifier, [(str(path), None)], options))
    labels = classifier.labels
    rows = timeline_records([result], labels)
    assert len(rows) == 2 and "2 segment(s) from speech segments" in status
    assert table.to_dict("records") == [
        {
            "start": round(r["start"], 2),
            "end": round(r["end"], 2),
            "emotion": r["emotion"],
            "score": round(r["score"], 3),
        }
        for r in rows
    ]
    assert plot["probability"].tolist() == [r[f"prob_{label}"] for r in rows for label in labels]
    assert plot["emotion"].tolist() == labels * 2
    assert scores == dict(result.top_k(labels, len(labels)))
