"""Speed of the three classifiers on one CPU thread: inference per 3 s clip and training throughput.

    .venv/bin/python benchmarks/bench_models.py [--models cnn cnn-earlier-defaults cnn-head-mfcc14
        cnn-head-no-bands cnn-energy-peaks cnn-raw-contours cnn-spectrum cnn-no-raw-contours-head
        cnn-no-spectrum-head s4 s4-speech
        s4-earlier-defaults s4-utterance-dataset s4-no-head s4-no-energy-peaks s4-no-smoothed-contours-head
        s4-no-mfcc-head s4-no-spectrum-head s4-mean-pooling ensemble wav2vec2-tiny wav2vec2-base]
        [--repeats 30]

`cnn` is the CNN's defaults; `cnn-earlier-defaults` those before the tenth round (`EARLIER_DEFAULTS` of
`configuration_cnn.py`: no pitch channels, no functionals head); `cnn-head-mfcc14` the defaults with the
functionals head on the first 14 MFCCs (`functionals_mfcc`); `cnn-head-no-bands` the defaults before the
twelfth round (the head without the grouped log-mel bands and the spectral-shape descriptors);
`cnn-energy-peaks` the defaults with the energy peaks head (not the CNN's default: seventeenth round);
`cnn-raw-contours` the defaults before the twentieth round (the head's functionals of the raw channels and
their frame-to-frame difference, not of the smoothed channels and their regression delta); `cnn-spectrum`
the defaults with the head's 15 descriptors of the power spectrum (`spectrum_functionals`, 24th round);
`cnn-no-raw-contours-head` the defaults before the thirty-ninth round (without the second head on the raw
pitch, band and shape contours, `raw_contours_head`); `cnn-no-spectrum-head` the defaults before the
forty-fifth round (without the gated spectrum head, `spectrum_head`);
`s4-no-energy-peaks` the S4's defaults without the energy peaks head (the defaults before the seventeenth
round);
`s4-no-smoothed-contours-head` the S4's defaults before the fortieth round (without the second head on the
smoothed channels, `smoothed_contours_head`); `s4-no-mfcc-head` the S4's defaults without the gated MFCC
head (`mfcc_head`, the default since the forty-second round); `s4-no-spectrum-head` the S4's defaults before
the forty-fourth round (without the gated spectrum head, `spectrum_head`); `s4-mean-pooling` the S4's defaults
before the fifty-fourth round (mean pooling, not attention pooling). `s4` is the S4's defaults;
`s4-speech` the larger S4 of the recipe `training/recipes/s4-speech.yaml` (the defaults' features at 4 layers
of width 128, with the functionals of every mel band); `s4-earlier-defaults` the defaults
before the eighth round (`EARLIER_DEFAULTS`: 4 layers of width 128, unit-variance clips, no pitch channels,
the four basic functionals of every mel band); `s4-utterance-dataset` the configuration recommended before the
seventh round (`S4_UTTERANCE_DATASET`: level kept, per-clip and training-set statistics side by side, pitch
channels, mean and std pooling, no functionals head); `s4-no-head` the default S4 without its functionals
head. `ensemble` is `--model ensemble`'s model: the CNN's and the S4's defaults, their probabilities averaged.

Inference: median milliseconds to classify one 3 s clip (batch 1, `torch.inference_mode`), the real-time
factor (audio seconds per compute second) and the minor page faults per clip (memory the C library gave back
and the next clip faulted in again: what `--keep-freed-memory` saves). Training: samples per second of forward
+ backward + AdamW step at batch 16 x 4 s. Weights are random: speed does not depend on them. The baseline,
measured in the same run, is a wav2vec2-base-sized model (the default checkpoint's architecture, feature
encoder frozen as in fine-tuning); every row is also given as a speed ratio against it. Goal: CNN and S4
classify a 3 s clip in <= 10 ms (>= 300x real time). `--keep-freed-memory` measures as the project's inference
entry points run (glibc keeps freed memory between calls: `inference/allocator.py`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.allocator import keep_freed_memory  # noqa: E402
from modeling import (  # noqa: E402
    CNNConfig,
    CNNForAudioClassification,
    S4Config,
    S4ForAudioClassification,
    build_wav2vec2,
)
from modeling.cnn.configuration_cnn import EARLIER_DEFAULTS as CNN_EARLIER_DEFAULTS  # noqa: E402
from modeling.ensemble import EnsembleForAudioClassification  # noqa: E402
from modeling.s4.configuration_s4 import EARLIER_DEFAULTS  # noqa: E402
from training import load_recipe  # noqa: E402

SR = 16000
LABELS = ["anger", "happy", "neutral", "sadness"]
LABEL_MAPS = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
# The test suite's tiny size, but with wav2vec2-base's conv strides (20 ms frames), so that sequence lengths
# are those of the real model.
TINY_WAV2VEC2 = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "classifier_proj_size": 16,
}
GOAL_MS = 10.0
S4_UTTERANCE_DATASET = {
    "normalize_waveform": False,
    "mel_normalization": "utterance+dataset",
    "pitch_features": True,
    "pooling": "mean_std",
    "functionals_head": False,
}


CNN_VARIANTS = {
    "cnn": {},
    "cnn-earlier-defaults": CNN_EARLIER_DEFAULTS,
    "cnn-head-mfcc14": {"functionals_mfcc": 14},
    "cnn-head-no-bands": {"functionals_mel_group": None, "spectral_shape_functionals": False},
    "cnn-energy-peaks": {"energy_peaks_head": True},
    "cnn-raw-contours": {"functionals_smoothing": False},
    "cnn-spectrum": {"spectrum_functionals": True},
    "cnn-no-raw-contours-head": {"raw_contours_head": False},
    "cnn-no-spectrum-head": {"spectrum_head": False},
}
S4_VARIANTS = {
    "s4": {},
    "s4-speech": json.loads(load_recipe("s4-speech")["config_overrides"]),
    "s4-utterance-dataset": S4_UTTERANCE_DATASET,
    "s4-no-head": {"functionals_head": False},
    "s4-no-energy-peaks": {"energy_peaks_head": False},
    "s4-no-smoothed-contours-head": {"smoothed_contours_head": False},
    "s4-no-mfcc-head": {"mfcc_head": 0},
    "s4-no-spectrum-head": {"spectrum_head": False},
    "s4-mean-pooling": {"pooling": "mean"},
    "s4-earlier-defaults": EARLIER_DEFAULTS,
}
MODELS = [*CNN_VARIANTS, *S4_VARIANTS, "ensemble", "wav2vec2-tiny", "wav2vec2-base"]


def build(name: str, workdir: Path) -> torch.nn.Module:
    if name in CNN_VARIANTS:
        return CNNForAudioClassification(CNNConfig(**LABEL_MAPS, **CNN_VARIANTS[name]))
    if name in S4_VARIANTS:
        return S4ForAudioClassification(S4Config(**LABEL_MAPS, **S4_VARIANTS[name]))
    if name == "ensemble":
        return EnsembleForAudioClassification.from_members([build("cnn", workdir), build("s4", workdir)])
    config = Wav2Vec2Config(**(TINY_WAV2VEC2 if name == "wav2vec2-tiny" else {}))
    checkpoint = workdir / name
    Wav2Vec2Model(config).save_pretrained(checkpoint)
    return build_wav2vec2(str(checkpoint), label_names=LABELS)[0]


def inference_ms(model: torch.nn.Module, repeats: int) -> tuple[float, float, float]:
    """(median, best) milliseconds per call, and the minor page faults per call; the best shows the cost
    without interference from other work."""
    model.eval()
    clip = torch.randn(1, 3 * SR)
    mask = torch.ones_like(clip, dtype=torch.long)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            if i == 3:  # warm-up calls excluded
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            model(input_values=clip, attention_mask=mask)
            if i >= 3:
                times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return 1000 * statistics.median(times), 1000 * min(times), faults / repeats


def training_samples_per_s(
    model: torch.nn.Module, steps: int, batch: int = 16, seconds: float = 4.0
) -> float:
    model.train()
    inputs = torch.randn(batch, int(seconds * SR))
    mask = torch.ones_like(inputs, dtype=torch.long)
    mask[batch // 2 :, int(0.75 * seconds * SR) :] = 0  # half the batch padded, as a collator would
    labels = torch.arange(batch) % len(LABELS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = model(input_values=inputs, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=["wav2vec2-base", "wav2vec2-tiny", "cnn", "s4", "s4-speech"],
    )
    parser.add_argument("--repeats", type=int, default=30, help="timed inference calls per model")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps (wav2vec2-base: 1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc keeps freed memory between calls, as `python -m modeling.predict` and the demo set it",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        print(
            "--keep-freed-memory: this C library has no glibc mallopt; measuring without it", file=sys.stderr
        )
    torch.manual_seed(0)

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            model = build(name, Path(workdir))
            parameters = sum(p.numel() for p in model.parameters())
            is_base = name == "wav2vec2-base"
            ms, best_ms, faults = inference_ms(model, repeats=3 if is_base else args.repeats)
            samples = training_samples_per_s(model, steps=1 if is_base else args.train_steps)
            rows.append((name, parameters, ms, best_ms, faults, samples))
            print(f"measured {name}", file=sys.stderr, flush=True)

    baseline = next((r for r in rows if r[0] == "wav2vec2-base"), rows[0])
    print(f"\nOne CPU thread ({torch.get_num_threads()}), torch {torch.__version__}; baseline: {baseline[0]}")
    header = (
        f"{'model':<22}{'params':>12}{'ms / 3 s clip':>15}{'(best)':>8}{'faults / clip':>15}"
        f"{'x real time':>13}{'vs base':>10}{'train samples/s':>17}{'vs base':>10}  goal <= {GOAL_MS:.0f} ms"
    )
    print(header)
    print("-" * len(header))
    for name, parameters, ms, best_ms, faults, samples in rows:
        goal = ("met" if ms <= GOAL_MS else "MISSED") if name in ("cnn", "s4") else ""
        print(
            f"{name:<22}{parameters:>12,}{ms:>15.2f}{best_ms:>8.2f}{faults:>15.1f}"
            f"{3000 / ms:>12.0f}x{baseline[2] / ms:>9.1f}x"
            f"{samples:>17.1f}{samples / baseline[5]:>9.1f}x  {goal}"
        )
    print(
        "ms: median of the timed calls; (best): the fastest call; faults / clip: minor page faults per timed"
        " call; x real time = 3000 ms / median."
    )


if __name__ == "__main__":
    main()
