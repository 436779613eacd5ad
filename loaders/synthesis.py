"""The synthesiser of the `synthetic` demo corpus: acted-emotion-like speech rendered from a seed.

Each utterance is a source-filter rendering of a made-up "sentence" (a fixed syllable pattern per text
code) by one of twelve synthetic speakers, with the emotion carried only by prosody and voice quality,
as in the acted corpora:

* source: a glottal flow pulse per cycle (opening / closing phase, open quotient ``oq``) differentiated
  for lip radiation, with cycle-to-cycle jitter and shimmer, plus pulse-synchronous aspiration noise;
* filter: four formant resonators whose frequencies glide from vowel to vowel (one vowel per syllable),
  scaled by the speaker's vocal-tract length; onsets are stops, fricatives (shaped noise) or nasals;
* prosody: an F0 contour (level + declination + pitch accents on stressed syllables + final rise/fall
  + tremor), the syllable rate, pauses at the phrase break, loudness and accent strength;
* voice quality: open quotient (pressed = bright, breathy = dark), an extra spectral tilt, aspiration.

The speakers differ in base F0, vocal-tract length, speaking rate, loudness, breathiness and how
strongly they act (`Speaker.expressiveness`, 0.95-1.2), and each has fixed personal habits per emotion
(`speaker_profile`), so a speaker-independent split is measurably harder than a random one, while the
emotion effects (`EMOTION_PROFILES`) dominate. The effects a model still sees after per-clip level
normalisation (pitch level and range, rate, voice quality and spectral tilt) separate the four default
emotions clearly; loudness differs too, but feature extractors normalise it away. Measured on 12 speakers
x 4 default emotions x 8 utterances (tests/test_synthetic.py): logistic regression on 8 summary features
(energy, zero crossings, F0, spectral centroid, syllable rate) reaches 0.87 on held-out speakers and 0.90
on random splits (chance 0.25). Through run_train.py with the demo recipes (speaker split, seed 42, test
speakers F03 and M05), the CNN reaches 0.925 (seeds 1-5: 0.91-0.99) and the S4 0.944 (seeds 1-5:
0.93-0.96) test accuracy (tests/test_train_learning.py). `_HABIT` sets the trade-off: larger habits widen
the random / speaker gap and lower speaker-independent accuracy.

Everything is vectorised numpy (the formant filter runs in the STFT domain): about 10 ms per utterance
on one CPU core, so the default corpus (960 utterances) renders in about 10 s. The same
(speaker, emotion, sentence, seed) always gives the same samples.

The corpus made of these renderings (which utterances exist, the `datasets` builder, the WAV writer
and the schema values) is `loaders.synthetic`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

# Imported by name, not used as `np.fft`: datasets' streaming patches swap a builder module's `np` for a
# copy holding only numpy's eagerly loaded attributes, which lacks the lazily loaded `np.fft`.
from numpy.fft import irfft, rfft, rfftfreq
from numpy.lib.stride_tricks import sliding_window_view

from .emotions import EMOTIONS
from .schema import SAMPLING_RATE

_N_FFT = 512
_HOP = _N_FFT // 2  # the overlap-add in `_istft` relies on 50 % overlap
_NOISE_FLOOR_RMS = 10 ** (-66 / 20)  # recording noise floor, well below the quietest speech
_ACTIVE_LEVEL = 10 ** (-28 / 20)  # RMS while speaking, before speaker / emotion level: anger stays unclipped


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: the voice every emotion is rendered on.

    Attributes:
        code: speaker code inside the corpus, e.g. ``F01`` (the dataset column is ``synthetic/F01``).
        gender: ``female`` or ``male``.
        f0: base fundamental frequency in Hz (neutral speech).
        formant_scale: formant frequencies relative to an adult male vocal tract (shorter tract: > 1).
        rate: syllables per second in neutral speech.
        loudness: level in dB relative to the reference speaker.
        breathiness: aspiration noise relative to the voiced source.
        open_quotient: offset added to the emotion's glottal open quotient (+: breathier, darker).
        expressiveness: how strongly this speaker acts: scales every emotion's departure from neutral.
    """

    code: str
    gender: str
    f0: float
    formant_scale: float
    rate: float
    loudness: float
    breathiness: float
    open_quotient: float
    expressiveness: float


# Interleaved female / male so that any first n speakers are gender-balanced.
SPEAKERS: tuple[Speaker, ...] = (
    Speaker("F01", "female", 210.0, 1.17, 4.6, 0.0, 0.05, 0.01, 1.05),
    Speaker("M01", "male", 115.0, 1.00, 4.4, 1.0, 0.04, 0.00, 0.95),
    Speaker("F02", "female", 240.0, 1.21, 4.3, -2.0, 0.07, 0.03, 1.20),
    Speaker("M02", "male", 100.0, 0.95, 4.6, 2.0, 0.03, -0.02, 1.00),
    Speaker("F03", "female", 185.0, 1.12, 4.5, 1.0, 0.05, -0.01, 1.00),
    Speaker("M03", "male", 130.0, 1.04, 4.3, -1.0, 0.05, 0.02, 1.15),
    Speaker("F04", "female", 225.0, 1.22, 4.7, -1.0, 0.06, 0.00, 0.95),
    Speaker("M04", "male", 95.0, 0.93, 4.5, 3.0, 0.03, -0.02, 1.10),
    Speaker("F05", "female", 195.0, 1.15, 4.4, 2.0, 0.04, -0.02, 1.05),
    Speaker("M05", "male", 140.0, 1.06, 4.6, -2.0, 0.05, 0.01, 0.95),
    Speaker("F06", "female", 250.0, 1.18, 4.4, 0.0, 0.06, 0.02, 1.00),
    Speaker("M06", "male", 108.0, 0.98, 4.2, 0.0, 0.04, 0.01, 1.20),
)
_SPEAKER_BY_CODE = {s.code: s for s in SPEAKERS}


@dataclass(frozen=True)
class EmotionProfile:
    """How one emotion changes a speaker's neutral voice.

    Attributes:
        pitch_shift: F0 level, semitones relative to the speaker's base F0.
        pitch_range: height of the pitch accents on stressed syllables, semitones.
        declination: F0 fall from the first to the last syllable, semitones (negative: rise).
        final: extra F0 movement on the last syllable, semitones (+: question-like rise).
        tremor: depth of a 5-7 Hz F0 tremor, semitones.
        rate: multiplier on the speaker's syllable rate.
        loudness: level in dB relative to the speaker's neutral level.
        accent: extra level of stressed syllables, dB.
        open_quotient: glottal open quotient (0.4 pressed and bright ... 0.8 breathy and dark).
        tilt: extra spectral slope above 1 kHz, dB per octave (+: brighter).
        breathiness: multiplier on the speaker's aspiration noise.
        jitter: cycle-to-cycle F0 period perturbation (relative standard deviation).
        shimmer: cycle-to-cycle amplitude perturbation (relative standard deviation).
        formant_shift: multiplier on F1 and F2 (spread lips / wide jaw: > 1).
        pause: length of the pause at the phrase break, seconds.
    """

    pitch_shift: float
    pitch_range: float
    declination: float
    final: float
    tremor: float
    rate: float
    loudness: float
    accent: float
    open_quotient: float
    tilt: float
    breathiness: float
    jitter: float
    shimmer: float
    formant_shift: float
    pause: float


# Directions follow the acoustic-correlates literature on acted emotion (e.g. Banse & Scherer 1996):
# anger loud, fast, high, pressed; happiness high with a wide range; sadness low, slow, soft, breathy.
# fmt: off
_PROFILE_TABLE = {  # columns in `EmotionProfile` field order
    #           pitch  range  decl  final  trem  rate  loud   acc    oq  tilt  brth  jitr  shim  form  pause
    "neutral": ( 0.0,  1.5,  2.0, -1.0,  0.0, 1.00,  0.0,  1.5, 0.60,  0.0,  1.0, 0.005, 0.03, 1.00, 0.15),
    "anger":   ( 3.0,  3.0,  3.5, -3.5,  0.0, 1.35,  9.0,  4.5, 0.38,  5.5,  0.5, 0.014, 0.06, 1.10, 0.06),
    "happy":   ( 4.5, 10.0,  0.5,  2.5,  0.0, 1.10,  4.0,  4.0, 0.50,  3.0,  1.4, 0.006, 0.03, 1.04, 0.10),
    "sadness": (-3.5,  0.6,  2.5, -2.0,  0.3, 0.66, -8.0,  0.5, 0.78, -6.0,  3.0, 0.012, 0.06, 0.92, 0.35),
    "fear":    ( 7.0,  3.0,  0.0,  1.0,  1.0, 1.25, -1.0,  1.5, 0.60, -1.0,  1.8, 0.020, 0.06, 1.02, 0.12),
    "surprise":( 6.0,  6.0, -1.0,  6.0,  0.0, 1.00,  3.0,  3.0, 0.50,  1.0,  1.2, 0.006, 0.03, 1.04, 0.15),
    "disgust": (-1.0,  3.0,  3.0, -3.0,  0.0, 0.82,  1.0,  3.0, 0.45, -1.0,  1.0, 0.030, 0.10, 0.96, 0.25),
    "anxiety": ( 4.0,  2.0,  0.5,  0.0,  0.7, 1.20, -2.0,  1.0, 0.62, -1.0,  1.5, 0.015, 0.05, 1.00, 0.10),
    "bored":   (-1.5,  0.6,  1.5, -1.0,  0.0, 0.82, -3.0,  0.5, 0.68, -2.0,  1.2, 0.008, 0.04, 0.98, 0.25),
    "calm":    (-0.5,  1.5,  1.5, -1.0,  0.0, 0.90, -3.0,  1.0, 0.70, -2.0,  1.4, 0.004, 0.02, 1.00, 0.20),
}
# fmt: on
EMOTION_PROFILES: dict[str, EmotionProfile] = {e: EmotionProfile(*row) for e, row in _PROFILE_TABLE.items()}
assert set(EMOTION_PROFILES) == set(EMOTIONS)

# Vowel formants F1-F3 (Hz) of an adult male (Peterson & Barney style averages).
_VOWELS = np.array(
    [
        [270, 2290, 3010],  # i
        [400, 2000, 2550],  # e
        [660, 1720, 2410],  # ae
        [730, 1090, 2440],  # a
        [570, 840, 2410],  # o
        [300, 870, 2240],  # u
        [520, 1190, 2390],  # uh
        [490, 1350, 1690],  # er
    ],
    dtype=np.float64,
)
_NASAL_FORMANTS = np.array([250.0, 1100.0, 2300.0])
_F4 = 3500.0
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])

_ONSET_NONE, _ONSET_STOP, _ONSET_FRICATIVE, _ONSET_NASAL = range(4)
# Share of the syllable taken by each onset type, and the fricative noise centre frequencies.
_ONSET_SHARE = {_ONSET_NONE: 0.0, _ONSET_STOP: 0.22, _ONSET_FRICATIVE: 0.30, _ONSET_NASAL: 0.25}
_FRICATIVE_CENTRES = (2500.0, 3800.0, 5500.0)

# Spread of the speakers' personal habits around each emotion profile (fixed per speaker and emotion).
_HABIT = {
    "pitch_shift": 0.5,
    "pitch_range": 0.1,
    "rate": 0.05,
    "loudness": 3.0,
    "open_quotient": 0.01,
    "tilt": 0.3,
}
# Per-utterance spread of the prosody around the emotion profile (a speaker never repeats exactly).
_SPREAD = {"pitch_shift": 0.8, "pitch_range": 0.2, "rate": 0.06, "loudness": 1.5, "open_quotient": 0.03}


@dataclass(frozen=True)
class _Syllable:
    vowel: int
    onset: int
    fricative_centre: float
    stressed: bool
    weight: float  # relative duration


@dataclass(frozen=True)
class _Sentence:
    syllables: tuple[_Syllable, ...]
    phrase_break: int  # a pause follows this syllable index


def sentence_code(sentence: int) -> str:
    """Text code of a sentence index: 3 -> ``s03``."""
    return f"s{sentence:02d}"


def _sentence_index(sentence: int | str) -> int:
    if isinstance(sentence, str):
        digits = sentence[1:] if sentence.startswith("s") else ""
        if not digits.isdigit():
            raise ValueError(f"sentence: {sentence!r} is not a sentence code like 's03' (or an int)")
        return int(digits)
    if sentence < 0:
        raise ValueError(f"sentence: {sentence} must be >= 0")
    return int(sentence)


def _sentence(index: int) -> _Sentence:
    """The syllable pattern of a sentence: the same for every speaker, emotion and seed."""
    rng = np.random.default_rng([0x5E17, index])
    n = int(rng.integers(5, 9))
    onsets = rng.choice(4, size=n, p=[0.2, 0.35, 0.3, 0.15])
    stressed = rng.random(n) < 0.4
    stressed[int(rng.integers(0, n))] = True  # every sentence carries at least one accent
    syllables = tuple(
        _Syllable(
            vowel=int(rng.integers(0, len(_VOWELS))),
            onset=int(onsets[i]),
            fricative_centre=float(rng.choice(_FRICATIVE_CENTRES)),
            stressed=bool(stressed[i]),
            weight=float(rng.uniform(0.85, 1.1) * (1.25 if stressed[i] else 0.9)),
        )
        for i in range(n)
    )
    return _Sentence(syllables, phrase_break=int(rng.integers(2, n - 2)))


def _resolve_speaker(speaker: Speaker | str) -> Speaker:
    if isinstance(speaker, Speaker):
        return speaker
    code = speaker.split("/")[-1]
    if code not in _SPEAKER_BY_CODE:
        raise ValueError(
            f"speaker: unknown synthetic speaker {speaker!r}; choose from {list(_SPEAKER_BY_CODE)}"
        )
    return _SPEAKER_BY_CODE[code]


def _stable_id(text: str) -> int:
    # Python's hash() is salted per process; crc32 keeps seeds identical across runs and workers.
    return zlib.crc32(text.encode("utf-8"))


def render_utterance(speaker: Speaker | str, emotion: str, sentence: int | str, seed: int = 0) -> np.ndarray:
    """Render one utterance as float32 mono samples at 16 kHz (about 1.5-3 s, peak below 1).

    Args:
        speaker: a `Speaker` or its code (``"F01"`` or ``"synthetic/F01"``).
        emotion: one of the ten canonical `EMOTIONS`.
        sentence: sentence index or its text code (``3`` or ``"s03"``): fixes the syllable pattern.
        seed: the repetition seed; (speaker, emotion, sentence, seed) determines the samples.
    """
    voice = _resolve_speaker(speaker)
    if emotion not in EMOTION_PROFILES:
        raise ValueError(f"emotion: {emotion!r} is not one of {list(EMOTIONS)}")
    index = _sentence_index(sentence)
    if seed < 0:
        raise ValueError(f"seed: {seed} must be >= 0")
    rng = np.random.default_rng([int(seed), _stable_id(voice.code), _stable_id(emotion), index])
    return _render(voice, speaker_profile(voice, emotion), _sentence(index), rng)


def speaker_profile(speaker: Speaker | str, emotion: str) -> EmotionProfile:
    """How this speaker acts this emotion: the shared profile, scaled by the speaker's expressiveness
    and shifted by a fixed personal habit (e.g. one speaker's anger is higher but less loud).

    The habit is what a model can memorise from a speaker's other utterances but not transfer to a new
    speaker, which is why a speaker-independent split is harder than a random one.
    """
    voice = _resolve_speaker(speaker)
    neutral, target = EMOTION_PROFILES["neutral"], EMOTION_PROFILES[emotion]
    scaled = {
        name: getattr(neutral, name) + voice.expressiveness * (getattr(target, name) - getattr(neutral, name))
        for name in target.__dataclass_fields__
    }
    habit = np.random.default_rng([_stable_id(voice.code), _stable_id(emotion), 0x4AB1])
    scaled["pitch_shift"] += habit.normal(0, _HABIT["pitch_shift"])
    scaled["pitch_range"] *= np.exp(habit.normal(0, _HABIT["pitch_range"]))
    scaled["rate"] *= np.exp(habit.normal(0, _HABIT["rate"]))
    scaled["loudness"] += habit.normal(0, _HABIT["loudness"])
    scaled["open_quotient"] += habit.normal(0, _HABIT["open_quotient"])
    scaled["tilt"] += habit.normal(0, _HABIT["tilt"])
    return EmotionProfile(**{k: float(v) for k, v in scaled.items()})


def _render(
    voice: Speaker, profile: EmotionProfile, sentence: _Sentence, rng: np.random.Generator
) -> np.ndarray:
    # --- this utterance's prosody: the profile plus a little natural variation ---
    pitch_shift = profile.pitch_shift + rng.normal(0, _SPREAD["pitch_shift"])
    pitch_range = profile.pitch_range * np.exp(rng.normal(0, _SPREAD["pitch_range"]))
    rate = voice.rate * profile.rate * np.exp(rng.normal(0, _SPREAD["rate"]))
    level_db = voice.loudness + profile.loudness + rng.normal(0, _SPREAD["loudness"])
    open_quotient = float(
        np.clip(
            profile.open_quotient + voice.open_quotient + rng.normal(0, _SPREAD["open_quotient"]), 0.3, 0.85
        )
    )
    closing_start = 0.62 * open_quotient  # glottal flow peaks here, then closes until `open_quotient`

    # --- timing: syllables (onset + vowel), the phrase-break pause, leading / trailing silence ---
    lead, trail = rng.uniform(0.08, 0.2), rng.uniform(0.1, 0.25)
    t = lead
    segments = []  # (syllable, onset start, vowel start, end)
    for i, syl in enumerate(sentence.syllables):
        duration = syl.weight / rate * rng.uniform(0.92, 1.08)
        vowel_start = t + _ONSET_SHARE[syl.onset] * duration
        segments.append((syl, t, vowel_start, t + duration))
        t += duration
        if i == sentence.phrase_break:
            t += profile.pause * rng.uniform(0.8, 1.2)
    total = t + trail
    n_samples = int(round(total * SAMPLING_RATE))
    times = np.arange(n_samples) / SAMPLING_RATE
    n_syl = len(segments)

    # --- control tracks as breakpoints, interpolated to samples / frames ---
    f0_t, f0_st = [0.0], [profile.declination / 2]
    voiced_t, voiced_a = [0.0], [0.0]
    noise_t, noise_a = [0.0], [0.0]
    formant_t, formant_v = [], []
    fricative_t, fricative_f = [], []
    attack, release = 0.02, 0.04
    for i, (syl, onset_start, vowel_start, end) in enumerate(segments):
        position = i / max(n_syl - 1, 1)
        centre = (vowel_start + end) / 2
        base = profile.declination / 2 - profile.declination * position
        accent = pitch_range * rng.uniform(0.6, 1.0) if syl.stressed else pitch_range * rng.uniform(0.0, 0.25)
        if i == n_syl - 1:
            accent += profile.final
        f0_t += [vowel_start, centre, end]
        f0_st += [base, base + accent, base + (profile.final if i == n_syl - 1 else accent * 0.3)]

        level = 10 ** ((profile.accent if syl.stressed else 0.0) / 20) * rng.uniform(0.85, 1.0)
        if syl.onset == _ONSET_NASAL:
            voiced_t += [onset_start, onset_start + attack, vowel_start]
            voiced_a += [0.0, 0.3 * level, 0.35 * level]
            formant_t.append((onset_start + vowel_start) / 2)
            formant_v.append(_NASAL_FORMANTS)
        elif syl.onset in (_ONSET_STOP, _ONSET_FRICATIVE):
            burst = onset_start + (0.6 if syl.onset == _ONSET_STOP else 0.0) * (vowel_start - onset_start)
            peak = 0.5 if syl.onset == _ONSET_STOP else 0.22
            noise_t += [burst, burst + 0.005, vowel_start - 0.005, vowel_start + 0.01]
            noise_a += [0.0, peak * level, 0.5 * peak * level, 0.0]
            fricative_t.append((burst + vowel_start) / 2)
            fricative_f.append(syl.fricative_centre if syl.onset == _ONSET_FRICATIVE else 1500.0)
            voiced_t.append(vowel_start - 0.001)
            voiced_a.append(0.0)
        else:
            voiced_t.append(vowel_start)
            voiced_a.append(0.0)
        voiced_t += [vowel_start + attack, end - release, end]
        voiced_a += [level, 0.8 * level, 0.0]
        formant_t.append(centre)
        formant_v.append(_VOWELS[syl.vowel])
    f0_t.append(total)
    f0_st.append(f0_st[-1])
    voiced_t.append(total)
    voiced_a.append(0.0)
    noise_t.append(total)
    noise_a.append(0.0)

    semitones = np.interp(times, f0_t, f0_st) + pitch_shift
    if profile.tremor:
        tremor_hz = rng.uniform(5.0, 7.0)
        semitones += profile.tremor * np.sin(2 * np.pi * tremor_hz * times + rng.uniform(0, 2 * np.pi))
    f0 = voice.f0 * 2 ** (semitones / 12)
    voiced_env = np.interp(times, voiced_t, voiced_a)
    noise_env = np.interp(times, noise_t, noise_a)

    # --- glottal source: cycle boundaries with jitter, per-cycle shimmer, flow derivative per phase ---
    cycles_done = np.concatenate([[0.0], np.cumsum(f0) / SAMPLING_RATE])  # F0 integrated over time
    n_cycles = int(cycles_done[-1]) + 2
    boundaries = np.interp(
        np.arange(n_cycles), cycles_done, np.arange(n_samples + 1) / SAMPLING_RATE, right=total + 1.0 / f0[-1]
    )
    periods = np.diff(boundaries) * np.exp(rng.normal(0, profile.jitter, n_cycles - 1))
    starts = np.concatenate([[0.0], np.cumsum(periods)])
    starts[-1] = max(starts[-1], total + 1.0 / SAMPLING_RATE)  # the last cycle covers the end
    index = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(starts) - 2)
    phase = (times - starts[index]) / (starts[index + 1] - starts[index])
    shimmer = np.exp(rng.normal(0, profile.shimmer, len(starts)))[index]
    # d(flow)/d(phase), not d/dt: the source power does not grow with F0, loudness stays a separate cue.
    opening = phase < closing_start
    closing = (phase >= closing_start) & (phase < open_quotient)
    flow_derivative = np.zeros(n_samples)
    flow_derivative[opening] = 0.5 * np.pi / closing_start * np.sin(np.pi * phase[opening] / closing_start)
    close_span = open_quotient - closing_start
    flow_derivative[closing] = (
        -0.5 * np.pi / close_span * np.sin(0.5 * np.pi * (phase[closing] - closing_start) / close_span)
    )
    # Unit closing peak: voice quality changes the spectral shape, `loudness` alone sets the level.
    flow_derivative *= close_span / (0.5 * np.pi)
    flow = np.where(opening, 0.5 * (1 - np.cos(np.pi * phase / closing_start)), 0.0)
    flow[closing] = np.cos(0.5 * np.pi * (phase[closing] - closing_start) / close_span)
    aspiration = (voice.breathiness * profile.breathiness) * rng.standard_normal(n_samples) * (0.3 + flow)
    voiced_source = (flow_derivative * shimmer + aspiration) * voiced_env
    noise_source = rng.standard_normal(n_samples) * noise_env

    # --- filter in the STFT domain: formants glide frame by frame, fricatives are shaped noise ---
    frames_voiced = _stft(voiced_source)
    frames_noise = _stft(noise_source)
    frame_times = np.arange(frames_voiced.shape[0]) * _HOP / SAMPLING_RATE  # frame centres
    freqs = rfftfreq(_N_FFT, 1 / SAMPLING_RATE)
    targets = np.asarray(formant_v) * voice.formant_scale
    targets[:, :2] *= profile.formant_shift
    formants = np.stack(
        [np.interp(frame_times, formant_t, targets[:, k]) for k in range(3)]
        + [np.full(len(frame_times), _F4 * voice.formant_scale)],
        axis=1,
    )
    bandwidths = _BANDWIDTHS * (1.0 + 0.5 * (open_quotient - 0.6))  # breathy voice: damped formants
    vocal_tract = _resonances(freqs, formants, bandwidths)
    octaves_above_1k = np.log2(np.maximum(freqs, 1000.0) / 1000.0)
    vocal_tract *= 10 ** (profile.tilt * octaves_above_1k / 20)
    if fricative_t:
        centres = np.interp(frame_times, fricative_t, fricative_f)
    else:
        centres = np.full(len(frame_times), 4000.0)
    frication = _resonances(freqs, centres[:, None], centres[:, None] * 0.5) * 0.3
    audio = _istft(frames_voiced * vocal_tract + frames_noise * frication, n_samples)

    # Calibrate the active-speech level, so that `level_db` alone (speaker + emotion) sets the loudness.
    active = (voiced_env + noise_env) > 0.05
    audio *= _ACTIVE_LEVEL / np.sqrt(np.mean(audio[active] ** 2)) * 10 ** (level_db / 20)
    audio += _NOISE_FLOOR_RMS * rng.standard_normal(n_samples)
    return np.clip(audio, -0.99, 0.99).astype(np.float32)


def _resonances(freqs: np.ndarray, centres: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """|H(f)| of cascaded two-pole resonators, unit gain at 0 Hz: (frames, n_bins)."""
    f = freqs.astype(np.float32)[None, :, None]
    bandwidths = np.broadcast_to(np.asarray(bandwidths, np.float32), centres.shape)[:, None, :]
    centres = centres.astype(np.float32)[:, None, :]
    ratio_sq = (f / centres) ** 2
    damping = f * bandwidths / centres**2
    return 1.0 / np.sqrt(np.prod((1 - ratio_sq) ** 2 + damping**2, axis=2))


# sqrt-Hann analysis and synthesis windows at 50 % overlap multiply to a Hann, which sums to exactly 1.
_WINDOW = np.sqrt(np.hanning(_N_FFT + 1)[:-1]).astype(np.float32)


def _stft(signal: np.ndarray) -> np.ndarray:
    padded = np.pad(signal, (_N_FFT // 2, _N_FFT))
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]
    return rfft(frames * _WINDOW, axis=1)


def _istft(spectra: np.ndarray, length: int) -> np.ndarray:
    frames = irfft(spectra, n=_N_FFT, axis=1) * _WINDOW
    # With hop = n_fft / 2 each frame's halves overlap-add onto the neighbours' halves.
    half = _N_FFT // 2
    out = np.zeros((spectra.shape[0] + 1) * half)
    out[: spectra.shape[0] * half] += frames[:, :half].reshape(-1)
    out[half : (spectra.shape[0] + 1) * half] += frames[:, half:].reshape(-1)
    return out[half : half + length]
