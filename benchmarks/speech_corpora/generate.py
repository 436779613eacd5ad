"""Command line: `python -m benchmarks.speech_corpora <espeak|festival> OUT --speakers N --seed S`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from loaders.emotions import DEFAULT_EMOTIONS

from . import espeak, festival

ENGINES = {"espeak": espeak, "festival": festival}
LAYOUT = {"espeak": "ravdess", "festival": "cremad"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speech_corpora",
        description="Generate a synthesised emotional-speech corpus laid out like a real download: "
        "espeak -> RAVDESS layout, festival -> CREMA-D layout.",
    )
    parser.add_argument("engine", choices=sorted(ENGINES))
    parser.add_argument("out", help="corpus folder to create (must be empty or absent)")
    parser.add_argument(
        "--speakers", type=int, default=None, help="espeak: 1-24 (default 24); festival: 1-91 (default 20)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--emotions",
        nargs="+",
        default=list(DEFAULT_EMOTIONS),
        help="emotions to speak (default: the four shared by all corpora); espeak takes RAVDESS's eight, "
        "festival CREMA-D's six",
    )
    parser.add_argument(
        "--sentences",
        nargs="+",
        default=None,
        help="sentence codes to speak (default all): espeak 01 02 (RAVDESS statements), festival CREMA-D's "
        "IEO TIE IOM IWW TAI MTI IWL ITH DFA ITS TSI WSI",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    args = parser.parse_args(argv)
    module = ENGINES[args.engine]
    if args.speakers is None:
        args.speakers = 24 if args.engine == "espeak" else 20
    if not 1 <= args.speakers <= module.MAX_SPEAKERS:
        parser.error(
            f"--speakers {args.speakers}: the {LAYOUT[args.engine]} layout has 1-{module.MAX_SPEAKERS} "
            "speakers"
        )
    unknown = [e for e in args.emotions if e not in module.EMOTION_CODES]
    if unknown:
        parser.error(
            f"--emotions {' '.join(unknown)}: not in the {LAYOUT[args.engine]} grammar; "
            f"choose from {' '.join(module.EMOTION_CODES)}"
        )
    codes = espeak.STATEMENTS if args.engine == "espeak" else festival.SENTENCES
    wrong = [c for c in args.sentences or [] if c not in codes]
    if wrong:
        parser.error(f"--sentences {' '.join(wrong)}: unknown sentence code; choose from {' '.join(codes)}")
    if len(set(args.emotions)) != len(args.emotions):
        parser.error(f"--emotions {' '.join(args.emotions)}: an emotion is named twice")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be at least 1")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        parser.error(f"{out}: exists and is not an empty folder; choose a new folder or remove it")
    if shutil.which(module.BINARY) is None:
        parser.error(f"{module.BINARY}: not installed; run `bash tools/install_tts.sh`")
    return args


def generate(
    engine: str,
    out: str | os.PathLike,
    speakers: int,
    seed: int = 0,
    emotions: list[str] | None = None,
    jobs: int = 1,
    sentences: list[str] | None = None,
) -> list[str]:
    """Write the corpus into `out`; returns the paths written (sorted). A file's audio depends only on
    the seed and its name: a smaller corpus (fewer speakers, emotions, sentences) holds the same files."""
    module = ENGINES[engine]
    emotions = list(DEFAULT_EMOTIONS if emotions is None else emotions)
    plan = module.plan(speakers, emotions, seed, sentences)
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"speech_corpora_{engine}_") as work:
        if engine == "espeak":
            espeak.private_data_dir(Path(work))
        if jobs == 1:
            for job in plan:
                written += module.render_speaker(job, out, seed, work)
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(module.render_speaker, job, out, seed, work) for job in plan]
                for future in futures:
                    written += future.result()
    return sorted(written)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    written = generate(
        args.engine, args.out, args.speakers, args.seed, args.emotions, args.jobs, args.sentences
    )
    elapsed = time.perf_counter() - start
    layout = LAYOUT[args.engine]
    print(
        f"wrote {len(written)} files ({args.speakers} speakers, emotions {' '.join(args.emotions)}, seed "
        f"{args.seed}) in {elapsed:.1f} s to {args.out} ({layout} layout; read it with corpus {layout!r})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
