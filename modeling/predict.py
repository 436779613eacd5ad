"""Use a trained emotion classifier: files, folders and long recordings; live streaming; ONNX export.

    python -m modeling.predict MODEL PATH... [--top_k 3] [--output out.csv|out.json] [--batch_size 8]
                               [--segment {auto,vad,fixed,none}] [--timeline timeline.csv]
    python -m modeling.predict MODEL file.wav --stream [--chunk_ms 20]      # S4, causal configuration
    python -m modeling.predict export-onnx MODEL OUT.onnx

MODEL is a local directory written by ``save_pretrained`` or a Hub id. PATHs are files, folders (walked
recursively; files without an audio extension are reported as skipped) or glob patterns. Every input
is decoded by soundfile or, failing that, FFmpeg (torchcodec), downmixed to mono and resampled to the
model's rate. Recordings longer than ``--max_segment`` seconds are cut into speech segments by an
energy voice-activity detector (or fixed overlapping windows) and read segment by segment, so memory
stays bounded for hours of audio; each gets a timeline and a duration-weighted summary.

Exit status: 0 when every input was classified, 1 when any failed (each failure is printed with its
reason; the other files are still processed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import sys
from collections.abc import Iterable, Sequence

from modeling.inference.audio_io import AUDIO_EXTENSIONS
from modeling.inference.classify import (
    SEGMENT_MODES,
    EmotionClassifier,
    FileResult,
    PredictOptions,
    predict_files,
)
from modeling.inference.segmentation import VadConfig

__all__ = [
    "EmotionClassifier",
    "FileResult",
    "PredictOptions",
    "collect_inputs",
    "main",
    "predict_files",
    "results_to_records",
    "timeline_records",
]

# Files a folder walk passes over without comment: OS and editor metadata, never anyone's audio.
_METADATA_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def _is_metadata(name: str) -> bool:
    return name.lower() in _METADATA_NAMES or name.startswith("._")


def collect_inputs(paths: Iterable[str]) -> list[tuple[str, str | None]]:
    """Expand files, folders (recursive) and globs into ``(path, skip_reason)`` in a stable order.

    A folder's files without an audio extension come back with a skip reason, so they are reported
    rather than silently ignored; OS metadata files (``.DS_Store``, ``._*``) are dropped. A path that
    does not exist and matches no glob comes back as itself, to be reported as failed.
    """
    entries: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str, reason: str | None) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            entries.append((path, reason))

    def walk(folder: str) -> None:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if _is_metadata(name):
                    continue
                path = os.path.join(root, name)
                if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                    add(path, None)
                else:
                    add(path, f"not an audio file (extension {os.path.splitext(name)[1] or 'none'!r})")

    for raw in paths:
        if os.path.isdir(raw):
            walk(raw)
        elif os.path.exists(raw):
            add(raw, None)
        elif glob.has_magic(raw):
            matches = sorted(glob.glob(raw, recursive=True))
            if not matches:
                add(raw, None)  # fails later with "no such file"
            for match in matches:
                walk(match) if os.path.isdir(match) else add(match, None)
        else:
            add(raw, None)
    return entries


# -- output ---------------------------------------------------------------------------------------


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


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if not rows:
            return
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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
                        {k: row[k] for k in ("start", "end", "emotion", "score")}
                        for row in timeline_records([result], labels)
                    ],
                    "silent_segments": result.silent_segments,
                }
            )
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    else:
        _write_csv(path, results_to_records(results, labels, top_k))


def format_table(results: Sequence[FileResult], labels: list[str], top_k: int) -> str:
    lines = []
    width = min(60, max([len(r.path) for r in results] + [4]))
    for result in results:
        name = result.path if len(result.path) <= width else "..." + result.path[-(width - 3) :]
        if result.status != "ok":
            lines.append(f"{name:<{width}}  {result.status.upper()}: {result.error}")
            continue
        ranked = "  ".join(f"{label} {score:.3f}" for label, score in result.top_k(labels, top_k))
        silent = f", {result.silent_segments} silent left out" if result.silent_segments else ""
        extra = f"  [{result.duration:.1f} s, {len(result.segments)} segments, {result.segmentation}{silent}]"
        lines.append(f"{name:<{width}}  {ranked}{extra if result.segmentation != 'whole' else ''}")
    return "\n".join(lines)


def format_timeline(result: FileResult, labels: list[str]) -> str:
    rows = [f"{result.path}: timeline"]
    for row in timeline_records([result], labels):
        rows.append(f"  {row['start']:9.2f} - {row['end']:9.2f} s  {row['emotion']:<10} {row['score']:.3f}")
    return "\n".join(rows)


# -- commands ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modeling.predict",
        description="Predict emotions for audio files with a trained model (also: `export-onnx MODEL OUT`).",
    )
    parser.add_argument("model", help="model directory (save_pretrained) or Hub id")
    parser.add_argument("paths", nargs="+", help="audio files, folders (recursive) or glob patterns")
    parser.add_argument("--top_k", type=int, default=3, help="emotions listed per file (default 3)")
    parser.add_argument("--output", help="write per-file results to this .csv or .json file")
    parser.add_argument("--timeline", help="write the per-segment timeline of every file to this .csv file")
    parser.add_argument("--print_timeline", action="store_true", help="print each file's timeline")
    parser.add_argument("--batch_size", type=int, default=8, help="segments per forward pass (default 8)")
    parser.add_argument(
        "--segment",
        choices=SEGMENT_MODES,
        default="auto",
        help="auto: clips up to --max_segment s whole, longer recordings by voice "
        "activity (fixed windows when no pause is found); vad; fixed; none: whole "
        "file as one input",
    )
    parser.add_argument("--max_segment", type=float, default=10.0, help="longest segment in seconds (10)")
    parser.add_argument("--window", type=float, default=5.0, help="fixed-window length in seconds (5)")
    parser.add_argument("--overlap", type=float, default=1.0, help="fixed-window overlap in seconds (1)")
    parser.add_argument(
        "--vad_floor_db",
        type=float,
        default=-55.0,
        help="level (dBFS) below which audio counts as silence (-55)",
    )
    parser.add_argument(
        "--vad_threshold_db",
        type=float,
        default=None,
        help="fixed speech threshold in dBFS instead of the adaptive one",
    )
    parser.add_argument(
        "--min_silence", type=float, default=0.3, help="pauses shorter than this are bridged (s)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--trust_remote_code", action="store_true", help="allow a Hub model's own code")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="S4 (causal) only: feed each file in --chunk_ms chunks and print the running emotion",
    )
    parser.add_argument("--chunk_ms", type=float, default=20.0, help="chunk length for --stream (20 ms)")
    parser.add_argument("--print_every", type=float, default=0.5, help="seconds between --stream updates")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def _run_stream(classifier: EmotionClassifier, entries, args) -> int:
    from modeling.inference.audio_io import AudioReadError, AudioSource
    from modeling.inference.streaming import StreamingClassifier

    try:
        streamer = StreamingClassifier(classifier.model, classifier.feature_extractor)
    except (TypeError, ValueError) as error:
        print(f"--stream: {args.model}: {error}", file=sys.stderr)
        return 2
    failures = 0
    for path, skip in entries:
        if skip:
            print(f"{path}: SKIPPED: {skip}")
            continue
        streamer.reset()
        chunk = max(1, round(args.chunk_ms / 1000 * streamer.sampling_rate))
        every = max(1, round(args.print_every * streamer.sampling_rate))
        try:
            with AudioSource(path, streamer.sampling_rate) as source:
                fed, next_print = 0, every
                for block in source.blocks(1.0):
                    for i in range(0, len(block), chunk):
                        probabilities = streamer.push(block[i : i + chunk])
                        fed += len(block[i : i + chunk])
                        if fed >= next_print and probabilities is not None:
                            next_print += every
                            ranked = classifier.top_k(probabilities, args.top_k)
                            shown = "  ".join(f"{e} {s:.3f}" for e, s in ranked)
                            print(f"{path}  t={fed / streamer.sampling_rate:7.2f} s  {shown}", flush=True)
            probabilities = streamer.probabilities()
            if probabilities is None:
                raise AudioReadError(f"{path}: too short to produce one frame")
            shown = "  ".join(f"{e} {s:.3f}" for e, s in classifier.top_k(probabilities, args.top_k))
            print(f"{path}  final  {shown}")
        except (AudioReadError, OSError, RuntimeError, ValueError) as error:
            failures += 1
            print(f"{path}: FAILED: {error}", file=sys.stderr)
    return 1 if failures else 0


def run_predict(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.top_k < 1:
        _parser().error("--top_k must be >= 1")
    if not 0 <= args.overlap < args.window:
        _parser().error(f"--overlap must be in [0, --window); got {args.overlap} and {args.window}")
    entries = collect_inputs(args.paths)
    classifier = EmotionClassifier.from_pretrained(args.model, args.device, args.trust_remote_code)
    if args.stream:
        return _run_stream(classifier, entries, args)
    options = PredictOptions(
        segment=args.segment,
        batch_size=args.batch_size,
        window=args.window,
        overlap=args.overlap,
        vad=VadConfig(
            max_segment=args.max_segment,
            floor_db=args.vad_floor_db,
            threshold_db=args.vad_threshold_db,
            min_silence=args.min_silence,
        ),
    )
    from tqdm.auto import tqdm

    results: list[FileResult] = []
    progress = tqdm(
        total=len(entries), unit="file", disable=args.no_progress or len(entries) < 2 or None, file=sys.stderr
    )
    for result in predict_files(classifier, entries, options):
        results.append(result)
        progress.update(1)
        if args.print_timeline and result.status == "ok":
            progress.write(format_timeline(result, classifier.labels), file=sys.stdout)
    progress.close()
    print(format_table(results, classifier.labels, args.top_k))
    if args.output:
        write_results(args.output, results, classifier.labels, args.top_k)
    if args.timeline:
        _write_csv(args.timeline, timeline_records(results, classifier.labels))
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    print(
        f"{counts['ok']} classified, {counts['failed']} failed, {counts['skipped']} skipped (not audio)",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export-onnx":
        from modeling.inference.onnx_export import main as export_main

        return export_main(argv[1:])
    return run_predict(argv)


if __name__ == "__main__":
    sys.exit(main())
