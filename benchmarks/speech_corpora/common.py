"""What both engines share: emotion prosody, per-speaker habits, the per-speaker channel, WAV output.

Emotion is carried by prosody only (as in acted corpora): pitch level and range, speaking rate, loudness,
spectral tilt (tense/bright vs lax/dark voice) and breathiness. Every speaker realises each emotion with
personal deviations ("habits") and a personal expressiveness, so that held-out speakers are harder than a
random split; every speaker also has a fixed recording channel (EQ, band limits, room, noise floor, gain),
so that speakers differ acoustically beyond their voice.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np
import soundfile as sf
from scipy import signal

# Effect of each emotion relative to neutral, at intensity 1.0. pitch: semitones; range: factor on the
# pitch excursion; rate: factor on speaking rate; gain: dB; tilt: dB of a high shelf above 1.5 kHz
# (positive = pressed/bright voice); breath: 0..1 breathiness; tremor: 0..1 pitch flutter.
EMOTION_EFFECTS: dict[str, dict[str, float]] = {
    "neutral": {},
    "calm": {"pitch": -1.0, "range": 0.8, "rate": 0.9, "gain": -2.0, "tilt": -1.5, "breath": 0.2},
    "happy": {"pitch": 4.5, "range": 1.9, "rate": 1.08, "gain": 2.5, "tilt": 2.0},
    "sadness": {"pitch": -2.0, "range": 0.55, "rate": 0.78, "gain": -5.0, "tilt": -6.0, "breath": 0.5},
    "anger": {"pitch": 2.0, "range": 1.5, "rate": 1.12, "gain": 7.0, "tilt": 7.0},
    "fear": {
        "pitch": 5.0,
        "range": 1.15,
        "rate": 1.18,
        "gain": 0.0,
        "tilt": 0.0,
        "breath": 0.4,
        "tremor": 0.8,
    },
    "disgust": {"pitch": -1.5, "range": 1.3, "rate": 0.85, "gain": 1.0, "tilt": 1.5, "breath": 0.2},
    "surprise": {"pitch": 5.5, "range": 2.0, "rate": 1.0, "gain": 3.0, "tilt": 1.0},
}
# Standard deviation of a speaker's fixed personal deviation from each emotion's effect (a habit), in the
# parameter's own unit (range and rate: on their logarithm). Larger habits widen the gap between random
# and speaker-independent splits.
HABIT_SD = {
    "pitch": 0.9,
    "range": 0.12,
    "rate": 0.04,
    "gain": 1.4,
    "tilt": 1.2,
    "breath": 0.08,
    "tremor": 0.1,
}
# Utterance-to-utterance variation of a speaker's realisation (repetitions are not identical).
JITTER_SD = {
    "pitch": 0.5,
    "range": 0.08,
    "rate": 0.03,
    "gain": 1.0,
    "tilt": 0.7,
    "breath": 0.05,
    "tremor": 0.0,
}


@dataclass(frozen=True)
class Prosody:
    """One utterance's prosody relative to the speaker's neutral voice."""

    pitch: float = 0.0  # semitones
    range: float = 1.0  # factor
    rate: float = 1.0  # factor
    gain: float = 0.0  # dB
    tilt: float = 0.0  # dB
    breath: float = 0.0  # 0..1
    tremor: float = 0.0  # 0..1

    @property
    def pitch_factor(self) -> float:
        return float(2.0 ** (self.pitch / 12.0))


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (stable across runs, processes, platforms)."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


@dataclass(frozen=True)
class Habits:
    """A speaker's way of acting: overall expressiveness and per-emotion deviations."""

    expressiveness: float
    deviations: dict[str, dict[str, float]]


def make_habits(seed: int, speaker: tuple, emotions: list[str]) -> Habits:
    """The habits of `speaker` (a key such as ("espeak", 3)): each emotion's deviation is drawn on its
    own, so it does not depend on which other emotions a corpus holds."""
    expressiveness = float(rng_for(seed, *speaker, "expressiveness").uniform(0.75, 1.25))
    deviations = {}
    for emotion in emotions:
        if emotion == "neutral":
            deviations[emotion] = {}
            continue
        rng = rng_for(seed, *speaker, "habit", emotion)
        deviations[emotion] = {k: float(rng.normal(0.0, sd)) for k, sd in HABIT_SD.items()}
    return Habits(expressiveness, deviations)


def realise(emotion: str, intensity: float, habits: Habits, rng: np.random.Generator) -> Prosody:
    """The prosody of one utterance: the emotion's effect scaled by intensity and the speaker's
    expressiveness, plus the speaker's habit for that emotion, plus utterance jitter."""
    effect = EMOTION_EFFECTS[emotion]
    scale = intensity * habits.expressiveness
    habit = habits.deviations.get(emotion, {})
    values = {}
    for key, neutral in (("pitch", 0.0), ("gain", 0.0), ("tilt", 0.0), ("breath", 0.0), ("tremor", 0.0)):
        value = scale * (effect.get(key, neutral) + habit.get(key, 0.0)) + rng.normal(0.0, JITTER_SD[key])
        values[key] = value
    for key in ("range", "rate"):
        log_value = scale * (np.log(effect.get(key, 1.0)) + habit.get(key, 0.0))
        values[key] = float(np.exp(log_value + rng.normal(0.0, JITTER_SD[key])))
    values["breath"] = float(np.clip(values["breath"], 0.0, 1.0))
    values["tremor"] = float(np.clip(values["tremor"], 0.0, 1.0))
    return replace(Prosody(), **{k: float(v) for k, v in values.items()})


@dataclass(frozen=True)
class Channel:
    """A speaker's fixed recording chain."""

    eq: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, Q) peaking filters
    highpass: float  # Hz
    lowpass: float  # Hz
    rt60: float  # s, 0 = dry
    wet: float  # reverb mix
    snr: float  # dB of the noise floor below the speech level
    noise_tilt: float  # 0 white .. 1 strongly low-pass noise
    gain: float  # dB


def make_channel(rng: np.random.Generator, rate: int) -> Channel:
    nyquist = rate / 2
    eq = tuple(
        (
            float(np.exp(rng.uniform(np.log(150.0), np.log(0.8 * nyquist)))),
            float(rng.uniform(-5.0, 5.0)),
            float(rng.uniform(0.7, 2.0)),
        )
        for _ in range(3)
    )
    return Channel(
        eq=eq,
        highpass=float(rng.uniform(50.0, 250.0)),
        lowpass=float(min(rng.uniform(3400.0, 9500.0), 0.92 * nyquist)),
        rt60=float(rng.choice([0.0, rng.uniform(0.1, 0.45)])),
        wet=float(rng.uniform(0.05, 0.3)),
        snr=float(rng.uniform(22.0, 45.0)),
        noise_tilt=float(rng.uniform(0.0, 1.0)),
        gain=float(rng.uniform(-8.0, 0.0)),
    )


def _peaking(freq: float, gain_db: float, q: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook peaking EQ biquad."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return b / den[0], den / den[0]


def _high_shelf(freq: float, gain_db: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook high shelf (slope 1)."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / rate
    alpha = np.sin(w0) / 2 * np.sqrt(2)
    cos = np.cos(w0)
    sq = 2 * np.sqrt(a) * alpha
    b = np.array(
        [
            a * ((a + 1) + (a - 1) * cos + sq),
            -2 * a * ((a - 1) + (a + 1) * cos),
            a * ((a + 1) + (a - 1) * cos - sq),
        ]
    )
    den = np.array(
        [(a + 1) - (a - 1) * cos + sq, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - sq]
    )
    return b / den[0], den / den[0]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-12))


def speech_rms(x: np.ndarray, rate: int) -> float:
    """RMS over the frames that hold speech (within 30 dB of the loudest), so pauses do not count."""
    hop = rate // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    energy = np.mean(frames**2, axis=1) + 1e-12
    active = energy > energy.max() * 1e-3
    return float(np.sqrt(energy[active].mean()))


def voice_effects(x: np.ndarray, rate: int, prosody: Prosody, rng: np.random.Generator) -> np.ndarray:
    """The emotion's voice-quality part that the engines cannot do themselves: tilt and breathiness, then
    the level relative to a fixed speech level of -26 dBFS."""
    x = x / speech_rms(x, rate) * 10 ** (-26 / 20)
    if abs(prosody.tilt) > 0.05:
        b, a = _high_shelf(1500.0, prosody.tilt, rate)
        x = signal.lfilter(b, a, x)
    if prosody.breath > 0.01:
        # Aspiration: high-passed noise that follows the speech envelope.
        envelope = np.abs(signal.hilbert(x))
        envelope = signal.lfilter([0.01], [1, -0.99], envelope)
        noise = signal.lfilter(*signal.butter(2, 2000 / (rate / 2), "high"), rng.standard_normal(len(x)))
        x = x + prosody.breath * 0.6 * envelope * noise
        # A lax voice is also darker.
        x = signal.lfilter(*signal.butter(1, 4000 / (rate / 2)), x) * prosody.breath + x * (
            1 - prosody.breath
        )
    return x * 10 ** (prosody.gain / 20)


def apply_channel(x: np.ndarray, rate: int, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    level = speech_rms(x, rate)
    for freq, gain_db, q in channel.eq:
        x = signal.lfilter(*_peaking(freq, gain_db, q, rate), x)
    x = signal.sosfilt(signal.butter(2, channel.highpass / (rate / 2), "high", output="sos"), x)
    x = signal.sosfilt(signal.butter(6, channel.lowpass / (rate / 2), output="sos"), x)
    if channel.rt60 > 0:
        n = int(channel.rt60 * rate)
        t = np.arange(n) / rate
        ir = rng_for(0, "ir", channel.rt60).standard_normal(n) * np.exp(-6.9 * t / channel.rt60)
        ir /= np.sqrt(np.sum(ir**2))
        x = x + channel.wet * signal.fftconvolve(x, ir)[: len(x)]
    noise = rng.standard_normal(len(x) + rate // 2)
    if channel.noise_tilt > 0:
        noise = signal.lfilter([1 - 0.95 * channel.noise_tilt], [1, -0.95 * channel.noise_tilt], noise)
    noise = noise[rate // 2 :]
    x = x + noise / rms(noise) * level * 10 ** (-channel.snr / 20)
    return x * 10 ** (channel.gain / 20)


def pad(x: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Lead-in and tail silence as a recording has (the noise floor fills it later)."""
    before = np.zeros(int(rng.uniform(0.15, 0.45) * rate))
    after = np.zeros(int(rng.uniform(0.2, 0.6) * rate))
    return np.concatenate([before, x, after])


def write_wav(path: str, x: np.ndarray, rate: int) -> None:
    """16-bit PCM; a clip that would overflow is scaled down (level cues survive: it only affects the
    loudest few)."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
