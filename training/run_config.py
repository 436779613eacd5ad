"""What a training run resolves before training: model kind, config overrides, corpora, the model itself.

Every check here runs before any data is prepared or any file written, and fails with a `UsageError` that
names the argument and says what to do. Also here: which checkpoint a run may resume from (complete, and
trained for the same run: `last_complete_checkpoint`, `checkpoint_mismatches`) and the output folder's
one-writer lock (`OutputDirLock`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import datasets
from transformers import FeatureExtractionMixin, PretrainedConfig, PreTrainedModel, Wav2Vec2Config

from modeling.auto import feature_extractor_for, min_input_samples
from modeling.cnn import CNNConfig, CNNForAudioClassification
from modeling.ensemble import EnsembleConfig
from modeling.s4 import S4Config, S4ForAudioClassification

# "encoder": any pre-trained speech encoder transformers' AutoModelForAudioClassification loads (wav2vec2,
# HuBERT, WavLM, data2vec-audio, UniSpeech-SAT, SEW, Whisper, ...: `modeling.encoders`); the family is read
# from the checkpoint. "wav2vec2" is its older name, still accepted (`MODEL_KIND_ALIASES`). "ensemble": CNN
# and S4 members, each trained as its own run, their probabilities averaged (`training.ensemble`).
MODEL_KINDS: tuple[str, ...] = ("cnn", "s4", "encoder", "ensemble")
MODEL_KIND_ALIASES: dict[str, str] = {"wav2vec2": "encoder"}
MODEL_KIND_CHOICES: tuple[str, ...] = ("cnn", "s4", "wav2vec2", "encoder", "ensemble")
DEFAULT_ENCODER_CHECKPOINT = "facebook/wav2vec2-base"
_MODEL_TYPES = {CNNConfig.model_type: "cnn", S4Config.model_type: "s4", EnsembleConfig.model_type: "ensemble"}
# Saved by modeling.probe (a head over cached encoder features): trained by its own script, not fine-tuned.
_PROBE_MODEL_TYPE = "ser-probe"
_CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    "cnn": CNNConfig,
    "s4": S4Config,
    "encoder": Wav2Vec2Config,  # the default checkpoint's; a given checkpoint's own config is used instead
}
_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "cnn": CNNForAudioClassification,
    "s4": S4ForAudioClassification,
}


class UsageError(ValueError):
    """A bad argument or input: reported to the user without a traceback, before anything is trained."""


def canonical_model_kind(kind: str) -> str:
    """cnn, s4 or encoder for a `--model` value (the alias wav2vec2 is encoder)."""
    return MODEL_KIND_ALIASES.get(kind, kind)


def model_kind_of_type(model_type: str | None) -> str | None:
    """cnn, s4 or encoder for a config.json `model_type`; None when no kind of this project trains it.

    Any model type transformers can load as an audio classifier is an encoder, including ones added to
    transformers after this was written (the lookup is transformers' own table).
    """
    if model_type in _MODEL_TYPES:
        return _MODEL_TYPES[model_type]
    from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES

    if model_type in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES:
        return "encoder"
    return None


def checkpoint_model_kind(model_name_or_path: str, *, trust_remote_code: bool = False) -> str:
    """cnn, s4 or encoder: the kind of model a checkpoint folder or Hub repo holds (from its config.json)."""
    config_file = os.path.join(model_name_or_path, "config.json")
    if os.path.isdir(model_name_or_path):
        if not os.path.isfile(config_file):
            raise UsageError(
                f"--model_name_or_path {model_name_or_path}: the folder has no config.json, so it "
                "is not a saved model; give a folder written by save_pretrained or a Hub id"
            )
        try:
            with open(config_file, encoding="utf-8") as f:
                model_type = json.load(f).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise UsageError(
                f"--model_name_or_path {model_name_or_path}: {config_file} is not a valid config.json "
                f"({type(err).__name__}: {err}); restore it from the run that saved the model, or give "
                "another checkpoint"
            ) from err
    else:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(
                model_name_or_path, trust_remote_code=trust_remote_code
            ).model_type
        except (OSError, ValueError) as err:
            raise UsageError(
                f"--model_name_or_path {model_name_or_path}: not a local folder, and loading it from "
                f"the Hub failed ({err})"
            ) from err
    if model_type == _PROBE_MODEL_TYPE:
        raise UsageError(
            f"--model_name_or_path {model_name_or_path} holds a probe (a head over cached encoder features), "
            "which this script does not fine-tune; give the probe's encoder checkpoint instead"
        )
    kind = model_kind_of_type(model_type)
    if kind is None:
        raise UsageError(
            f"--model_name_or_path {model_name_or_path} holds a {model_type!r} model, which is neither a "
            "model of this project (cnn, s4) nor a speech encoder transformers' "
            "AutoModelForAudioClassification can load; give a speech encoder checkpoint (wav2vec2, hubert, "
            "wavlm, data2vec-audio, unispeech-sat, sew, whisper, ...)"
        )
    return kind


def parse_config_overrides(
    text: str | None, model_kind: str, model_name_or_path: str | None = None
) -> dict[str, object]:
    """'{"d_model": 64, "conv_channels": [16, 32]}' -> {"d_model": 64, ...}, checked against the config class
    of `model_kind` (unknown fields and values the config refuses are `UsageError`s). For an encoder, that
    is the config class of the checkpoint's family (`model_name_or_path`; default: wav2vec2-base's)."""
    if not text:
        return {}
    example = """'{"d_model": 64, "n_layers": 2}'"""
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--config_overrides {text!r}: not JSON ({err}); give a JSON object, e.g. {example} (in an "
            "arguments file: a mapping)"
        ) from None
    if not isinstance(overrides, dict):
        raise UsageError(f"--config_overrides {text!r}: not a JSON object; give one, e.g. {example}")
    config_class = _CONFIG_CLASSES[model_kind]
    if model_kind == "encoder" and model_name_or_path:
        from transformers import AutoConfig

        config_class = type(AutoConfig.from_pretrained(model_name_or_path))
    defaults = config_class()
    for key in overrides:
        if not hasattr(defaults, key):
            raise UsageError(
                f"--config_overrides: {config_class.__name__} has no field {key!r}; see its docstring "
                f"for the fields of the {defaults.model_type if model_kind == 'encoder' else model_kind} "
                "model"
            )
    try:
        config_class(**overrides)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--config_overrides {text!r}: {err}") from err
    return overrides


def corpora_present(data_root: str | os.PathLike) -> list[str]:
    """The downloadable corpora that have a non-empty folder under `data_root`."""
    from loaders.registry import corpora_present as present

    return present(data_root)


def find_corpora(
    corpora: Sequence[str] | None, data_root: str, *, data_root_given: bool, download: bool = False
) -> tuple[list[str], bool]:
    """(corpus names, demo): the corpora asked for, else those under `data_root`, else the synthetic demo.

    The synthetic fallback happens only with the default data root (a user who points --data_root at a folder
    wants its corpora, and an empty folder is an error there).
    """
    from loaders.registry import CORPORA, CORPUS_NAMES

    if corpora:
        unknown = [c for c in corpora if c not in CORPORA]
        if unknown:
            raise UsageError(f"--corpora: unknown corpus name(s) {unknown}; choose from {', '.join(CORPORA)}")
        if len(set(corpora)) != len(corpora):
            raise UsageError(f"--corpora {list(corpora)} names a corpus twice")
        return list(corpora), False
    if download:
        return list(CORPUS_NAMES), False
    found = corpora_present(data_root) if os.path.isdir(data_root) else []
    if found:
        return found, False
    if not data_root_given:
        return ["synthetic"], True
    if not os.path.isdir(data_root):
        raise UsageError(
            f"--data_root {data_root} does not exist. Download corpora into it with `python -m loaders "
            f"download {data_root}`, or train on the demo corpus with --corpora synthetic"
        )
    raise UsageError(
        f"--data_root {data_root} holds none of the corpora ({', '.join(CORPUS_NAMES)}): download "
        f"them with `python -m loaders download {data_root}` (or add --download), or train on the "
        "demo corpus with --corpora synthetic"
    )


def check_model_options(model_kind: str, model_args, training_args) -> None:
    """Options that only some model kinds take, checked before any data is prepared."""
    if model_kind != "encoder":
        for name, value in (
            ("head_learning_rate", model_args.head_learning_rate),
            ("use_weighted_layer_sum", model_args.use_weighted_layer_sum or None),
            ("freeze_encoder", model_args.freeze_encoder or None),
        ):
            if value is not None:
                raise UsageError(
                    f"--{name}: only pre-trained encoders (--model encoder) take it, not the {model_kind}; "
                    "drop it"
                )
        if getattr(training_args, "activation_checkpointing", None) or training_args.gradient_checkpointing:
            raise UsageError(
                f"--gradient_checkpointing: the {model_kind} does not support it (it is for pre-trained "
                "encoders, --model encoder); drop it"
            )
    checkpointing = (
        getattr(training_args, "activation_checkpointing", None) or training_args.gradient_checkpointing
    )
    checkpointing_kwargs = (
        getattr(training_args, "activation_checkpointing_kwargs", None)
        or training_args.gradient_checkpointing_kwargs
        or {}
    )
    if checkpointing and isinstance(checkpointing_kwargs, dict) and checkpointing_kwargs.get("use_reentrant"):
        # Re-entrant checkpointing gives no gradient to a block none of whose inputs needs one: behind a
        # frozen front-end (Whisper's convolutions) every encoder layer would silently stay untrained.
        raise UsageError(
            '--gradient_checkpointing_kwargs {"use_reentrant": true}: re-entrant checkpointing leaves layers '
            "behind a frozen front-end untrained; drop it (non-reentrant checkpointing is the default)"
        )
    if model_args.head_learning_rate is not None and model_args.head_learning_rate < 0:
        raise UsageError(
            f"--head_learning_rate {model_args.head_learning_rate}: must be >= 0; give e.g. 1e-3, or leave "
            "it out for the --learning_rate"
        )


def build_model(
    model_kind: str,
    model_name_or_path: str | None,
    label_names: Sequence[str],
    overrides: Mapping[str, object],
    *,
    freeze_feature_encoder: bool = True,
    freeze_encoder: bool = False,
    use_weighted_layer_sum: bool = False,
    trust_remote_code: bool = False,
    max_duration_seconds: float | None = None,
) -> tuple[PreTrainedModel, FeatureExtractionMixin]:
    """The model to train over `label_names` and the feature extractor saved with it.

    CNN / S4 start from random weights, or from a checkpoint this project saved (a new head when the emotions
    differ), with the project's `SERFeatureExtractor`; an encoder from a pre-trained checkpoint of any family
    (default facebook/wav2vec2-base) with a new head and its family's own feature extractor
    (`modeling.encoders.build_encoder_classifier`; `max_duration_seconds` crops Whisper's 30 s window).
    """
    label_names = list(label_names)
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    model_kind = canonical_model_kind(model_kind)
    if model_kind == "encoder":
        from modeling.encoders import build_encoder_classifier

        try:
            return build_encoder_classifier(
                model_name_or_path or DEFAULT_ENCODER_CHECKPOINT,
                label_names,
                freeze_feature_encoder=freeze_feature_encoder,
                freeze_encoder=freeze_encoder,
                use_weighted_layer_sum=use_weighted_layer_sum,
                max_duration_seconds=max_duration_seconds or None,
                **overrides,
            )
        except ValueError as err:
            checkpoint = model_name_or_path or DEFAULT_ENCODER_CHECKPOINT
            raise UsageError(f"--model_name_or_path {checkpoint}: {err}") from err
    model_class = _MODEL_CLASSES[model_kind]
    if model_name_or_path:
        model = model_class.from_pretrained(
            model_name_or_path,
            ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
            **labels,
            **overrides,
        )
    else:
        model = model_class(_CONFIG_CLASSES[model_kind](**overrides, **labels))
    return model, feature_extractor_for(model)


def load_trained_model(model_kind: str, output_dir: str) -> PreTrainedModel:
    """The CNN or S4 a finished run saved in `output_dir`, in evaluation mode."""
    return _MODEL_CLASSES[canonical_model_kind(model_kind)].from_pretrained(output_dir).eval()


def min_clip_samples(model: PreTrainedModel, feature_extractor: FeatureExtractionMixin) -> int:
    """Shortest clip the model can classify: the project's extractor knows it; for a transformers encoder it
    is the convolutional front-end's receptive field (Whisper pads every clip to its window: 0)."""
    known = getattr(feature_extractor, "min_samples", None)
    if isinstance(known, int):
        return known
    config = model.config
    if getattr(config, "conv_kernel", None) and getattr(config, "conv_stride", None):
        needed, stride = 0, 1
        for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
            needed += (kernel - 1) * stride
            stride *= step
        return needed + 1
    return min_input_samples(model)


def split_counts(
    dataset: datasets.DatasetDict, label_names: Sequence[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """split -> corpus -> class -> number of files (metadata only, no audio decoded)."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for split, ds in dataset.items():
        table: dict[str, dict[str, int]] = {}
        for corpus, label in zip(ds["corpus"], ds["label"], strict=True):
            by_class = table.setdefault(corpus, {name: 0 for name in label_names})
            by_class[label_names[label]] += 1
        counts[split] = dict(sorted(table.items()))
    return counts


# ---- resuming: which checkpoint is complete, and whether it belongs to the requested run ----

RUN_SETUP_FILE = "run_setup.json"
# Written by torch.save (zip archives): the central directory comes last, so a cut-off file is not a zip.
_TORCH_PICKLES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth", "pytorch_model.bin")


def _safetensors_problem(path: str) -> str | None:
    """Why a .safetensors file is unreadable: a bad header, or less data than the header promises."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            return f"{os.path.basename(path)} is truncated ({size} bytes)"
        header_length = int.from_bytes(prefix, "little")
        if header_length > size - 8:
            return f"{os.path.basename(path)} is truncated ({size} bytes, header of {header_length})"
        try:
            header = json.loads(f.read(header_length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{os.path.basename(path)} has an unreadable header"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if 8 + header_length + end > size:
        return f"{os.path.basename(path)} is truncated ({size} of {8 + header_length + end} bytes)"
    return None


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` cannot be resumed from (None: it is complete).

    The Trainer writes trainer_state.json last, so a checkpoint cut off by a kill lacks it or has a partial
    one; the other files are checked too, since a resumed run re-saves into a folder of the same name.
    """
    import zipfile

    folder = os.fspath(folder)
    state = os.path.join(folder, "trainer_state.json")
    if not os.path.isfile(state):
        return "no trainer_state.json (the save was interrupted)"
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is truncated"
    names = os.listdir(folder)
    weights = {"model.safetensors", "pytorch_model.bin"} & set(names)
    sharded = any(name.endswith(".index.json") for name in names)
    # DeepSpeed (global_stepN/) and FSDP (pytorch_model_fsdp_0/) keep the weights in folders of their own.
    engine = any(os.path.isdir(os.path.join(folder, name)) for name in names)
    if not weights and not sharded and not engine:
        return "no model weights (model.safetensors)"
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".safetensors"):
            problem = _safetensors_problem(path)
            if problem:
                return problem
        elif name in _TORCH_PICKLES and not zipfile.is_zipfile(path):
            return f"{name} is truncated"
        elif name == "config.json":
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return "config.json is truncated"
    return None


def last_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[str | None, list[tuple[str, str]]]:
    """(the newest complete checkpoint-N folder or None, [(newer incomplete folder, why), ...])."""
    import re

    pattern = re.compile(r"^checkpoint-(\d+)$")
    found = []
    for name in os.listdir(output_dir):
        match = pattern.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    skipped = []
    for _, path in sorted(found, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def run_setup(
    model_kind: str,
    label_names: Sequence[str],
    corpora: Sequence[str],
    split_strategy: str,
    test_corpora: Sequence[str] | None,
    merge: Mapping[str, str],
    split_seed: int,
    overrides: Mapping[str, object],
) -> dict[str, object]:
    """What makes two runs different enough that one cannot continue the other's checkpoints."""
    return {
        "model": model_kind,
        "emotions": list(label_names),
        "corpora": list(corpora),
        "split_strategy": split_strategy,
        "test_corpora": sorted(test_corpora) if split_strategy == "corpus" and test_corpora else None,
        "merge": dict(sorted(merge.items())),
        "split_seed": split_seed,
        "config": {k: overrides[k] for k in sorted(overrides)},
    }


_SETUP_OPTIONS = {
    "model": "--model",
    "emotions": "--emotions",
    "corpora": "--corpora",
    "split_strategy": "--split_strategy",
    "test_corpora": "--test_corpora",
    "merge": "--merge",
    "split_seed": "--data_seed/--seed",
}


def checkpoint_mismatches(checkpoint: str, requested: Mapping[str, object]) -> list[str]:
    """How the run that wrote `checkpoint` differs from the `requested` run_setup (empty: it may resume).

    The model kind, labels and architecture come from the checkpoint's config.json; corpora, split and merges
    from the run_setup.json that run_train.py writes next to the checkpoints (older runs have none).
    """
    differences = []
    config_file = os.path.join(checkpoint, "config.json")
    config: dict = {}
    if os.path.isfile(config_file):
        try:
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            config = {}
    kind = model_kind_of_type(config.get("model_type")) if config.get("model_type") else None
    if kind is not None and kind != canonical_model_kind(str(requested["model"])):
        differences.append(f"--model: it is a {kind} model, not {requested['model']}")
    id2label = config.get("id2label")
    if id2label:
        labels = [id2label[str(i)] for i in range(len(id2label))]
        if labels != list(requested["emotions"]):
            differences.append(
                f"--emotions: it was trained for {' '.join(labels)}, not {' '.join(requested['emotions'])}"
            )
    for key, value in dict(requested.get("config") or {}).items():
        if key in config and config[key] != value:
            differences.append(f"--config_overrides: it has {key}={config[key]!r}, not {value!r}")
    setup_file = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), RUN_SETUP_FILE)
    if os.path.isfile(setup_file):
        try:
            with open(setup_file, encoding="utf-8") as f:
                previous = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}
        for key, option in _SETUP_OPTIONS.items():
            if (key == "model" and kind is not None) or (key == "emotions" and id2label):
                continue  # already compared with config.json, which the checkpoint itself holds
            if key in previous and previous[key] != requested.get(key):
                differences.append(
                    f"{option}: it was {_show(previous[key])}, not {_show(requested.get(key))}"
                )
    return differences


def _show(value: object) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items()) or "(none)"
    return str(value)


# ---- one writer per output folder ----

# A leading underscore keeps it out of the Trainer's push_to_hub uploads (it names the host and PID).
LOCK_FILE = "_run_train.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class OutputDirLock:
    """`output_dir/_run_train.lock` holding the owner's PID and host, so a second run_train.py into the same
    folder is refused instead of overwriting the first one's checkpoints.

    The file is created complete (written under a temporary name, then hard-linked into place, which fails
    if it exists), so a reader never sees a half-written lock. A lock whose PID is dead on this host is left
    over by a killed run and is taken over with a warning; one from another host cannot be checked and is
    refused (delete the file if that run is gone).
    """

    def __init__(self, output_dir: str | os.PathLike, log=None):
        self.output_dir = os.fspath(output_dir)
        self.path = os.path.join(self.output_dir, LOCK_FILE)
        self.log = log
        self.created_dir = False
        self.held = False

    def owner(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}

    def acquire(self) -> None:
        import socket
        import time

        host = socket.gethostname()
        if not os.path.isdir(self.output_dir):
            os.makedirs(self.output_dir, exist_ok=True)
            self.created_dir = True
        temporary = f"{self.path}.{host}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        try:
            for _ in range(3):
                try:
                    os.link(temporary, self.path)
                    self.held = True
                    return
                except FileExistsError:
                    pass
                owner = self.owner()
                if owner is None:
                    continue  # released meanwhile
                pid, owner_host = owner.get("pid"), owner.get("host")
                # Our own PID in a lock we do not hold: a container restarted with the same host name and
                # PID after a kill.
                if (
                    owner_host == host
                    and isinstance(pid, int)
                    and (pid == os.getpid() or not _pid_alive(pid))
                ):
                    self._take_over(owner)
                    continue
                who = f"process {pid} on {owner_host}" if pid else "a process (unreadable lock file)"
                raise UsageError(
                    f"--output_dir {self.output_dir}: another run_train.py ({who}, started "
                    f"{owner.get('started', '?')}) is writing into it ({self.path}); wait for it to finish "
                    "or choose another --output_dir (delete the lock file only if that run is gone)"
                )
            raise UsageError(f"--output_dir {self.output_dir}: could not take {self.path}; try again")
        finally:
            os.unlink(temporary)

    def _take_over(self, owner: dict) -> None:
        # Renaming is atomic: of two runs taking over the same stale lock, one renames it and the other
        # finds it gone (and then competes for a fresh one through os.link).
        aside = f"{self.path}.stale.{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, encoding="utf-8") as f:
                moved = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError):
            moved = {}
        if moved != owner:  # a live run's fresh lock was moved by mistake: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            if self.log is not None:
                self.log.warning(
                    "Taking over the lock of %s: its run (process %s on %s, started %s) is no longer running "
                    "(killed?)",
                    self.output_dir,
                    owner.get("pid"),
                    owner.get("host"),
                    owner.get("started", "?"),
                )
        os.unlink(aside)

    def release(self) -> None:
        if self.held:
            owner = self.owner()
            if owner and owner.get("pid") == os.getpid():
                os.unlink(self.path)
            self.held = False
        if self.created_dir:
            try:
                os.rmdir(self.output_dir)  # only if the run stopped before writing anything
            except OSError:
                pass
            self.created_dir = False

    def __enter__(self) -> OutputDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def streaming_overrides(overrides: Mapping[str, object], model_name_or_path: str | None) -> dict[str, object]:
    """--streaming: the config overrides that make an S4 causal (so `inference.streaming` can run
    it step by step), after checking that neither the user's overrides nor the checkpoint contradict them."""
    if overrides.get("bidirectional") is True:
        raise UsageError(
            '--streaming with --config_overrides {"bidirectional": true}: a streaming S4 must be causal; '
            'drop "bidirectional"'
        )
    normalization = overrides.get("mel_normalization")
    if isinstance(normalization, str) and "utterance" in normalization:
        raise UsageError(
            f'--streaming with --config_overrides {{"mel_normalization": "{normalization}"}}: normalising '
            'over the whole clip cannot be streamed; use "causal" (the default with --streaming), "dataset" '
            'or "none"'
        )
    for head in ("functionals_head", "energy_peaks_head"):
        if overrides.get(head) is True:
            raise UsageError(
                f'--streaming with --config_overrides {{"{head}": true}}: the head summarises the whole '
                f'clip, which cannot be streamed; drop "{head}"'
            )
    if model_name_or_path and os.path.isfile(os.path.join(model_name_or_path, "config.json")):
        with open(os.path.join(model_name_or_path, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        if config.get("bidirectional", True):
            # Making it causal would drop the backward kernels (re-initialised as mismatched sizes).
            raise UsageError(
                f"--streaming: --model_name_or_path {model_name_or_path} is a bidirectional S4, whose layers "
                "look at future frames; give a causal checkpoint (one trained with --streaming) or drop "
                "--model_name_or_path to train a streaming S4 from scratch"
            )
    return {
        **overrides,
        "bidirectional": False,
        "mel_normalization": overrides.get("mel_normalization", "causal"),
        "functionals_head": False,
        "energy_peaks_head": False,
    }
