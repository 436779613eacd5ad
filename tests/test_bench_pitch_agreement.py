"""benchmarks/pitch_agreement.py: the models' pitch tracker against openSMILE's F0, frame by frame."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks import pitch_agreement


def test_a_clip_is_compared_at_the_shift_where_the_trackers_agree_and_octave_errors_are_counted():
    f0_min = 75.0
    semitones = 10 + np.sin(np.arange(100) / 7)  # a gliding contour, so that only one shift lines it up
    voicing = np.full(100, 0.9)
    voicing[70:80] = 0.2  # unvoiced for the tracker
    hz = f0_min * 2 ** (semitones / 12)
    opensmile_hz = np.zeros(100)
    opensmile_hz[:98] = hz[2:]  # openSMILE's frame t is the tracker's frame t + 2
    opensmile_hz[10:20] *= 2  # an octave above the tracker
    opensmile_hz[40:50] = 0.0  # unvoiced for openSMILE
    clip = pitch_agreement.compare_clip(opensmile_hz, semitones, voicing, f0_min, threshold=0.7)
    assert clip.shift == 2
    assert clip.voiced_opensmile == 88 and clip.voiced_tracker == 88  # over the 98 frames both have
    # Voiced in both: 98 frames less openSMILE's 10 unvoiced and the tracker's 10 (openSMILE's 68-77).
    assert len(clip.differences) == 78
    np.testing.assert_allclose(np.sort(clip.differences)[-10:], 12.0, atol=1e-9)
    np.testing.assert_allclose(np.sort(clip.differences)[:-10], 0.0, atol=1e-9)
    line = pitch_agreement.summary([clip], skipped=1)
    assert "clips 1 (skipped 1)" in line and "both 78" in line and "median |d| 0.00" in line
    assert f"tracker an octave below {10 / 78:.3f}, above 0.000" in line
    # Too few frames voiced in both at every shift: no comparison.
    assert pitch_agreement.compare_clip(np.zeros(100), semitones, voicing, f0_min, 0.7) is None


def test_the_tracker_agrees_with_opensmile_on_the_synthetic_corpus(capsys):
    pytest.importorskip("opensmile")
    pitch_agreement.main(["synthetic", "--clips", "3"])
    line = capsys.readouterr().out.strip()
    found = re.fullmatch(
        r"synthetic: clips (\d) \(skipped (\d)\); frames voiced: openSMILE \d+, tracker \d+, both (\d+); "
        r"median \|d\| ([0-9.]+) semitones; .*",
        line,
    )
    assert found, line
    assert int(found.group(1)) + int(found.group(2)) == 3 and int(found.group(3)) > 50
    assert float(found.group(4)) < 0.5  # the corpus's voices are clean harmonic tones


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--clips", "0"], "--clips 0: give at least 1"),
        (["--voicing", "1.5"], "--voicing 1.5: give a threshold"),
    ],
)
def test_bad_input_is_refused_before_any_clip_is_read(capsys, argv, message):
    with pytest.raises(SystemExit):
        pitch_agreement.main(["synthetic", *argv])
    assert message in capsys.readouterr().err
