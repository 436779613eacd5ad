#!/usr/bin/env python
"""Probe a frozen speech encoder on the emotion corpora (EmoBox / SUPERB protocol): cached features, a head.

    python run_probe.py --encoder_name_or_path facebook/wav2vec2-base --corpora emodb ravdess
    python run_probe.py --encoder_name_or_path microsoft/wavlm-base-plus --corpora cremad --seed 2 \\
        --hidden_size 128 --epochs 200
    accelerate launch run_probe.py --encoder_name_or_path openai/whisper-small --max_duration_seconds 8

The encoder runs once over every clip; each layer's hidden states, pooled over the real frames (mean and
standard deviation), are cached (`--feature_cache_dir`) and every later run, seed or head setting on the same
data reads them without running the encoder. The head (softmax weights over the layers, then an MLP) trains
in seconds on a CPU. `--output_dir` receives the probe as a model (encoder + head: `from_pretrained`,
`pipeline("audio-classification")`, `python -m inference.predict DIR clip.wav` and the demo use it),
`probe_results.json`, `test_details.json`, `confusion_matrix.png` and a model card. Under `accelerate launch`
the extraction is shared by the processes (one per GPU). The same run in Python:
`from training.probe import ProbeArguments, train_probe`.
"""

from __future__ import annotations

import logging
import sys

import datasets
import transformers
from transformers import HfArgumentParser

from training.probe import ProbeArguments, ProbeResult, train_probe
from training.run import use_cpu_processes_without_gpu
from training.run_config import UsageError

logger = logging.getLogger("run_probe")


def parse_args(argv: list[str] | None = None) -> ProbeArguments:
    parser = HfArgumentParser(ProbeArguments, prog="run_probe.py")
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args


def main(argv: list[str] | None = None) -> ProbeResult | None:
    use_cpu_processes_without_gpu()  # several processes and no GPU: extraction shared over gloo
    args = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    for name in ("run_probe", "training", "loaders", "modeling"):
        logging.getLogger(name).setLevel(logging.INFO)
    datasets.utils.logging.set_verbosity(logging.WARNING)
    transformers.utils.logging.set_verbosity(logging.WARNING)
    result = train_probe(args)
    if result is not None:
        test = result.test_metrics
        extracted = sum(result.extracted.values())
        print(
            f"\nTest UAR {test.get('test_uar', float('nan')):.3f}, accuracy "
            f"{test.get('test_accuracy', float('nan')):.3f} ({args.split_strategy} split, "
            f"{', '.join(result.corpora)}); {extracted} clips encoded now, the rest from the cache; head "
            f"trained {result.epochs_trained} epochs in {result.seconds['head_training']:.1f} s.\n"
            f"Probe (encoder + head), results and model card: {result.output_dir}"
        )
    return result


if __name__ == "__main__":
    try:
        main()
    except UsageError as err:
        print(f"run_probe.py: error: {err}", file=sys.stderr)
        sys.exit(2)
