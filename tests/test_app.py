"""The Gradio demo (app.py), driven for real in headless Chromium: upload a WAV, read the emotion shown."""

from __future__ import annotations

import shutil
import socket

import numpy as np
import pytest
import soundfile as sf

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def classifier(make_tiny_cnn):
    import torch

    from inference.classify import EmotionClassifier
    from modeling.auto import feature_extractor_for

    torch.manual_seed(0)
    model = make_tiny_cnn()
    with torch.no_grad():  # a clear winner, so the page's top label is unambiguous
        model.classifier[-1].bias.copy_(torch.tensor([0.0, 0.0, 3.0, 0.0]))
    return EmotionClassifier(model, feature_extractor_for(model))


@pytest.fixture(scope="module")
def app_url(classifier):
    from app import build_app

    demo = build_app(classifier, max_segment=4.0)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--window-size=1280,2000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def upload_and_read(browser, url, path, timeout=90):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    wait = WebDriverWait(browser, timeout)
    file_input = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#audio-input input[type=file]"))
    )
    file_input.send_keys(str(path))
    # The upload event classifies; the status line appears when the result is on the page.
    wait.until(
        lambda d: (
            "segment" in d.find_element(By.ID, "status-output").text
            or "Could not" in d.find_element(By.ID, "status-output").text
        )
    )
    return browser.find_element(By.ID, "emotion-output").text, browser.find_element(
        By.ID, "status-output"
    ).text


def test_upload_shows_the_predicted_emotion(app_url, browser, classifier, tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(32000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 200 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, clip, 16000)
    probabilities = classifier.probabilities([clip])[0]
    expected = classifier.labels[int(np.argmax(probabilities))]
    label_text, status = upload_and_read(browser, app_url, path)
    lines = label_text.strip().splitlines()  # "Emotion", the top label, then label / percentage pairs
    assert lines[1] == expected, label_text
    assert lines[2:4] == [expected, f"{round(100 * probabilities.max())}%"], label_text
    assert "1 segment(s) from the whole clip" in status


def test_long_upload_gets_a_timeline(app_url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    rate, rng = 16000, np.random.default_rng(1)
    audio = np.zeros(12 * rate, dtype=np.float32)
    for start in (1, 7):
        t = np.arange(2 * rate) / rate
        audio[start * rate : (start + 2) * rate] = 0.3 * np.sin(
            2 * np.pi * 220 * t
        ) + 0.02 * rng.standard_normal(t.size)
    path = tmp_path / "long.wav"
    sf.write(path, audio, rate)
    _, status = upload_and_read(browser, app_url, path)
    assert "2 segment(s) from speech segments" in status
    table = browser.find_element(By.ID, "timeline-table").text.splitlines()
    assert table[:5] == ["Timeline", "start", "end", "emotion", "score"], table
    starts = [float(table[i]) for i in (5, 9)]  # one row (start, end, emotion, score) per burst
    assert starts == pytest.approx([0.9, 6.9], abs=0.2) and table[7] == table[11] == "happy"


def test_silent_upload_explains_the_problem(app_url, browser, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000, dtype=np.float32), 16000)
    _, status = upload_and_read(browser, app_url, path)
    assert "Could not classify" in status and "silence only" in status
