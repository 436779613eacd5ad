"""The built-in demo corpus `synthetic`: acted-emotion-like speech generated from a seed, no download.

Which utterances the corpus holds (`corpus_plan`: speakers x emotions x sentences x repetitions), its
`datasets` builder (`Synthetic`) and a writer of the same utterances as WAV files
(`write_synthetic_corpus`). The audio itself is rendered by the source-filter synthesiser in
`loaders.synthesis` (speakers, emotion profiles, `render_utterance`), whose docstring describes the voices
and how well the emotions separate.

Schema values: corpus ``synthetic``, speaker ``synthetic/F01``, language ``en`` (the syllables are
English-like vowels; models and stats treat it as an English corpus), text = sentence code ``s03``,
intensity ``""``, file = a stable pseudo path ``F01/anger_s03_r1.wav`` (``r`` = repetition).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import datasets
import numpy as np
import soundfile as sf
from datasets.fingerprint import Hasher

from . import synthesis
from .builder import EmotionCorpusBuilder, EmotionCorpusConfig, encode_wav, resample
from .discovery import CorpusFile, FileInfo, UnknownCodeError, lookup_code
from .emotions import DEFAULT_EMOTIONS, EMOTIONS
from .schema import SAMPLING_RATE
from .synthesis import SPEAKERS, Speaker, render_utterance, sentence_code

CORPUS = "synthetic"
LANGUAGE = "en"


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance of the corpus: who says which sentence in which emotion, and its pseudo file path."""

    speaker: Speaker
    emotion: str
    sentence: int
    repetition: int  # 1-based
    seed: int  # the `render_utterance` seed

    @property
    def file(self) -> str:
        return f"{self.speaker.code}/{self.emotion}_{sentence_code(self.sentence)}_r{self.repetition}.wav"

    def render(self) -> np.ndarray:
        return render_utterance(self.speaker, self.emotion, self.sentence, self.seed)


def corpus_plan(
    num_speakers: int = len(SPEAKERS),
    utterances: int = 20,
    sentences: int = 10,
    emotions: Sequence[str] = DEFAULT_EMOTIONS,
    seed: int = 0,
) -> list[PlannedUtterance]:
    """The utterances of a synthetic corpus, sorted by file: for every speaker (the first `num_speakers`
    of `SPEAKERS`) and emotion, `utterances` recordings cycling through `sentences` sentence codes
    (utterance u says sentence u % sentences, repetition u // sentences + 1)."""
    if not 1 <= num_speakers <= len(SPEAKERS):
        raise ValueError(f"num_speakers: {num_speakers}; the synthetic corpus has 1-{len(SPEAKERS)} speakers")
    if utterances < 1 or sentences < 1:
        raise ValueError(f"utterances ({utterances}) and sentences ({sentences}) must be >= 1")
    if seed < 0:
        raise ValueError(f"seed: {seed} must be >= 0")
    unknown = [e for e in emotions if e not in EMOTIONS]
    if unknown or not emotions:
        raise ValueError(f"emotions: {list(emotions)} must be a non-empty choice from {list(EMOTIONS)}")
    plan = [
        PlannedUtterance(
            speaker, emotion, u % sentences, u // sentences + 1, seed=seed * 1_000_003 + u // sentences
        )
        for speaker in SPEAKERS[:num_speakers]
        for emotion in emotions
        for u in range(utterances)
    ]
    return sorted(plan, key=lambda p: p.file)


@dataclass
class SyntheticConfig(EmotionCorpusConfig):
    """Configuration of the synthetic corpus (the size defaults suit a few-minute CPU training run).

    Args:
        num_speakers: how many of `SPEAKERS` speak (first n; they alternate female / male), 1-12.
        utterances: utterances per speaker and emotion.
        sentences: distinct sentence codes (`text`), cycled through by the utterances.
        emotions: the emotions rendered (default the four of `DEFAULT_EMOTIONS`; config "all_emotions":
            all ten).
        seed: corpus seed; another seed renders other takes of the same plan.
        sampling_rate: rate of the stored audio (rendered at 16 kHz, resampled otherwise; `None`: 16 kHz).
    """

    num_speakers: int = len(SPEAKERS)
    utterances: int = 20
    sentences: int = 10
    emotions: tuple[str, ...] = DEFAULT_EMOTIONS
    seed: int = 0

    def create_config_id(self, config_kwargs: dict, custom_features: datasets.Features | None = None) -> str:
        key = {
            "sampling_rate": self.sampling_rate,
            "plan": [self.num_speakers, self.utterances, self.sentences, list(self.emotions), self.seed],
            "features": custom_features.to_dict() if custom_features is not None else None,
        }
        rate = f"{self.sampling_rate}hz" if self.sampling_rate else "native"
        return f"{self.name}-{rate}-{Hasher.hash(key)[:16]}"


# The cache is keyed by the source of the synthesiser and of this builder too: a change to either never
# serves stale audio.
_SOURCE_FILES = (Path(synthesis.__file__), Path(__file__))
_SOURCE_HASH = Hasher.hash([path.read_bytes() for path in _SOURCE_FILES])[:16]
_GENDERS = {s.code: s.gender for s in SPEAKERS}
_FILE_PATTERN = re.compile(r"(?P<speaker>[FM]\d\d)/(?P<emotion>[a-z]+)_(?P<text>s\d+)_r(?P<repetition>\d+)")


class Synthetic(EmotionCorpusBuilder):
    """The synthetic demo corpus, generated on the fly (no download, no data folder).

        ds = load_corpus("synthetic", None)                      # 12 speakers x 4 emotions x 20
        builder = Synthetic(num_speakers=4, utterances=5, cache_dir="cache")
        builder = Synthetic(config_name="all_emotions")          # all ten emotions

    A folder written by `write_synthetic_corpus` can also be scanned like a downloaded corpus
    (`scan_corpus("synthetic", folder)`), through `parse_file`.
    """

    NAME = CORPUS
    LANGUAGE = LANGUAGE
    LICENSE = "apache-2.0"
    REDISTRIBUTABLE = True
    NEEDS_DATA_DIR = False
    DESCRIPTION = (
        "Synthetic acted-emotion speech: 12 source-filter voices (6 female, 6 male) render made-up sentences "
        "with emotion carried by pitch, rate, loudness and voice quality. For demos and tests."
    )

    BUILDER_CONFIG_CLASS = SyntheticConfig
    BUILDER_CONFIGS = [
        SyntheticConfig(name="default", description="the four default emotions"),
        SyntheticConfig(name="all_emotions", emotions=EMOTIONS, description="all ten canonical emotions"),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *args, data_dir: str | os.PathLike | None = None, hash: str | None = None, **kwargs):
        if data_dir is not None:
            raise ValueError("the synthetic corpus is generated: pass no data_dir")
        super().__init__(*args, hash=hash or _SOURCE_HASH, **kwargs)
        # datasets sets keyword overrides on a copy of a named config without re-running any checks.
        self.config.emotions = tuple(self.config.emotions)
        self.plan()  # raises on a bad size, seed or emotion

    def plan(self) -> list[PlannedUtterance]:
        c = self.config
        return corpus_plan(c.num_speakers, c.utterances, c.sentences, c.emotions, c.seed)

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        import torchcodec.encoders  # noqa: F401  (see EmotionCorpusBuilder._split_generators)

        # A list: datasets shards it across `num_proc` workers.
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"plan": self.plan()})]

    def _generate_examples(self, plan: list[PlannedUtterance]) -> Iterator[tuple[str, dict]]:
        rate = self.config.sampling_rate or SAMPLING_RATE
        for utterance in plan:
            samples = utterance.render()
            wav = encode_wav(resample(samples, SAMPLING_RATE, rate), rate)
            # A path that exists from the working directory would be stored as a reference: bytes only then.
            audio = wav if os.path.isfile(utterance.file) else {"bytes": wav, "path": utterance.file}
            yield (
                utterance.file,
                {
                    "audio": audio,
                    "label": utterance.emotion,
                    "emotion": utterance.emotion,
                    "corpus": CORPUS,
                    "speaker": f"{CORPUS}/{utterance.speaker.code}",
                    "gender": utterance.speaker.gender,
                    "language": LANGUAGE,
                    "text": sentence_code(utterance.sentence),
                    "intensity": "",
                    "file": utterance.file,
                    "duration": len(samples) / SAMPLING_RATE,
                },
            )

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        """`F01/anger_s03_r1.wav` -> speaker F01, anger, text s03 (files of `write_synthetic_corpus`)."""
        stem = relpath[: -len(".wav")] if relpath.lower().endswith(".wav") else relpath
        match = _FILE_PATTERN.fullmatch(stem)
        if match is None:
            return None
        speaker = lookup_code({code: code for code in _GENDERS}, match["speaker"], relpath, "speaker")
        if match["emotion"] not in EMOTIONS:
            valid = ", ".join(EMOTIONS)
            raise UnknownCodeError(relpath, f"unknown emotion {match['emotion']!r} (valid: {valid})")
        return FileInfo(
            emotion=match["emotion"],
            speaker=speaker,
            gender=_GENDERS[speaker],
            utterance=stem,
            text=match["text"],
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        # `version`: the repetition (`F01/anger_s03_r1.wav` -> "1"), as the other corpora's take numbers.
        repetition = re.search(r"_r(\d+)$", PurePosixPath(corpus_file.file).stem)
        return {**super().legacy_columns(corpus_file), "version": repetition[1] if repetition else "NA"}


def write_synthetic_corpus(
    data_root: str | os.PathLike,
    *,
    num_speakers: int = len(SPEAKERS),
    utterances: int = 20,
    sentences: int = 10,
    emotions: Sequence[str] = DEFAULT_EMOTIONS,
    seed: int = 0,
) -> Path:
    """Write the synthetic corpus as 16 kHz PCM-16 WAV files under `<data_root>/synthetic/` (the same
    utterances as the builder with the same arguments); return that folder. Existing files are overwritten.

    For file-based code paths (the original project's `get_dataset_info(root, "synthetic")`, `scan_corpus`).
    """
    corpus_dir = Path(data_root) / CORPUS
    for utterance in corpus_plan(num_speakers, utterances, sentences, emotions, seed):
        path = corpus_dir / utterance.file
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, utterance.render(), SAMPLING_RATE, subtype="PCM_16")
    return corpus_dir
