"""What a data root holds: files per emotion and corpus, speakers, hours, native rates, duplicates, skips.

Only file names and audio headers are read (`soundfile.info`), never samples, so a full data root is
summarised in seconds.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import soundfile as sf

from .emotions import EMOTIONS
from .registry import find_corpus_dir, get_builder_class, locate_corpora, scan_corpus, validate_corpus_names


@dataclass
class CorpusStats:
    """Summary of one corpus folder (see `corpus_stats`)."""

    corpus: str
    folder: str
    expected_files: int
    counts: dict[str, int] = field(default_factory=dict)  # emotion -> files
    speakers: dict[str, int] = field(default_factory=dict)  # gender -> speakers
    seconds: float = 0.0
    sample_rates: dict[int, int] = field(default_factory=dict)  # native rate -> files
    duplicates: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def files(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            "folder": self.folder,
            "files": self.files,
            "expected_files": self.expected_files,
            "counts": self.counts,
            "speakers": sum(self.speakers.values()),
            "speakers_by_gender": self.speakers,
            "hours": round(self.seconds / 3600, 4),
            "sample_rates": {str(rate): n for rate, n in sorted(self.sample_rates.items())},
            "duplicates": self.duplicates,
            "skipped": [list(item) for item in self.skipped],
            "skipped_by_reason": dict(Counter(_reason_kind(reason) for _, reason in self.skipped)),
        }


@dataclass
class DataRootStats:
    corpora: dict[str, CorpusStats]
    missing: dict[str, str]  # corpus -> why it was not found

    def to_dict(self) -> dict:
        return {
            "counts": {name: s.counts for name, s in self.corpora.items()},
            "corpora": {name: s.to_dict() for name, s in self.corpora.items()},
            "missing": self.missing,
        }


def corpus_stats(name: str, corpus_dir: str | os.PathLike, lenient: bool = False) -> CorpusStats:
    """Scan corpus `name` in `corpus_dir` and read every kept file's header.

    An unreadable header is an error naming the file; with `lenient` the file is skipped and reported.
    """
    scan = scan_corpus(name, corpus_dir, lenient=lenient)
    stats = CorpusStats(
        corpus=name,
        folder=str(corpus_dir),
        expected_files=get_builder_class(name).EXPECTED_FILES,
        duplicates=scan.duplicates,
        skipped=list(scan.skipped),
    )
    counts, rates, genders = Counter(), Counter(), {}
    for corpus_file in scan.files:
        try:
            info = sf.info(corpus_file.path)
        except (sf.LibsndfileError, RuntimeError) as err:
            if not lenient:
                raise RuntimeError(
                    f"{corpus_file.path}: cannot read audio header ({err}). Re-download the file, or pass "
                    "--lenient to skip it."
                ) from err
            stats.skipped.append((corpus_file.file, f"undecodable audio: {err}"))
            continue
        counts[corpus_file.info.emotion] += 1
        rates[info.samplerate] += 1
        stats.seconds += info.frames / info.samplerate
        genders[corpus_file.info.speaker] = corpus_file.info.gender
    stats.counts = {e: counts[e] for e in EMOTIONS if counts[e]}
    stats.sample_rates = dict(sorted(rates.items()))
    stats.speakers = dict(sorted(Counter(genders.values()).items()))
    return stats


def collect_stats(
    data_root: str | os.PathLike, corpora: Sequence[str] | None = None, lenient: bool = False
) -> DataRootStats:
    """Stats of every corpus found under `data_root`. Corpora named in `corpora` must be present; without
    `corpora`, the six downloadable ones are looked for and the absent (or empty) ones listed as missing.
    Generated corpora have no folder to count and are left out."""
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"data root {data_root} is not a folder")
    if corpora:
        names = [n for n in validate_corpus_names(list(corpora)) if get_builder_class(n).NEEDS_DATA_DIR]
        folders, missing = {name: find_corpus_dir(data_root, name) for name in names}, {}
    else:
        folders, missing = locate_corpora(data_root)
    found = {name: corpus_stats(name, folder, lenient=lenient) for name, folder in folders.items()}
    return DataRootStats(found, missing)


def format_stats(stats: DataRootStats) -> str:
    """The count table (emotion x corpus, with totals) and a per-corpus summary, as Markdown."""
    names = list(stats.corpora)
    lines = ["| emotion | " + " | ".join(names) + " | total |", "|---" * (len(names) + 2) + "|"]
    for emotion in EMOTIONS:
        row = [stats.corpora[n].counts.get(emotion, 0) for n in names]
        if any(row):
            lines.append(
                f"| {emotion} | " + " | ".join(str(c) if c else "" for c in row) + f" | {sum(row)} |"
            )
    totals = [stats.corpora[n].files for n in names]
    lines.append("| total | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    lines.append("")
    for name, s in stats.corpora.items():
        speakers = ", ".join(f"{n} {g or 'unknown'}" for g, n in s.speakers.items())
        rates = ", ".join(f"{rate} Hz: {n}" for rate, n in s.sample_rates.items())
        lines.append(f"{name} ({s.folder})")
        expected = (
            "" if s.files == s.expected_files else f" (EXPECTED {s.expected_files}: incomplete download?)"
        )
        lines.append(f"  files: {s.files}{expected}; speakers: {sum(s.speakers.values())} ({speakers})")
        lines.append(f"  hours: {s.seconds / 3600:.2f}; native rates: {rates}")
        lines.append(f"  duplicate copies ignored: {s.duplicates}; skipped: {len(s.skipped)}")
        for reason, n in Counter(_reason_kind(r) for _, r in s.skipped).most_common():
            lines.append(f"    {n} x {reason}")
        for path, reason in s.skipped:
            if reason.startswith(("unknown code", "undecodable", "name does not fit")):
                lines.append(f"    {path}: {reason}")
    for name, why in stats.missing.items():
        lines.append(f"{name}: not found ({why})")
    return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """The reason without its file-specific detail (for counting)."""
    for kind in ("unknown code", "undecodable audio"):
        if reason.startswith(kind):
            return kind
    return reason
