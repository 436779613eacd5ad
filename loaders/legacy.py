"""The original project's helper API (EC523-SER `dataset.py`), kept working as thin layers over the loaders.

Old code runs with only its import changed::

    from loaders import download_datasets, SpeechEmotionDataset, get_dataset_info

    download_datasets(dataset_dir, dname="emodb")       # -> loaders.download.download_corpora
    df = get_dataset_info(dataset_dir)                  # one row per recording (pandas DataFrame)
    trainset = SpeechEmotionDataset(df, fs=16000)       # (waveform, one-hot label) pairs
    loader = DataLoader(trainset, batch_size=4, collate_fn=pad_collate, num_workers=1)

What is kept from the original, and what changed on purpose:

* `get_dataset_info` keeps the columns ``filename`` (absolute path), ``speaker_n``, ``intensity``,
  ``emotion``, ``version``, ``language`` (``german`` / ``english`` / ``persian``: the original's full
  names, not the schema's ISO codes) and ``database``, with the original's values, and adds the schema's
  ``corpus``, ``speaker`` (unique ``<corpus>/<code>``), ``gender``, ``text``, ``file``, ``sample_rate``
  (native) and ``duration`` (seconds). Files are found by the corpus builders' scan, so each recording is
  listed once (the original globbed both copies of RAVDESS / TESS / SAVEE) and OS metadata is skipped.
  With ``dname=None`` the six corpora are looked for and those found are read, as in the original (a
  warning names the missing ones; none found is an error); a corpus named in ``dname`` and missing is an
  error that says how to download it. ``lenient=True`` skips (and reports, as ``python -m loaders prepare``
  does) files with unknown codes or undecodable audio, including NaN / Inf samples.
* `SpeechEmotionDataset` reads with `loaders.audio` (soundfile, FFmpeg for what it cannot read; channels
  averaged to mono: the original kept channel 0) and resamples with soxr (HQ) instead of torchaudio. The
  one-hot label is the original's ``emo2onehot``, quirk included (see `emo2onehot`); ``onehot=False``
  gives the integer class of `LEGACY_EMOTIONS` (the original returned the emotion name there).
* `pad_collate` is new: the original's `collate_fn` did not run. Without it a DataLoader with
  ``batch_size > 1`` fails on clips of different lengths, as the original did.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from . import audio, download
from .audio import BrokenAudioError
from .discovery import CorpusNotFoundError
from .loading import skip_report
from .registry import CORPUS_NAMES, find_corpus_dir, get_builder_class, locate_corpora, scan_corpus

# The original's class ids (its `EMOTIONS` dict); the order differs from `loaders.emotions.EMOTIONS`.
LEGACY_EMOTIONS: dict[str, int] = {
    "neutral": 0,
    "happy": 1,
    "sadness": 2,
    "disgust": 3,
    "anger": 4,
    "surprise": 5,
    "fear": 6,
    "anxiety": 7,
    "bored": 8,
    "calm": 9,
}

# The original's columns, then the schema's.
LEGACY_COLUMNS: tuple[str, ...] = (
    "filename",
    "speaker_n",
    "intensity",
    "emotion",
    "version",
    "language",
    "database",
)
SCHEMA_COLUMNS: tuple[str, ...] = ("corpus", "speaker", "gender", "text", "file", "sample_rate", "duration")
COLUMNS: tuple[str, ...] = LEGACY_COLUMNS + SCHEMA_COLUMNS

_READ_ADVICE = "re-download the corpus, or leave the file out (get_dataset_info(..., lenient=True))"

_LANGUAGE_NAMES = {"de": "german", "en": "english", "fa": "persian"}


def emo2onehot(emotion: str) -> torch.Tensor:
    """The original project's label vector: uint8, length 10, with index ``LEGACY_EMOTIONS[emotion] - 1`` set.

    Reproduced faithfully, quirk included: ``neutral`` (id 0) is the all-zeros vector, ``happy`` (id 1)
    sets index 0, ..., ``calm`` (id 9) sets index 8, and index 9 is never set. A cross-entropy over these
    vectors therefore has no target for neutral; use ``onehot=False`` (integer classes) for new work.
    """
    if emotion not in LEGACY_EMOTIONS:
        raise ValueError(f"emotion {emotion!r} is not one of {list(LEGACY_EMOTIONS)}")
    vector = torch.zeros(len(LEGACY_EMOTIONS), dtype=torch.uint8)
    class_id = LEGACY_EMOTIONS[emotion]
    if class_id != 0:
        vector[class_id - 1] = 1
    return vector


def download_datasets(pdir: str | os.PathLike, dname: str | Sequence[str] | None = None) -> None:
    """Download corpora into `pdir` (``dname``: one name, a list, or None for all six) from Kaggle.

    Delegates to `loaders.download.download_corpora`; corpora already complete are skipped, as before.
    """
    corpora = None if dname is None else _names(dname)
    download.download_corpora(pdir, corpora)


def get_dataset_info(
    pdir: str | os.PathLike, dname: str | Sequence[str] | None = None, lenient: bool = False
) -> pd.DataFrame:
    """One row per recording of the corpora `dname` (a name; a list; None: those of the six found) under
    `pdir`.

    Columns: `COLUMNS` (see the module docstring). Corpus folders are found as `<pdir>/<corpus>` or, as in
    the original, `<pdir>/<Kaggle dataset name>`. With `dname=None` a missing corpus is named in a warning
    and left out, and `CorpusNotFoundError` is raised only when none is found; a corpus named in `dname`
    and missing raises `CorpusNotFoundError` with the command that downloads it.

    A file with an unknown code in its name (`UnknownCodeError`) or undecodable audio (`BrokenAudioError`:
    unreadable header, NaN / Inf samples) is an error naming it; with `lenient=True` it is skipped instead,
    reported in a warning with the lines `python -m loaders prepare` prints, and listed in
    ``frame.attrs["skipped"]`` as ``(corpus, file, reason)``.
    """
    names = list(CORPUS_NAMES) if dname is None else _names(dname)
    for name in names:
        get_builder_class(name)  # a clear error for an unknown name, before any scanning
    if dname is None:
        names = _present(pdir, names)
    rows, skipped = [], []
    for name in names:
        rows.extend(_corpus_rows(pdir, name, lenient, skipped))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame = frame.astype({"sample_rate": "int64", "duration": "float64"})
    frame.attrs["skipped"] = skipped
    return frame


def _present(pdir: str | os.PathLike, names: list[str]) -> list[str]:
    """The corpora of `names` found under `pdir`; a warning names the others, an error if none is found."""
    found, not_found = locate_corpora(pdir, names)
    present, missing = list(found), list(not_found)
    if not present:
        raise CorpusNotFoundError(
            f"{pdir}: none of the corpora {names} is there; download them with "
            f"`download_datasets({str(pdir)!r})` (or one: `download_datasets({str(pdir)!r}, dname='emodb')`)"
        )
    if missing:
        warnings.warn(
            f"get_dataset_info: corpora {missing} not found under {pdir}, left out (read: {present}); "
            f"download them with `download_datasets({str(pdir)!r}, dname={missing!r})`",
            stacklevel=3,
        )
    return present


def _names(dname: str | Sequence[str]) -> list[str]:
    if isinstance(dname, str):
        return [dname]
    names = list(dname)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"dname: {dname!r}; pass a corpus name, a list of names, or None for all")
    return names


def _corpus_rows(pdir: str | os.PathLike, name: str, lenient: bool, skipped: list) -> list[dict]:
    builder_class = get_builder_class(name)
    try:
        corpus_dir = find_corpus_dir(pdir, name)
    except CorpusNotFoundError as err:
        how = (
            "write it with `loaders.synthetic.write_synthetic_corpus(pdir)`"
            if not builder_class.KAGGLE_SLUG
            else f"download it with `download_datasets({str(pdir)!r}, dname={name!r})`"
        )
        raise CorpusNotFoundError(f"{err} From the original API: {how}.") from None
    scan = scan_corpus(name, corpus_dir, lenient=lenient)
    language = _LANGUAGE_NAMES.get(builder_class.LANGUAGE, builder_class.LANGUAGE)
    rows, undecodable = [], []
    for corpus_file in scan.files:
        info = corpus_file.info
        try:
            header = audio.check_file(corpus_file.path)
        except BrokenAudioError as err:
            if not lenient:
                raise
            undecodable.append(corpus_file.file)
            skipped.append((name, corpus_file.file, f"undecodable audio: {err}"))
            continue
        rows.append(
            {
                "filename": os.path.abspath(corpus_file.path),
                **builder_class.legacy_columns(corpus_file),  # speaker_n, intensity, version
                "emotion": info.emotion,
                "language": language,
                "database": name,
                "corpus": name,
                "speaker": f"{name}/{info.speaker}",
                "gender": info.gender,
                "text": info.text,
                "file": corpus_file.file,
                "sample_rate": header.sampling_rate,
                "duration": header.duration,
            }
        )
    unknown = [(path, reason) for path, reason in scan.skipped if reason.startswith("unknown code")]
    skipped.extend((name, path, reason) for path, reason in unknown)
    if unknown or undecodable:
        report = "\n".join([f"{name}: {len(rows)} files", *skip_report(scan, undecodable)])
        warnings.warn(f"get_dataset_info (lenient): skipped files\n{report}", stacklevel=4)
    return rows


class SpeechEmotionDataset(Dataset):
    """The original's torch Dataset over a `get_dataset_info` DataFrame: items are ``(waveform, label)``.

    Args:
        dataframe: needs the columns ``filename`` and ``emotion`` (a `get_dataset_info` result or a subset).
        fs: resample every clip to this rate (soxr, HQ); None keeps each file's native rate.
        transform: applied to the float32 mono waveform tensor (e.g. a torchaudio transform).
        onehot: labels as `emo2onehot` vectors (the original's default) or, if False, integer classes of
            `LEGACY_EMOTIONS`.

    Only paths and labels are kept between items (no open files), so the dataset pickles into DataLoader
    workers. Batch clips of different lengths with ``collate_fn=pad_collate``.
    """

    def __init__(
        self,
        dataframe: pd.DataFrame,
        fs: int | None = None,
        transform=None,
        onehot: bool = True,
    ):
        missing = [c for c in ("filename", "emotion") if c not in dataframe.columns]
        if missing:
            raise ValueError(
                f"SpeechEmotionDataset: the DataFrame lacks column(s) {missing}; "
                "build it with get_dataset_info()"
            )
        unknown = sorted(set(dataframe["emotion"]) - set(LEGACY_EMOTIONS))
        if unknown:
            raise ValueError(
                f"SpeechEmotionDataset: unknown emotion(s) {unknown}; valid: {list(LEGACY_EMOTIONS)}"
            )
        if fs is not None and (not isinstance(fs, (int, np.integer)) or fs <= 0):
            raise ValueError(f"SpeechEmotionDataset: fs={fs!r}; pass a positive integer rate in Hz or None")
        self.dataframe = dataframe
        self.transform_fs = fs
        self.transform = transform
        self.onehot = onehot

    def __len__(self) -> int:
        return len(self.dataframe)

    def __getitem__(self, idx, return_all: bool = False):
        if torch.is_tensor(idx):
            idx = idx.tolist()
        if isinstance(idx, str):
            row = self.dataframe.loc[idx].to_dict()
        else:
            if not -len(self) <= idx < len(self):
                raise IndexError(f"index {idx} out of range for a dataset of {len(self)} clips")
            row = self.dataframe.iloc[idx].to_dict()
        audio, rate = read_audio(row["filename"], self.transform_fs)
        if self.transform:
            audio = self.transform(audio)
        label = emo2onehot(row["emotion"]) if self.onehot else LEGACY_EMOTIONS[row["emotion"]]
        if return_all:
            return {**row, "audio": audio, "fs": rate, "label": label}
        return audio, label


def read_audio(path: str | os.PathLike, fs: int | None = None) -> tuple[torch.Tensor, int]:
    """A file as a float32 mono tensor (channels averaged) and its rate, resampled to `fs` if given.

    An unreadable file, or one holding NaN / Inf samples, is a `BrokenAudioError` (a RuntimeError, as
    before) naming it."""
    try:
        samples, rate = audio.decode_audio(path)
    except BrokenAudioError as err:
        raise err.advise(_READ_ADVICE) from err
    if fs is not None and fs != rate:
        samples, rate = audio.resample(samples, rate, fs), fs
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), rate


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor | int]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch ``(waveform, label)`` items of different lengths: ``(padded, lengths, labels)``.

    ``padded`` is float32 ``(batch, max_len)`` (or ``(batch, ..., max_len)`` for transformed items),
    zero-padded at the end of the last axis; ``lengths`` (int64) holds each item's real length, so
    ``torch.arange(max_len) < lengths[:, None]`` is the attention mask; ``labels`` stacks the one-hot
    vectors ``(batch, 10)`` or the integer classes ``(batch,)``.
    """
    if not batch:
        raise ValueError("pad_collate: empty batch")
    waveforms = [torch.as_tensor(item[0]) for item in batch]
    lengths = torch.tensor([w.shape[-1] for w in waveforms], dtype=torch.int64)
    leading = {tuple(w.shape[:-1]) for w in waveforms}
    if len(leading) != 1:
        shapes = [tuple(w.shape) for w in waveforms]
        raise ValueError(f"pad_collate: items differ in more than their last axis: shapes {shapes}")
    padded = torch.zeros((len(batch), *leading.pop(), int(lengths.max())), dtype=torch.float32)
    for i, waveform in enumerate(waveforms):
        padded[i, ..., : waveform.shape[-1]] = waveform
    labels = [item[1] for item in batch]
    if torch.is_tensor(labels[0]):
        label_tensor = torch.stack(labels)
    else:
        label_tensor = torch.tensor(labels, dtype=torch.int64)
    return padded, lengths, label_tensor


__all__ = [
    "COLUMNS",
    "LEGACY_EMOTIONS",
    "SpeechEmotionDataset",
    "download_datasets",
    "emo2onehot",
    "get_dataset_info",
    "pad_collate",
    "read_audio",
]
