"""What run_train.py resolves before training: model kind, config overrides, corpora, the model itself.

Every check here runs before any data is prepared or any file written, and fails with a `UsageError` that
names the argument and says what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import datasets
from transformers import PretrainedConfig, PreTrainedModel, Wav2Vec2Config

from ..auto import feature_extractor_for
from ..cnn import CNNConfig, CNNForAudioClassification
from ..feature_extraction import SERFeatureExtractor
from ..s4 import S4Config, S4ForAudioClassification

MODEL_KINDS: tuple[str, ...] = ("cnn", "s4", "wav2vec2")
_MODEL_TYPES = {CNNConfig.model_type: "cnn", S4Config.model_type: "s4", Wav2Vec2Config.model_type: "wav2vec2"}
_CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    "cnn": CNNConfig,
    "s4": S4Config,
    "wav2vec2": Wav2Vec2Config,
}
_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "cnn": CNNForAudioClassification,
    "s4": S4ForAudioClassification,
}


class UsageError(ValueError):
    """A bad argument or input: reported to the user without a traceback, before anything is trained."""


def checkpoint_model_kind(model_name_or_path: str, *, trust_remote_code: bool = False) -> str:
    """cnn, s4 or wav2vec2: the kind of model a checkpoint folder or Hub repo holds (from its config.json)."""
    config_file = os.path.join(model_name_or_path, "config.json")
    if os.path.isdir(model_name_or_path):
        if not os.path.isfile(config_file):
            raise UsageError(
                f"--model_name_or_path {model_name_or_path}: the folder has no config.json, so it "
                "is not a saved model; give a folder written by save_pretrained or a Hub id"
            )
        with open(config_file) as f:
            model_type = json.load(f).get("model_type")
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
    if model_type not in _MODEL_TYPES:
        raise UsageError(
            f"--model_name_or_path {model_name_or_path} holds a {model_type!r} model; this script "
            f"trains {', '.join(MODEL_KINDS)} (model types {', '.join(_MODEL_TYPES)})"
        )
    return _MODEL_TYPES[model_type]


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets: 'a=1,b=[2,3]' -> ['a=1', 'b=[2,3]']."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(" and 1 or 0
        depth -= char in "])" and 1 or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _parse_value(text: str, default: object) -> object:
    if isinstance(default, str):
        # A string field takes the text as it is: `feature_normalization=none` means "none", not None.
        return text.strip("'\"")
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text.replace("(", "[").replace(")", "]"))
    except json.JSONDecodeError:
        return text


def parse_config_overrides(text: str | None, model_kind: str) -> dict[str, object]:
    """'d_model=64,n_layers=2,conv_channels=[16,32]' -> {"d_model": 64, ...}, checked against the config."""
    if not text:
        return {}
    config_class = _CONFIG_CLASSES[model_kind]
    defaults = config_class()
    overrides = {}
    for item in _split_top_level(text):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--config_overrides: {item!r} is not key=value (e.g. 'd_model=64,n_layers=2')")
        if not hasattr(defaults, key):
            raise UsageError(
                f"--config_overrides: {config_class.__name__} has no field {key!r}; see its docstring "
                f"for the fields of the {model_kind} model"
            )
        overrides[key] = _parse_value(value.strip(), getattr(defaults, key))
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
) -> tuple[PreTrainedModel, SERFeatureExtractor]:
    """The model to train over `label_names` and the feature extractor saved with it.

    CNN / S4 start from random weights, or from a checkpoint this project saved (a new head when the emotions
    differ); wav2vec2 from a pre-trained checkpoint (default facebook/wav2vec2-base) with a new head.
    """
    label_names = list(label_names)
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    if model_kind == "wav2vec2":
        from ..wav2vec2 import DEFAULT_CHECKPOINT, build_wav2vec2

        return build_wav2vec2(
            model_name_or_path or DEFAULT_CHECKPOINT,
            label_names=label_names,
            freeze_feature_encoder=freeze_feature_encoder,
            freeze_encoder=freeze_encoder,
            use_weighted_layer_sum=use_weighted_layer_sum,
            **overrides,
        )
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
