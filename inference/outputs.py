"""What a prediction gives back: per-file records, the per-segment timeline, and their formats.

The records are built here once and shared: the command line prints them as a table (and timelines)
and writes them as CSV or JSON; the web demo shows the same timeline rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence

from .classify import FileResult

__all__ = [
    "TIMELINE_COLUMNS",
    "format_ranked",
    "format_table",
    "format_timeline",
    "results_to_records",
    "timeline_records",
    "write_csv",
    "write_results",
    "write_timeline",
]

# A timeline row's columns besides ``file`` and the per-emotion ``prob_<label>``.
TIMELINE_COLUMNS = ("start", "end", "emotion", "score")


def results_to_records(results: Sequence[FileResult], labels: list[str], top_k: int) -> list[dict]:
    """One flat dict per file: status, top-k, and the probability of every emotion."""
    records = []
    for result in results:
        record: dict = {
            "file": result.path,
            "status": result.status,
            "error": result.error,
            "duration": round(result.duration, 3),
            "segmentation": result.segmentation,
            "segments": len(result.segments),
        }
        ranked = result.top_k(labels, top_k)
        for rank in range(top_k):
            label, score = ranked[rank] if rank < len(ranked) else ("", None)
            record[f"emotion_{rank + 1}"] = label
            record[f"score_{rank + 1}"] = None if score is None else round(score, 6)
        for i, label in enumerate(labels):
            record[f"prob_{label}"] = (
                None if result.probabilities is None else round(float(result.probabilities[i]), 6)
            )
        records.append(record)
    return records


def timeline_records(results: Sequence[FileResult], labels: list[str]) -> list[dict]:
    """One dict per classified segment: file, start, end, emotion, score and every probability."""
    rows = []
    for result in results:
        for segment in result.segments:
            emotion, score = segment.emotion(labels)
            row = {
                "file": result.path,
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "emotion": emotion,
                "score": round(score, 6),
            }
            row.update(
                {
                    f"prob_{label}": round(float(p), 6)
                    for label, p in zip(labels, segment.probabilities, strict=True)
                }
            )
            rows.append(row)
    return rows


def write_csv(path: str, rows: list[dict]) -> None:
    """``rows`` as CSV with the first row's keys as header; no rows, an empty file."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if not rows:
            return
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_timeline(path: str, results: Sequence[FileResult], labels: list[str]) -> None:
    """Every file's timeline in one CSV: a row per classified segment."""
    write_csv(path, timeline_records(results, labels))


def write_results(path: str, results: Sequence[FileResult], labels: list[str], top_k: int) -> None:
    """``.json``: a list of files, each with its top-k, probabilities and timeline; otherwise CSV rows."""
    if path.lower().endswith(".json"):
        payload = []
        for record, result in zip(results_to_records(results, labels, top_k), results, strict=True):
            payload.append(
                {
                    "file": result.path,
                    "status": result.status,
                    "error": result.error,
                    "duration": record["duration"],
                    "segmentation": result.segmentation,
                    "top_k": [{"emotion": e, "score": round(s, 6)} for e, s in result.top_k(labels, top_k)],
                    "probabilities": None
                    if result.probabilities is None
                    else {
                        label: round(float(p), 6)
                        for label, p in zip(labels, result.probabilities, strict=True)
                    },
                    "timeline": [
                        {k: row[k] for k in TIMELINE_COLUMNS} for row in timeline_records([result], labels)
                    ],
                    "silent_segments": result.silent_segments,
                }
            )
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    else:
        write_csv(path, results_to_records(results, labels, top_k))


def format_ranked(ranked: Sequence[tuple[str, float]]) -> str:
    """``happy 0.612  neutral 0.201 ...``: a top-k as printed by the table and the streaming loop."""
    return "  ".join(f"{label} {score:.3f}" for label, score in ranked)


def format_table(results: Sequence[FileResult], labels: list[str], top_k: int) -> str:
    """One line per file: its top-k, or its status and reason; long recordings add their segmentation."""
    lines = []
    width = min(60, max([len(r.path) for r in results] + [4]))
    for result in results:
        name = result.path if len(result.path) <= width else "..." + result.path[-(width - 3) :]
        if result.status != "ok":
            lines.append(f"{name:<{width}}  {result.status.upper()}: {result.error}")
            continue
        ranked = format_ranked(result.top_k(labels, top_k))
        silent = f", {result.silent_segments} silent left out" if result.silent_segments else ""
        extra = f"  [{result.duration:.1f} s, {len(result.segments)} segments, {result.segmentation}{silent}]"
        lines.append(f"{name:<{width}}  {ranked}{extra if result.segmentation != 'whole' else ''}")
    return "\n".join(lines)


def format_timeline(result: FileResult, labels: list[str]) -> str:
    rows = [f"{result.path}: timeline"]
    for row in timeline_records([result], labels):
        rows.append(f"  {row['start']:9.2f} - {row['end']:9.2f} s  {row['emotion']:<10} {row['score']:.3f}")
    return "\n".join(rows)
