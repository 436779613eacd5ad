"""Corpus B: Festival in the CREMA-D layout, `AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`.

Three Debian voices: kal_diphone and ked_diphone (male diphone voices, LPC resynthesis: their pitch
follows `int_lr_params` and their timing `Duration_Stretch`) and cmu_us_slt_arctic_hts (female, HTS: its
speed follows hts_engine's `-r`; Festival ignores its half-tone option). A speaker's vocal-tract length
is changed by the resampling trick: synthesise with pitch / a and duration * a, then play a times faster,
which leaves pitch and duration as asked and scales every formant by a. Female actors (the gender comes
from CREMA-D's own list, as loaders/cremad.py reads it) are slt, or a diphone voice with raised pitch and
shortened vocal tract. For slt, the emotion's pitch level also goes through the resampling (pitch and
formants move together, as with a raised larynx); its pitch range cannot be set.
Native rate 16,000 Hz. Festival runs once per actor with one Scheme script for all its sentences.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from loaders.cremad import FEMALE_ACTORS

from . import common

RATE = 16000
BINARY = "festival"
EMOTION_CODES = {
    "anger": "ANG",
    "disgust": "DIS",
    "fear": "FEA",
    "happy": "HAP",
    "neutral": "NEU",
    "sadness": "SAD",
}
# CREMA-D's twelve sentences, from the corpus documentation.
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
# As in CREMA-D, only IEO is spoken at three levels (neutral: unspecified XX); every other file is XX.
LEVELS = {"LO": 0.6, "MD": 1.0, "HI": 1.5}
FIRST_ACTOR = 1001
MAX_SPEAKERS = 91
DIPHONE_VOICES = ("kal_diphone", "ked_diphone")
HTS_VOICE = "cmu_us_slt_arctic_hts"
HTS_NATIVE_F0 = 180.0
MIN_F0 = 60.0


@dataclass(frozen=True)
class Voice:
    name: str
    gender: str
    f0_mean: float  # Hz (HTS: the voice's own, scaled by the tract factor)
    f0_std: float  # Hz
    tract: float  # formant scale factor
    rate: float  # speaking-rate factor


def make_voice(rng: np.random.Generator, female: bool, index: int) -> Voice:
    if female and index % 3 == 0:
        tract = float(rng.uniform(0.92, 1.1))
        return Voice(HTS_VOICE, "female", HTS_NATIVE_F0 * tract, 0.0, tract, float(rng.uniform(0.88, 1.12)))
    name = DIPHONE_VOICES[int(rng.integers(0, 2))]
    if female:
        return Voice(
            name,
            "female",
            float(rng.uniform(175, 235)),
            float(rng.uniform(22, 40)),
            float(rng.uniform(1.12, 1.22)),
            float(rng.uniform(0.88, 1.12)),
        )
    return Voice(
        name,
        "male",
        float(rng.uniform(95, 140)),
        float(rng.uniform(10, 25)),
        float(rng.uniform(0.92, 1.06)),
        float(rng.uniform(0.88, 1.12)),
    )


def plan(speakers: int, emotions: list[str], seed: int, sentences: list[str] | None = None) -> list[dict]:
    """One job per actor; `sentences`: sentence codes to speak (default all twelve)."""
    chosen = {code: SENTENCES[code] for code in (sentences or SENTENCES)}
    jobs = []
    female_index = 0
    for actor in range(FIRST_ACTOR, FIRST_ACTOR + speakers):
        female = str(actor) in FEMALE_ACTORS
        speaker_rng = common.rng_for(seed, "festival", actor)
        voice = make_voice(speaker_rng, female, female_index)
        female_index += female
        channel = common.make_channel(speaker_rng, RATE)
        habits = common.make_habits(seed, ("festival", actor), emotions)
        files = []
        for sentence, text in chosen.items():
            for emotion in emotions:
                code = EMOTION_CODES[emotion]
                levels = LEVELS if sentence == "IEO" and emotion != "neutral" else {"XX": 1.0}
                for level, strength in levels.items():
                    name = f"{actor}_{sentence}_{code}_{level}"
                    prosody = common.realise(
                        emotion, strength, habits, common.rng_for(seed, "festival", name)
                    )
                    files.append((f"AudioWAV/{name}.wav", text, prosody))
        jobs.append({"speaker": actor, "voice": voice, "channel": channel, "files": files})
    return jobs


def _utterance_scheme(voice: Voice, text: str, prosody: common.Prosody, raw: str) -> tuple[str, float]:
    """Scheme that synthesises one utterance into `raw`, and the factor to play it faster by."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    if voice.name == HTS_VOICE:
        speedup = voice.tract * prosody.pitch_factor
        speed = voice.rate * prosody.rate / speedup
        setup = f'(set! hts_engine_params (append {HTS_VOICE}::hts_engine_params \'(("-r" {speed:.4f}))))'
    else:
        speedup = voice.tract
        # The diphone voices' LPC resynthesis aborts (heap corruption) on pitch periods much below 50 Hz.
        mean = max(voice.f0_mean * prosody.pitch_factor / speedup, MIN_F0 + 15)
        std = min(voice.f0_std * prosody.range * prosody.pitch_factor / speedup, (mean - MIN_F0) / 3)
        stretch = speedup / (voice.rate * prosody.rate)
        setup = (
            f"(set! int_lr_params '((target_f0_mean {mean:.2f}) (target_f0_std {std:.2f}) "
            f"(model_f0_mean 170) (model_f0_std 34)))\n(Parameter.set 'Duration_Stretch {stretch:.4f})"
        )
    return (
        f'{setup}\n(set! u (utt.synth (Utterance Text "{quoted}")))\n(utt.save.wave u "{raw}" \'riff)\n',
        speedup,
    )


def render_speaker(job: dict, out_root: str, seed: int, work_dir: str) -> list[str]:
    voice: Voice = job["voice"]
    written = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        script = [f"(voice_{voice.name})"]
        speedups = []
        for index, (_, text, prosody) in enumerate(job["files"]):
            scheme, speedup = _utterance_scheme(voice, text, prosody, os.path.join(tmp, f"{index}.wav"))
            script.append(scheme)
            speedups.append(speedup)
        script_path = os.path.join(tmp, "speaker.scm")
        with open(script_path, "w") as f:
            f.write("\n".join(script))
        done = subprocess.run([BINARY, "-b", script_path], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"festival failed on actor {job['speaker']} (rc {done.returncode}): "
                f"{done.stderr.strip()[-500:]}"
            )
        for index, (relpath, _, prosody) in enumerate(job["files"]):
            samples, native = sf.read(os.path.join(tmp, f"{index}.wav"), dtype="float32")
            # Reading `native * speedup` Hz samples as if they were `native` Hz plays them faster.
            x = soxr.resample(samples, native * speedups[index], RATE, quality="HQ").astype(np.float64)
            rng = common.rng_for(seed, "festival-post", relpath)
            x = common.voice_effects(x, RATE, prosody, rng)
            x = common.apply_channel(common.pad(x, RATE, rng), RATE, job["channel"], rng)
            path = os.path.join(out_root, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            common.write_wav(path, x, RATE)
            written.append(path)
    return written
