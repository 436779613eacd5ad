"""`EmotionCorpusBuilder`: the `datasets` builder every corpus shares; a corpus adds metadata and a grammar.

The builder is used as a class (datasets 4+ runs no loading scripts)::

    builder = EmoDB(data_dir="data/emodb", sampling_rate=16000)
    builder.download_and_prepare(num_proc=2)   # decodes + resamples once, in parallel; cached afterwards
    ds = builder.as_dataset(split="train")      # the whole corpus

It emits a single split named "train" holding the whole corpus (Hub convention for unsplit data); the
train/validation/test splits are made afterwards by `loaders.splits`.

Preparing at 16 kHz reads each file with `loaders.audio` (channels averaged to mono, soxr HQ resampling)
and stores 16-bit PCM WAV bytes in the Arrow cache, so training never decodes the originals again. The
cache folder is keyed by the corpus folder, the sampling rate, leniency and a fingerprint of the files
found (names, sizes, modification times): a changed folder is prepared afresh, never served stale.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass
from typing import ClassVar

import datasets
import numpy as np
from datasets.fingerprint import Hasher

# encode_wav and resample are used here and also imported from here (loaders.synthetic, loaders.fixtures).
from .audio import BrokenAudioError, check_file, decode_audio, encode_wav, resample
from .discovery import WRAPPER_FOLDERS, CorpusFile, CorpusNotFoundError, FileInfo, ScanResult, scan_folder
from .schema import SAMPLING_RATE, corpus_features

logger = logging.getLogger(__name__)


class NoSpaceError(ValueError):
    """The disk holding the cache filled up while a corpus was prepared.

    Not an OSError on purpose: datasets rewrites every OSError raised while preparing a split into
    "Cannot find data file", which would hide the cause."""


def no_space_message(what: str, where: str | os.PathLike) -> str:
    return (
        f"{what}: no space left on device writing {where}; free space there, or pass --cache_dir "
        "(cache_dir=) on a disk with room"
    )


def is_no_space(err: BaseException | None) -> bool:
    """True if `err` or an exception it was raised from is ENOSPC (also through worker tracebacks)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        if "[Errno 28]" in str(err) or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


@dataclass
class EmotionCorpusConfig(datasets.BuilderConfig):
    """Configuration of an emotion corpus builder.

    Args:
        data_dir: the corpus folder (`<data_root>/<corpus>`), as downloaded (any extra folder levels).
        sampling_rate: rate of the prepared audio; 16000 (default) stores resampled mono 16-bit WAV bytes.
            `None` stores no audio, only a reference to the native file by path (nothing is decoded).
        lenient: skip (and report) files with unknown codes in their names or undecodable audio instead of
            raising an error.
    """

    sampling_rate: int | None = SAMPLING_RATE
    lenient: bool = False

    def __post_init__(self):
        super().__post_init__()
        rate = self.sampling_rate
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0
        ):
            raise ValueError(
                f"sampling_rate={rate!r}: not a positive number of Hz; pass e.g. 16000, or None to keep "
                "each file's native rate"
            )

    def create_config_id(self, config_kwargs: dict, custom_features: datasets.Features | None = None) -> str:
        # Always key the cache by everything that changes the prepared data, even when left at its default.
        key = {
            "data_dir": os.path.abspath(self.data_dir) if self.data_dir else None,
            "sampling_rate": self.sampling_rate,
            "lenient": self.lenient,
            "features": custom_features.to_dict() if custom_features is not None else None,
        }
        rate = f"{self.sampling_rate}hz" if self.sampling_rate else "native"
        return f"{self.name}-{rate}-{Hasher.hash(key)[:16]}"


class EmotionCorpusBuilder(datasets.GeneratorBasedBuilder):
    """Base builder of one emotion corpus. Subclasses set the metadata below and implement `parse_file`."""

    NAME: ClassVar[str] = ""
    LANGUAGE: ClassVar[str] = ""  # ISO 639-1
    LICENSE: ClassVar[str] = ""
    REDISTRIBUTABLE: ClassVar[bool] = True
    KAGGLE_SLUG: ClassVar[str] = ""
    EXPECTED_FILES: ClassVar[int] = 0
    HOMEPAGE: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""
    # False for corpora generated on the fly (no folder to scan).
    NEEDS_DATA_DIR: ClassVar[bool] = True

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = EmotionCorpusConfig
    # Audio rows are large (~100 kB); small Arrow batches keep worker memory flat.
    DEFAULT_WRITER_BATCH_SIZE = 64

    def __init__(self, *args, data_dir: str | os.PathLike | None = None, hash: str | None = None, **kwargs):
        self.scan: ScanResult | None = None
        if self.NEEDS_DATA_DIR:
            if data_dir is None:
                raise ValueError(
                    f"{type(self).__name__} needs data_dir=<corpus folder>; download the corpus with "
                    f"`python -m loaders download DATA_ROOT --corpora {self.NAME}`."
                )
            data_dir = os.path.abspath(data_dir)
            self.scan = self.scan_corpus(data_dir, lenient=kwargs.get("lenient", False))
            if not self.scan.files:
                raise CorpusNotFoundError(
                    f"found no {self.NAME} files in {data_dir} ({len(self.scan.skipped)} others skipped). "
                    f"Is this the {self.NAME} folder? Download the corpus with "
                    f"`python -m loaders download DATA_ROOT --corpora {self.NAME}`."
                )
            # The cache path ends in this hash: new, removed or modified files give a fresh cache.
            hash = hash or self.scan.fingerprint
        super().__init__(*args, data_dir=data_dir, hash=hash, **kwargs)

    @classmethod
    def parse_file(cls, relpath: str) -> FileInfo | None:
        """Metadata from a file's path relative to the corpus layout; None if the name does not fit the
        corpus grammar; `UnknownCodeError` (naming the file) if it fits but holds an unknown code."""
        raise NotImplementedError

    @classmethod
    def folder_names(cls) -> tuple[str, ...]:
        """Names the corpus folder goes by under a data root: `<NAME>`, then the original project's
        `<last part of the Kaggle slug>` (corpora with a download only)."""
        slug_tail = cls.KAGGLE_SLUG.rsplit("/", 1)[-1]
        return (cls.NAME, slug_tail) if slug_tail else (cls.NAME,)

    @classmethod
    def scan_corpus(cls, corpus_dir: str | os.PathLike, lenient: bool = False) -> ScanResult:
        """The files of this corpus in `corpus_dir` (see `loaders.discovery.scan_folder`)."""
        # A download tool may repeat the corpus folder inside itself (`emodb/emodb/wav/...`).
        wrappers = WRAPPER_FOLDERS | {folder.lower() for folder in cls.folder_names()}
        return scan_folder(
            cls.NAME, corpus_dir, cls.parse_file, wrappers=frozenset(wrappers), lenient=lenient
        )

    @classmethod
    def legacy_columns(cls, corpus_file: CorpusFile) -> dict[str, int | str]:
        """The original project's (EC523-SER `get_dataset_info`) `speaker_n`, `intensity` and `version` of
        one file, by its per-corpus rules; `loaders.legacy` adds them to its rows.

        Here the rules most corpora shared: `speaker_n` the number in the speaker code, `intensity` as the
        schema has it or "NA", no `version` ("NA"). A corpus whose original rules differ overrides this."""
        info = corpus_file.info
        digits = re.sub(r"\D", "", info.speaker)
        return {
            "speaker_n": int(digits) if digits else info.speaker,
            "intensity": info.intensity or "NA",
            "version": "NA",
        }

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=corpus_features(self.config.sampling_rate),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            license=self.LICENSE,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        # datasets' Audio.encode_example imports torch and torchcodec (seconds); importing them here, in the
        # parent, lets the forked workers inherit them instead of each paying again.
        import torchcodec.encoders  # noqa: F401

        # One list entry per file: datasets shards this list across `num_proc` workers, keeping its order.
        return [
            datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"files": list(self.scan.files)})
        ]

    def _generate_examples(self, files: list[CorpusFile]):
        for corpus_file in files:
            try:
                audio, duration = self._audio(corpus_file)
            except BrokenAudioError as err:
                if not self.config.lenient:
                    raise
                logger.warning("%s: skipping undecodable file (lenient): %s", self.NAME, err)
                continue
            yield (
                corpus_file.file,
                {"audio": audio, "duration": duration, **self.example_metadata(corpus_file)},
            )

    def _prepare_split_single(self, *args, **kwargs):
        # datasets wraps every error of a shard in DatasetGenerationError("An error occurred while generating
        # the dataset"), and a worker process sends only that wrapper back, the cause as traceback text. Raise
        # the cause itself (picklable, one line) for the errors that are the user's to fix.
        try:
            yield from super()._prepare_split_single(*args, **kwargs)
        except datasets.exceptions.DatasetGenerationError as err:
            cause = err.__cause__
            if isinstance(cause, BrokenAudioError):
                raise BrokenAudioError(str(cause)) from None
            if is_no_space(cause):
                raise NoSpaceError(no_space_message(self.NAME, self.cache_dir)) from None
            raise

    def check_audio(self) -> None:
        """Raise `BrokenAudioError` naming the files that cannot be prepared, before any work is done.

        Reads every header (what `stats` reads too) and decodes only float files, the only kind that can hold
        NaN / Inf: the six corpora are 16-bit, so this costs one small read per file."""
        broken = []
        for corpus_file in self.scan.files:
            try:
                check_file(corpus_file.path)
            except BrokenAudioError as err:
                broken.append((corpus_file.path, err))
        if len(broken) == 1:
            raise broken[0][1]
        if broken:
            names = ", ".join(path for path, _ in broken[:3]) + (", ..." if len(broken) > 3 else "")
            raise BrokenAudioError(
                f"{self.NAME}: {len(broken)} files cannot be decoded ({names}; first: {broken[0][1]})"
            )

    def _audio(self, corpus_file: CorpusFile) -> tuple[dict | str, float]:
        """The `audio` value and the native duration in seconds of one file."""
        if self.config.sampling_rate is None:
            return corpus_file.path, read_duration(corpus_file.path)
        samples, native_rate = decode_audio(corpus_file.path)
        resampled = resample(samples, native_rate, self.config.sampling_rate)
        wav = encode_wav(resampled, self.config.sampling_rate)
        duration = len(samples) / native_rate
        if os.path.isfile(corpus_file.file):
            # datasets would store a path that exists from the working directory as a reference, not the
            # bytes (happens when run from inside the corpus folder): store bare bytes then.
            return wav, duration
        return {"bytes": wav, "path": corpus_file.file}, duration

    def example_metadata(self, corpus_file: CorpusFile) -> dict:
        """Every column but `audio` and `duration`."""
        info = corpus_file.info
        return {
            "label": info.emotion,
            "emotion": info.emotion,
            "corpus": self.NAME,
            "speaker": f"{self.NAME}/{info.speaker}",
            "gender": info.gender,
            "language": self.LANGUAGE,
            "text": info.text,
            "intensity": info.intensity,
            "file": corpus_file.file,
        }

    def missing_files(self) -> list[str]:
        """Corpus files found by the scan but absent from the prepared data (undecodable, lenient mode)."""
        prepared = set(self.as_dataset(split="train")["file"])
        return [f.file for f in self.scan.files if f.file not in prepared]


def read_duration(path: str) -> float:
    """Duration in seconds from the file header (no samples decoded, except in float files, checked for
    NaN / Inf: stored as references, they would reach training undecoded)."""
    return check_file(path).duration
