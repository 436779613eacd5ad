"""Use a trained emotion classifier: files, folders and long recordings; live streaming; ONNX export.

    python -m inference.predict MODEL PATH... [--top_k 3] [--output out.csv|out.json] [--batch_size 8]
                               [--segment {auto,vad,fixed,none}] [--timeline timeline.csv]
    python -m inference.predict MODEL file.wav --stream [--chunk_ms 20]      # S4, causal configuration
    python -m inference.predict export-onnx MODEL OUT.onnx

MODEL is a local directory written by ``save_pretrained`` or a Hub id. PATHs are files, folders (walked
recursively; files without an audio extension are reported as skipped) or glob patterns. Every input
is decoded by soundfile or, failing that, FFmpeg (torchcodec), downmixed to mono and resampled to the
model's rate. Recordings longer than ``--max_segment`` seconds are cut into speech segments by an
energy voice-activity detector (or fixed overlapping windows) and read segment by segment, so memory
stays bounded for hours of audio; each gets a timeline and a duration-weighted summary.

Exit status: 0 when every input was classified, 1 when any failed (each failure is printed with its
reason; the other files are still processed), 2 for bad arguments: a missing model, an output file in a
folder that does not exist or of a format not written, a non-positive size or length. These are one line
(``error: <what>: <why>; <what to do>``), given before any file is read.

This module is the command line only (argument checks and wiring): ``inputs`` walks the paths,
``classify`` predicts, ``outputs`` prints and writes the results, ``streaming`` runs ``--stream``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from inference.allocator import keep_freed_memory
from inference.classify import SEGMENT_MODES, EmotionClassifier, FileResult, PredictOptions, predict_files
from inference.inputs import collect_inputs
from inference.outputs import format_table, format_timeline, write_results, write_timeline
from inference.segmentation import VadConfig

__all__ = ["check_model", "check_output_file", "main", "run_predict"]


# -- argument checks, before any work -----------------------------------------------------------------

_MODEL_ADVICE = "give the folder save_pretrained wrote (a training run's --output_dir) or a Hub id (user/x)"


def check_model(model: str, trust_remote_code: bool = False) -> str | None:
    """The one-line error for a ``model`` that cannot be loaded, or None; reads only its config."""
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            return f"error: model {model}: no config.json in this folder (not a saved model); {_MODEL_ADVICE}"
        return None
    if os.path.exists(model):
        return f"error: model {model}: is a file, not a model folder; {_MODEL_ADVICE}"
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        return f"error: model {model}: no such folder (and not a Hub id); {_MODEL_ADVICE}"
    from transformers import AutoConfig

    import modeling.auto  # noqa: F401  (registers the project's model types with the Auto classes)

    try:
        AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            f"error: model {model}: no such folder, and no such model on the Hub or the Hub cannot be "
            f"reached ({reason}); {_MODEL_ADVICE}"
        )
    return None


def check_output_file(option: str, path: str, extensions: tuple[str, ...]) -> str | None:
    """The one-line error for an output ``path`` that could not be written as asked, or None."""
    if os.path.isdir(path):
        return f"error: {option} {path}: is a folder; give a file name inside it"
    stem, extension = os.path.splitext(path)
    if extension.lower() not in extensions:
        what = f"{extension} is" if extension else "a name without extension is"
        return (
            f"error: {option} {path}: {what} not a format written here (only {' and '.join(extensions)}); "
            f"name the file {' or '.join(stem + e for e in extensions)}"
        )
    return _missing_folder(option, path)


def _missing_folder(what: str, path: str) -> str | None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"error: {what} {path}: the folder {folder} does not exist; create it first or write elsewhere"
    return None


def _argument_problem(args: argparse.Namespace) -> str | None:
    """The first bad argument as one line, or None. Nothing is read or loaded here but the model config."""
    positive = [
        ("--top_k", args.top_k, "how many emotions to list, e.g. --top_k 3"),
        ("--batch_size", args.batch_size, "the segments per forward pass, e.g. --batch_size 8"),
        ("--max_segment", args.max_segment, "the longest segment in seconds, e.g. --max_segment 10"),
        ("--window", args.window, "the fixed-window length in seconds, e.g. --window 5"),
        ("--chunk_ms", args.chunk_ms, "the streamed chunk length in milliseconds, e.g. --chunk_ms 20"),
        ("--print_every", args.print_every, "the seconds between streamed updates, e.g. --print_every 0.5"),
    ]
    for option, value, advice in positive:
        if not value > 0:  # also catches NaN
            return f"error: {option} {value:g}: must be greater than 0; give {advice}"
    if not 0 <= args.overlap < args.window:
        return (
            f"error: --overlap {args.overlap:g}: must be at least 0 and below --window ({args.window:g}); "
            "give a smaller --overlap"
        )
    if not args.min_silence >= 0:
        return f"error: --min_silence {args.min_silence:g}: must not be negative; give e.g. --min_silence 0.3"
    if args.output and (problem := check_output_file("--output", args.output, (".csv", ".json"))):
        return problem
    if args.timeline and (problem := check_output_file("--timeline", args.timeline, (".csv",))):
        return problem
    return check_model(args.model, args.trust_remote_code)


# -- commands ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference.predict",
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


def run_predict(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if problem := _argument_problem(args):
        print(problem, file=sys.stderr)
        return 2
    entries = collect_inputs(args.paths)
    keep_freed_memory()
    classifier = EmotionClassifier.from_pretrained(args.model, args.device, args.trust_remote_code)
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
    if args.stream:
        from inference.streaming import StreamingClassifier, stream_files

        try:
            streamer = StreamingClassifier(classifier.model, classifier.feature_extractor)
        except (TypeError, ValueError) as error:
            print(f"error: --stream {args.model}: {error}", file=sys.stderr)
            return 2
        return stream_files(
            streamer,
            entries,
            options,
            classifier.min_samples,
            chunk_ms=args.chunk_ms,
            print_every=args.print_every,
            top_k=args.top_k,
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
        write_timeline(args.timeline, results, classifier.labels)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "failed", "skipped")}
    print(
        f"{counts['ok']} classified, {counts['failed']} failed, {counts['skipped']} skipped (not audio)",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


def _export_problem(argv: Sequence[str]) -> str | None:
    """``export-onnx MODEL OUT``: a missing model or an OUT in a folder that does not exist, checked
    before the export (which takes a while and would only then find the folder missing)."""
    if any(token in ("-h", "--help") for token in argv):
        return None
    positional, takes_value = [], False
    for token in argv:
        if takes_value:
            takes_value = False
        elif token == "--opset":
            takes_value = True
        elif not token.startswith("-"):
            positional.append(token)
    if len(positional) != 2:
        return None  # the export's own parser says what is missing
    model, output = positional
    if problem := check_model(model, "--trust_remote_code" in argv):
        return problem
    if os.path.isdir(output):
        return f"error: export-onnx {output}: is a folder; give a file name inside it, e.g. model.onnx"
    return _missing_folder("export-onnx", output)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export-onnx":
        from inference.onnx_export import main as export_main

        if problem := _export_problem(argv[1:]):
            print(problem, file=sys.stderr)
            return 2
        return export_main(argv[1:])
    return run_predict(argv)


if __name__ == "__main__":
    sys.exit(main())
