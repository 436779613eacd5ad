"""Auto-class registration and Hub export of the project's models.

Importing `modeling` imports this module, which registers the CNN and S4 with `AutoConfig`,
`AutoModelForAudioClassification` and `AutoFeatureExtractor`, so inside the project
``AutoModelForAudioClassification.from_pretrained(dir)`` and ``pipeline("audio-classification", model=dir)``
need no `trust_remote_code`.

It also marks the classes for export (`register_for_auto_class`): `save_pretrained` then copies
configuration_*.py / modeling_*.py (and their relative imports, which must stay inside the model's own
folder) and feature_extraction.py next to the weights and writes an `auto_map` into config.json and
preprocessor_config.json. A saved directory or Hub repo therefore loads with ``trust_remote_code=True`` in a
Python where this project is not installed.

The ensemble (`modeling.ensemble`) is registered but not exported: its saved directory loads inside the
project (``from_pretrained``, the pipeline, `python -m inference.predict`), not as remote code.

The probe (`modeling.probe`) is registered and exported the same way, but saves its encoder family's own
feature extractor (no project code needed for it); the model itself needs ``trust_remote_code=True`` outside.

A wav2vec2 directory holds transformers' own model class (no code copied) and the project's feature
extractor. Outside the project, load it with ``trust_remote_code=True`` (for the feature extractor's input
checks), or pass ``feature_extractor=Wav2Vec2FeatureExtractor.from_pretrained(dir)``: same numbers.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
)

from .cnn import CNNConfig, CNNForAudioClassification
from .ensemble import EnsembleConfig, EnsembleForAudioClassification
from .feature_extraction import SERFeatureExtractor
from .probe import ProbeConfig, ProbeForAudioClassification
from .s4 import S4Config, S4ForAudioClassification

CUSTOM_MODELS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    CNNConfig.model_type: (CNNConfig, CNNForAudioClassification),
    S4Config.model_type: (S4Config, S4ForAudioClassification),
}
# Models that save their encoder family's own feature extractor (Wav2Vec2FeatureExtractor, Whisper's), which
# transformers finds by name: no AutoFeatureExtractor registration, no feature_extraction.py copied.
CUSTOM_MODELS_OWN_EXTRACTOR: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    ProbeConfig.model_type: (ProbeConfig, ProbeForAudioClassification),
}
# Models registered with the Auto classes but not exported as remote code: their modeling file imports the
# other model folders (an ensemble builds CNN and S4 members), which transformers' code export cannot copy.
CUSTOM_MODELS_IN_PROJECT: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    EnsembleConfig.model_type: (EnsembleConfig, EnsembleForAudioClassification),
}


def register_auto_classes() -> None:
    """Register the custom models with the Auto classes and mark them for code export. Idempotent."""
    for model_type, (config_class, model_class) in CUSTOM_MODELS.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModelForAudioClassification.register(config_class, model_class, exist_ok=True)
        AutoFeatureExtractor.register(config_class, SERFeatureExtractor, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModelForAudioClassification")
    for model_type, (config_class, model_class) in CUSTOM_MODELS_OWN_EXTRACTOR.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModelForAudioClassification.register(config_class, model_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModelForAudioClassification")
    for model_type, (config_class, model_class) in CUSTOM_MODELS_IN_PROJECT.items():
        AutoConfig.register(model_type, config_class, exist_ok=True)
        AutoModelForAudioClassification.register(config_class, model_class, exist_ok=True)
        AutoFeatureExtractor.register(config_class, SERFeatureExtractor, exist_ok=True)


def min_input_samples(model_or_config: PreTrainedModel | PretrainedConfig) -> int:
    """Shortest clip (in samples) the model can classify: its front-end's receptive field."""
    config = model_or_config.config if isinstance(model_or_config, PreTrainedModel) else model_or_config
    for owner in (model_or_config, config):
        value = getattr(owner, "min_input_samples", None)
        if isinstance(value, int):
            return value
    if isinstance(config, Wav2Vec2Config):
        # A frame of the conv feature encoder needs k_0 + sum_i (k_i - 1) * prod_{j<i} s_j samples.
        needed, stride = 0, 1
        for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
            needed += (kernel - 1) * stride
            stride *= step
        return needed + 1
    return 0


def feature_extractor_for(model_or_config: PreTrainedModel | PretrainedConfig) -> SERFeatureExtractor:
    """The project's feature extractor set up for this model (sampling rate, shortest clip)."""
    config = model_or_config.config if isinstance(model_or_config, PreTrainedModel) else model_or_config
    return SERFeatureExtractor(
        sampling_rate=getattr(config, "sampling_rate", 16000),
        min_samples=min_input_samples(model_or_config),
        do_normalize=getattr(config, "normalize_waveform", True),
    )


def save_for_hub(
    model: PreTrainedModel, feature_extractor: SERFeatureExtractor | None, out_dir: str | os.PathLike
) -> list[str]:
    """Write everything a Hub repo needs into `out_dir` and return the file names written.

    config.json (with `auto_map` for the custom models), model.safetensors, preprocessor_config.json and the
    model's and feature extractor's source files. `feature_extractor=None`: `feature_extractor_for(model)`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if feature_extractor is None:
        feature_extractor = feature_extractor_for(model)
    model.save_pretrained(out_dir)
    feature_extractor.save_pretrained(out_dir)
    return sorted(p.name for p in out_dir.iterdir() if p.is_file())


def push_to_hub(
    model: PreTrainedModel,
    feature_extractor: SERFeatureExtractor | None,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload speech emotion classifier",
    extra_files: dict[str, str | os.PathLike] | None = None,
) -> str:
    """Upload model, feature extractor and code in one commit; returns the commit URL.

    `extra_files` maps a path in the repo to a local file (e.g. ``{"README.md": "card.md"}``).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp_dir:
        names = save_for_hub(model, feature_extractor, tmp_dir)
        operations = [
            CommitOperationAdd(path_in_repo=n, path_or_fileobj=os.path.join(tmp_dir, n)) for n in names
        ]
        for path_in_repo, local_path in (extra_files or {}).items():
            operations.append(CommitOperationAdd(path_in_repo=path_in_repo, path_or_fileobj=str(local_path)))
        commit = api.create_commit(repo_id=repo_id, operations=operations, commit_message=commit_message)
    return str(getattr(commit, "commit_url", commit))


register_auto_classes()
