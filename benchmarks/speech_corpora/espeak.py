"""Corpus A: espeak-ng (formant synthesis) in the RAVDESS layout, `Actor_XX/03-01-EE-II-SS-RR-AA.wav`.

Each actor is a voice variant file of its own (written into a private copy of espeak-ng's voice folder):
an accent, a base pitch and pitch range, formant scaling (vocal-tract length), roughness and a speaking
rate; odd actors are male, even female, as in RAVDESS. Each utterance gets its own variant with the
emotion's pitch level, pitch range and flutter (tremor) and its own speed; tilt, breathiness, level and the
actor's channel are applied afterwards with numpy/scipy. Native rate 22,050 Hz.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from . import common

RATE = 22050
BINARY = "espeak-ng"
# RAVDESS codes (loaders/ravdess.py); neutral has no strong intensity.
EMOTION_CODES = {
    "neutral": "01",
    "calm": "02",
    "happy": "03",
    "sadness": "04",
    "anger": "05",
    "fear": "06",
    "disgust": "07",
    "surprise": "08",
}
STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
INTENSITIES = {"01": 1.0, "02": 1.6}
MAX_SPEAKERS = 24
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-029")


@dataclass(frozen=True)
class Voice:
    accent: str
    gender: str
    pitch_base: float  # Hz
    pitch_top: float  # Hz
    formants: tuple[int, ...]  # percent frequency scale of formants 0-8
    roughness: int
    flutter: int
    wpm: float


def make_voice(rng: np.random.Generator, male: bool) -> Voice:
    if male:
        base = rng.uniform(70, 120)
        top = base + rng.uniform(30, 70)
        scale = rng.uniform(0.9, 1.04)
    else:
        base = rng.uniform(145, 215)
        top = base + rng.uniform(50, 110)
        scale = rng.uniform(1.06, 1.2)
    formants = tuple(int(round(100 * scale * rng.uniform(0.96, 1.04))) for _ in range(9))
    return Voice(
        accent=str(rng.choice(ACCENTS)),
        gender="male" if male else "female",
        pitch_base=float(base),
        pitch_top=float(top),
        formants=formants,
        roughness=int(rng.integers(0, 4)),
        flutter=int(rng.integers(0, 30)),
        wpm=float(rng.uniform(145, 195)),
    )


def variant_text(name: str, voice: Voice, prosody: common.Prosody) -> str:
    """An espeak-ng voice variant file: the voice with this utterance's pitch level, range and flutter."""
    factor = prosody.pitch_factor
    base = voice.pitch_base * factor
    top = base + (voice.pitch_top - voice.pitch_base) * factor * prosody.range
    lines = [
        "language variant",
        f"name {name}",
        f"gender {voice.gender}",
        f"pitch {int(round(base))} {int(round(max(top, base + 2)))}",
        *(f"formant {i} {f} 100 100" for i, f in enumerate(voice.formants)),
        f"roughness {voice.roughness}",
        f"flutter {int(round(voice.flutter + 60 * prosody.tremor))}",
    ]
    return "\n".join(lines) + "\n"


def private_data_dir(root: Path) -> Path:
    """A copy of espeak-ng's data folder (symbolic links) whose variant folder also takes our variants.
    espeak-ng finds variants only inside its data folder, and --path chooses that folder."""
    probe = subprocess.run([BINARY, "--version"], capture_output=True, text=True, check=True).stdout
    system = Path(probe.split("Data at:")[-1].strip())
    data = root / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (system / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in (system / "voices" / "!v").iterdir():
        (data / "voices" / "!v" / entry.name).symlink_to(entry)
    return root


def plan(speakers: int, emotions: list[str], seed: int, sentences: list[str] | None = None) -> list[dict]:
    """One job per actor: its voice, channel, habits and the list of its files (name, text, prosody).
    `sentences`: statement codes to speak (default both). A file's audio depends only on the seed, its
    speaker and its name, not on which other files are planned."""
    statements = {code: STATEMENTS[code] for code in (sentences or STATEMENTS)}
    jobs = []
    for actor in range(1, speakers + 1):
        speaker_rng = common.rng_for(seed, "espeak", actor)
        voice = make_voice(speaker_rng, male=actor % 2 == 1)
        channel = common.make_channel(speaker_rng, RATE)
        habits = common.make_habits(seed, ("espeak", actor), emotions)
        files = []
        for emotion in emotions:
            code = EMOTION_CODES[emotion]
            for intensity, strength in INTENSITIES.items():
                if emotion == "neutral" and intensity == "02":
                    continue
                for statement, text in statements.items():
                    for repetition in ("01", "02"):
                        name = f"03-01-{code}-{intensity}-{statement}-{repetition}-{actor:02d}"
                        rng = common.rng_for(seed, "espeak", name)
                        strength_here = strength if emotion != "neutral" else 1.0
                        prosody = common.realise(emotion, strength_here, habits, rng)
                        files.append((f"Actor_{actor:02d}/{name}.wav", text, prosody))
        jobs.append({"speaker": actor, "voice": voice, "channel": channel, "files": files})
    return jobs


def render_speaker(job: dict, out_root: str, seed: int, work_dir: str) -> list[str]:
    """Synthesise, colour and write every file of one actor; returns the paths written."""
    voice: Voice = job["voice"]
    written = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for index, (relpath, text, prosody) in enumerate(job["files"]):
            variant = f"syn{job['speaker']:02d}x{index:03d}"
            variant_path = Path(work_dir) / "espeak-ng-data" / "voices" / "!v" / variant
            variant_path.write_text(variant_text(variant, voice, prosody))
            raw = os.path.join(tmp, "raw.wav")
            speed = int(round(np.clip(voice.wpm * prosody.rate, 80, 450)))
            subprocess.run(
                [
                    BINARY,
                    f"--path={work_dir}",
                    "-v",
                    f"{voice.accent}+{variant}",
                    "-s",
                    str(speed),
                    "-w",
                    raw,
                    text,
                ],
                check=True,
                capture_output=True,
            )
            samples, rate = sf.read(raw, dtype="float32")
            rng = common.rng_for(seed, "espeak-post", relpath)
            x = common.voice_effects(samples.astype(np.float64), rate, prosody, rng)
            x = common.apply_channel(common.pad(x, rate, rng), rate, job["channel"], rng)
            path = os.path.join(out_root, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            common.write_wav(path, x, rate)
            written.append(path)
    return written
