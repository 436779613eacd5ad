"""`train_probe(args) -> ProbeResult`: probe a frozen speech encoder on one corpus mix (EmoBox / SUPERB).

One run, in order: check the arguments (before any data is prepared or written), load the corpora and split
them exactly as `training.train` does (`load_corpora`, the same split strategy, split seed and
`--max_*_samples` subsets), extract every split's pooled layers once into the feature cache
(training/encoder_features.py; a later run, fold or seed on the same data extracts nothing), train the head
on the cached training features (model selection on validation UAR), evaluate on validation and test with
the project's metrics, and save the probe as a real model: encoder + head (`ProbeForAudioClassification`),
its feature extractor and code, `*_results.json`, `test_details.json`, `confusion_matrix.png` and a model
card, so that `from_pretrained`, `pipeline("audio-classification")`, `python -m inference.predict` and the
demo classify raw audio with it.

Under ``accelerate launch`` every process extracts its share of each split (the main process writes the
cache); the head, which trains in seconds, is trained, evaluated and saved by the main process only (the
others return None).

`train_probe_on_splits` is the same without the corpus loading, for the evaluation suite: a
`DatasetDict(train, validation, test)` in, the metrics dict `evaluation.runner` expects out.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import torch

from loaders.emotions import parse_merge, resolve_emotions
from loaders.splits import STRATEGIES

from .files import write_json_atomic
from .metrics import EmotionClassificationMetric, flatten_metrics
from .run_config import OutputDirLock, UsageError, find_corpora, split_counts

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "facebook/wav2vec2-base"
RESULTS_FILE = "probe_results.json"
ARGS_FILE = "probe_args.json"
# A folder holding these is a finished probe: not written over without --overwrite_output_dir.
FINISHED_FILES = ("probe_results.json", "model.safetensors")


def default_feature_cache() -> str:
    """Next to the `datasets` cache, so that every run of every project checkout shares it."""
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "ser-layer-features")


@dataclass
class ProbeArguments:
    """What to probe, on which data, and how to train the head."""

    encoder_name_or_path: str = field(
        default=DEFAULT_ENCODER,
        metadata={
            "help": "The frozen encoder: a Hub id or a local checkpoint folder (any wav2vec2-style "
            "model or Whisper)."
        },
    )
    encoder_revision: str | None = field(default=None, metadata={"help": "Hub revision of the encoder."})
    corpora: list[str] | None = field(
        default=None,
        metadata={
            "help": "Corpora to use (default: those under --data_root, else the synthetic demo corpus)."
        },
    )
    data_root: str | None = field(default=None, metadata={"help": "Folder holding <corpus>/ folders."})
    emotions: list[str] | None = field(default=None, metadata={"help": "Emotion classes."})
    merge: list[str] | None = field(
        default=None, metadata={"help": "Merge an emotion into a class, source:target (e.g. calm:neutral)."}
    )
    split_strategy: str = field(
        default="speaker",
        metadata={
            "help": "speaker (default), corpus (leave --test_corpora out) or random.",
            "choices": list(STRATEGIES),
        },
    )
    test_corpora: list[str] | None = field(
        default=None, metadata={"help": "The held-out corpora of --split_strategy corpus."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the split and of the head's training."})
    max_duration_seconds: float = field(
        default=8.0,
        metadata={
            "help": "Each clip's middle this long is encoded (Whisper: the window it is built for); "
            "0 encodes whole clips (not for Whisper)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only this many training clips."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Use only this many validation and test clips each."}
    )
    lenient: bool = field(
        default=False, metadata={"help": "Skip (and report) undecodable or unknown files instead of failing."}
    )
    dataset_cache_dir: str | None = field(default=None, metadata={"help": "Cache of prepared corpora."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for preparing corpora (default: cores)."}
    )
    feature_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Cache of extracted layer features, shared by every run (default: "
            "<HF datasets cache>/ser-layer-features)."
        },
    )
    extraction_batch_size: int = field(default=8, metadata={"help": "Clips per encoder forward pass."})
    pooling: str = field(
        default="mean+std",
        metadata={
            "help": "What the head reads per layer: mean+std or mean (EmoBox / SUPERB).",
            "choices": ["mean+std", "mean"],
        },
    )
    hidden_size: int = field(default=256, metadata={"help": "Width of the head's MLP hidden layer."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout in the head's MLP."})
    epochs: int = field(default=100, metadata={"help": "Most epochs of head training."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the head."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay of the head."})
    batch_size: int = field(default=64, metadata={"help": "Head training batch size."})
    patience: int = field(
        default=20, metadata={"help": "Stop after this many epochs without a better validation UAR."}
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where the probe and its results go (default: "
            "outputs/probe-<encoder>-<corpora>-<split>-<emotions>)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into an output folder that already holds a finished probe."}
    )
    device: str | None = field(
        default=None, metadata={"help": "Extraction device (default: the GPU when there is one)."}
    )
    no_progress: bool = field(default=False, metadata={"help": "No progress bar."})


@dataclass
class HeadOptions:
    """The head and its training (see `training.encoder_features.train_probe_head`)."""

    pooling: str = "mean+std"
    hidden_size: int = 256
    dropout: float = 0.1
    epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    patience: int = 20

    @classmethod
    def from_args(cls, args: ProbeArguments) -> HeadOptions:
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


@dataclass
class ProbeResult:
    """What a probe run produced (also written into `output_dir`)."""

    output_dir: str
    encoder: str
    corpora: list[str]
    label_names: list[str]
    test_metrics: dict[str, float]  # flat, prefixed test_ (per corpus: test_corpus_<name>_uar, ...)
    test_details: dict  # nested metric result: per class, per corpus, confusion matrices
    eval_metrics: dict[str, float] = field(default_factory=dict)  # empty without a validation split
    counts: dict = field(default_factory=dict)  # split -> corpus -> emotion -> files
    extracted: dict[str, int] = field(default_factory=dict)  # split -> clips run through the encoder now
    layer_weights: list[float] = field(default_factory=list)  # the head's softmax weights, input layer first
    epochs_trained: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # extraction, head training

    @property
    def confusion_matrix(self) -> list[list[int]]:
        return self.test_details["confusion_matrix"]


# ---- checks: everything the user asked for, before any data is prepared or anything written -------------


def check_probe_arguments(args: ProbeArguments) -> None:
    """`UsageError` naming the first bad argument; reads only the encoder's config.json."""
    positive = [
        ("extraction_batch_size", args.extraction_batch_size, "e.g. 8"),
        ("hidden_size", args.hidden_size, "e.g. 256"),
        ("epochs", args.epochs, "e.g. 100"),
        ("batch_size", args.batch_size, "e.g. 64"),
        ("learning_rate", args.learning_rate, "e.g. 1e-3"),
    ]
    positive += [
        (n, v, ">= 1")
        for n, v in (
            ("max_train_samples", args.max_train_samples),
            ("max_eval_samples", args.max_eval_samples),
        )
        if v is not None
    ]
    for name, value, example in positive:
        if not value > 0:  # also catches NaN
            raise UsageError(f"--{name} {value}: must be greater than 0; give {example}")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout {args.dropout}: must be in [0, 1); give e.g. 0.1")
    if not args.weight_decay >= 0:
        raise UsageError(f"--weight_decay {args.weight_decay}: must not be negative; give e.g. 0.01")
    if not args.patience >= 1:
        raise UsageError(f"--patience {args.patience}: must be at least 1; give e.g. 20")
    if not args.max_duration_seconds >= 0:
        raise UsageError(
            f"--max_duration_seconds {args.max_duration_seconds}: must not be negative; give e.g. 8 "
            "(0 encodes whole clips)"
        )
    check_encoder(args.encoder_name_or_path, args.encoder_revision, args.max_duration_seconds or None)
    if args.device is not None:
        try:
            torch.device(args.device)
        except RuntimeError as err:
            raise UsageError(f"--device {args.device}: {err}; give cpu, cuda or cuda:1") from None


def check_encoder(encoder: str, revision: str | None, max_duration_seconds: float | None) -> None:
    """The encoder's config must load and be a speech encoder the probe can read layer by layer."""
    from modeling.encoders import is_whisper, load_encoder_config, whisper_chunk_seconds

    what = f"--encoder_name_or_path {encoder}"
    if os.path.exists(encoder) and not os.path.isdir(encoder):
        raise UsageError(f"{what}: is a file, not a checkpoint folder; give the folder save_pretrained wrote")
    try:
        config = load_encoder_config(encoder, revision=revision)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"{what}: cannot load its config ({reason}); give a local checkpoint folder or a Hub id such as "
            f"{DEFAULT_ENCODER}"
        ) from None
    if config.model_type in ("ser-probe", "ser-cnn", "ser-s4") or (
        not is_whisper(config) and not hasattr(config, "conv_kernel")
    ):
        raise UsageError(
            f"{what}: a {config.model_type!r} model is not a pre-trained speech encoder; give one of the "
            "wav2vec2 family (wav2vec2, hubert, wavlm, data2vec-audio, ...) or Whisper"
        )
    if is_whisper(config):
        if not max_duration_seconds:
            raise UsageError(
                "--max_duration_seconds 0: Whisper encodes a fixed window; give e.g. --max_duration_seconds 8"
            )
        try:
            whisper_chunk_seconds(max_duration_seconds, config)
        except ValueError as err:
            raise UsageError(f"--{err}") from None


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    finished = [name for name in FINISHED_FILES if (Path(output_dir) / name).exists()]
    if finished and not overwrite:
        raise UsageError(
            f"--output_dir {output_dir} already holds a finished probe ({', '.join(finished)}); choose "
            "another --output_dir, or pass --overwrite_output_dir to replace it"
        )


def default_output_dir(encoder: str, corpora: list[str], split: str, label_names: list[str]) -> str:
    name = Path(str(encoder).rstrip("/")).name or "encoder"
    return os.path.join("outputs", "-".join(["probe", name, "+".join(corpora), split, "+".join(label_names)]))


# ---- the run --------------------------------------------------------------------------------------------


def train_probe(args: ProbeArguments) -> ProbeResult | None:
    """Probe the encoder as `args` say; returns the results (None on the non-main processes of a
    distributed run). Bad arguments raise `UsageError` before any data is prepared or anything written."""
    from accelerate import PartialState

    from loaders.loading import load_corpora

    from .encoder_features import wants_cpu
    from .run import limit_samples

    check_probe_arguments(args)
    data_root_given = args.data_root is not None
    data_root = args.data_root or "./datasets"
    corpora, _ = find_corpora(args.corpora, data_root, data_root_given=data_root_given)
    try:
        merge = parse_merge(args.merge or [])
        label_names, _ = resolve_emotions(args.emotions, merge)
    except ValueError as err:
        raise UsageError(f"--{err}") from err
    if args.split_strategy == "corpus" and not args.test_corpora:
        raise UsageError(
            f"--split_strategy corpus: no --test_corpora; give the held-out corpora, some of {corpora}"
        )
    if args.test_corpora and args.split_strategy != "corpus":
        raise UsageError(
            f"--test_corpora {args.test_corpora}: only the corpus split holds corpora out; add "
            "--split_strategy corpus or drop --test_corpora"
        )
    if args.test_corpora and not set(args.test_corpora) < set(corpora):
        raise UsageError(
            f"--test_corpora {args.test_corpora}: must be some but not all of the corpora {corpora}; "
            "give the held-out ones"
        )
    output_dir = args.output_dir or default_output_dir(
        args.encoder_name_or_path, corpora, args.split_strategy, label_names
    )
    check_output_dir(output_dir, args.overwrite_output_dir)

    state = PartialState(cpu=wants_cpu(args.device))
    lock = OutputDirLock(output_dir, logger) if state.is_main_process else None
    if lock is not None:
        lock.acquire()
    try:
        with state.main_process_first():
            try:
                raw = load_corpora(
                    corpora,
                    data_root,
                    emotions=args.emotions,
                    merge=merge,
                    split=args.split_strategy,
                    test_corpora=args.test_corpora,
                    seed=args.seed,
                    lenient=args.lenient,
                    cache_dir=args.dataset_cache_dir,
                    num_proc=args.preprocessing_num_workers,
                )
            except (ValueError, FileNotFoundError) as err:
                raise UsageError(str(err)) from err
        limits = SimpleNamespace(
            max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples
        )
        raw = limit_samples(raw, limits, args.seed)
        result = _probe(
            raw,
            args.encoder_name_or_path,
            output_dir,
            revision=args.encoder_revision,
            cache_dir=args.feature_cache_dir or default_feature_cache(),
            max_duration_seconds=args.max_duration_seconds or None,
            head_options=HeadOptions.from_args(args),
            seed=args.seed,
            batch_size=args.extraction_batch_size,
            device=args.device,
            progress=not args.no_progress,
            corpora=corpora,
            split_strategy=args.split_strategy,
            test_corpora=args.test_corpora,
            merge=merge,
            run_args=asdict(args),
        )
    finally:
        if lock is not None:
            lock.release()
    return result


def train_probe_on_splits(
    dataset_dict: datasets.DatasetDict,
    encoder_name_or_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    label_names: list[str] | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_duration_seconds: float | None = 8.0,
    head_options: HeadOptions | None = None,
    seed: int = 0,
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Probe on ready splits (train / validation / test with `audio`, `label` (ClassLabel), `corpus`, ...).

    Saves the probe and its results into `output_dir` and returns what `evaluation.runner` expects: the flat
    test and validation metrics (`test_accuracy`, `test_uar`, `test_macro_f1`, per class and per corpus,
    `eval_uar`, ...) and `confusion_matrix` (rows true class). Empty on the non-main processes of a
    distributed run. `label_names`: the class names when `label` is not a ClassLabel.
    """
    result = _probe(
        dataset_dict,
        str(encoder_name_or_path),
        str(output_dir),
        label_names=label_names,
        revision=revision,
        cache_dir=cache_dir or default_feature_cache(),
        max_duration_seconds=max_duration_seconds,
        head_options=head_options or HeadOptions(),
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    if result is None:
        return {}
    return {**result.eval_metrics, **result.test_metrics, "confusion_matrix": result.confusion_matrix}


def _evaluate(head, features: datasets.Dataset, label_names: list[str], prefix: str) -> tuple[dict, dict]:
    x = torch.from_numpy(np.asarray(features.with_format("numpy")["features"], dtype=np.float32))
    with torch.no_grad():
        predictions = head(x).argmax(-1).numpy() if len(x) else np.zeros(0, dtype=np.int64)
    groups = features["corpus"] if "corpus" in features.column_names else None
    details = EmotionClassificationMetric().compute(
        predictions=predictions.tolist(),
        references=list(features["label"]),
        label_names=label_names,
        groups=groups,
    )
    metrics = {f"{prefix}_{k}": v for k, v in flatten_metrics(details).items()}
    metrics[f"{prefix}_samples"] = len(features)
    return metrics, details


def _probe(
    raw: datasets.DatasetDict,
    encoder: str,
    output_dir: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike,
    max_duration_seconds: float | None,
    head_options: HeadOptions,
    seed: int,
    batch_size: int,
    device: str | None,
    progress: bool,
    label_names: list[str] | None = None,
    corpora: list[str] | None = None,
    split_strategy: str = "given",
    test_corpora: list[str] | None = None,
    merge: dict[str, str] | None = None,
    run_args: dict | None = None,
) -> ProbeResult | None:
    from accelerate import PartialState

    from modeling.auto import save_for_hub

    from .encoder_features import build_probe, load_or_extract_layer_features, train_probe_head
    from .model_card import TrainingSummary, corpus_info, render_model_card
    from .plots import plot_confusion_matrix

    label_feature = raw["train"].features["label"]
    if label_names is None:
        if not isinstance(label_feature, datasets.ClassLabel):
            raise ValueError("dataset_dict: `label` is not a ClassLabel; pass label_names")
        label_names = list(label_feature.names)
    label_names = list(label_names)
    if corpora is None:
        corpora = sorted({c for split in raw.values() for c in split["corpus"]})
    counts = split_counts(raw, label_names)
    logger.info("Data (%s split): %s", split_strategy, json.dumps(counts))

    # ---- extraction: once per (encoder, data, crop); every later run reads the cache ----
    started = time.perf_counter()
    features, extracted = {}, {}
    for split, ds in raw.items():
        extracted[split] = 0
        if len(ds) == 0:
            continue
        features[split], extracted[split] = load_or_extract_layer_features(
            ds,
            encoder,
            revision=revision,
            cache_dir=cache_dir,
            max_duration_seconds=max_duration_seconds,
            batch_size=batch_size,
            device=device,
            progress=progress,
        )
    extraction_seconds = time.perf_counter() - started
    logger.info("layer features: %s clips extracted now (the rest from %s)", extracted, cache_dir)
    if not PartialState().is_main_process:
        return None
    if "train" not in features:
        raise UsageError("the training split is empty; give more data or another --split_strategy")

    # ---- the head: seconds on a CPU ----
    started = time.perf_counter()
    head = train_probe_head(
        features["train"], features.get("validation"), label_names, seed=seed, **asdict(head_options)
    )
    head_seconds = time.perf_counter() - started
    history = head.history
    logger.info("head: %d epochs in %.1f s", len(history), head_seconds)

    eval_metrics: dict[str, float] = {}
    if "validation" in features:
        eval_metrics, _ = _evaluate(head, features["validation"], label_names, "eval")
    if "test" not in features:
        raise UsageError("the test split is empty; give more data or another --split_strategy")
    test_metrics, test_details = _evaluate(head, features["test"], label_names, "test")

    # ---- the probe: encoder + head, a model like any other of the project ----
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, feature_extractor = build_probe(
        encoder, head, label_names, revision=revision, max_duration_seconds=max_duration_seconds
    )
    save_for_hub(model, feature_extractor, out)
    layer_weights = [round(float(w), 6) for w in head.layer_weights().detach()]
    seconds = {"extraction": round(extraction_seconds, 3), "head_training": round(head_seconds, 3)}
    for name, values in (("eval", eval_metrics), ("test", test_metrics)):
        if values:
            write_json_atomic(out / f"{name}_results.json", values)
    results = {
        "encoder": encoder,
        "revision": revision,
        "test": test_metrics,
        "eval": eval_metrics,
        "layer_weights": layer_weights,
        "epochs_trained": len(history),
        "history": history,
        "extracted": extracted,
        "seconds": seconds,
    }
    write_json_atomic(out / RESULTS_FILE, results)
    write_json_atomic(out / "test_details.json", {"metrics": test_details, "counts": counts})
    if run_args is not None:
        write_json_atomic(out / ARGS_FILE, run_args)
    plot_confusion_matrix(
        test_details["confusion_matrix"],
        label_names,
        str(out / "confusion_matrix.png"),
        title=f"probe of {Path(encoder).name} on {', '.join(corpora)}: test set",
    )
    known = [c for c in corpora if c != "given"]
    summary = TrainingSummary(
        model_kind="probe",
        base_model=encoder,
        emotions=label_names,
        merge=merge or {},
        corpora=[_corpus_info(c, corpus_info) for c in known],
        split_strategy=split_strategy,
        test_corpora=test_corpora,
        counts=counts,
        test_metrics={k.removeprefix("test_"): v for k, v in test_metrics.items()},
        validation_metrics={k.removeprefix("eval_"): v for k, v in eval_metrics.items()},
        confusion_matrix_file="confusion_matrix.png",
        hyperparameters={
            "encoder (frozen)": encoder,
            "epochs_trained": len(history),
            "max_duration_seconds": max_duration_seconds,
            **{f"head.{k}": v for k, v in asdict(head_options).items()},
            "layer_weights": layer_weights,
        },
        num_parameters=sum(p.numel() for p in model.head.parameters()),
        seed=seed,
        arguments={k: v for k, v in (run_args or {}).items() if v != getattr(ProbeArguments, k, v)},
        arguments_file=ARGS_FILE if run_args is not None else None,
    )
    (out / "README.md").write_text(render_model_card(summary), encoding="utf-8")
    logger.info("probe saved to %s (test UAR %.3f)", out, test_metrics.get("test_uar", float("nan")))
    return ProbeResult(
        output_dir=str(out.resolve()),
        encoder=encoder,
        corpora=list(corpora),
        label_names=label_names,
        test_metrics=test_metrics,
        test_details=test_details,
        eval_metrics=eval_metrics,
        counts=counts,
        extracted=extracted,
        layer_weights=layer_weights,
        epochs_trained=len(history),
        seconds=seconds,
    )


def _corpus_info(name: str, corpus_info):
    from .model_card import CorpusInfo

    try:
        return corpus_info(name)
    except (KeyError, ValueError):  # a corpus the registry does not know (a plug-in loader of the suite)
        return CorpusInfo(name=name)


__all__ = [
    "HeadOptions",
    "ProbeArguments",
    "ProbeResult",
    "check_probe_arguments",
    "default_feature_cache",
    "train_probe",
    "train_probe_on_splits",
]
