"""Speech emotion corpora as one `datasets` schema: builders, splits, downloads, Hub push.

    from loaders import load_corpora
    dsd = load_corpora(["emodb", "ravdess"], "data", emotions=["anger", "happy", "neutral", "sadness"])

Exports are imported on first use, so `import loaders.emotions` stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "EMOTIONS": "emotions",
    "DEFAULT_EMOTIONS": "emotions",
    "resolve_emotions": "emotions",
    "parse_merge": "emotions",
    "corpus_features": "schema",
    "SAMPLING_RATE": "schema",
    "EmotionCorpusBuilder": "builder",
    "EmotionCorpusConfig": "builder",
    "BrokenAudioError": "audio",
    "CremaD": "cremad",
    "EmoDB": "emodb",
    "Ravdess": "ravdess",
    "Savee": "savee",
    "Shemo": "shemo",
    "Tess": "tess",
    "CORPORA": "registry",
    "CORPUS_NAMES": "registry",
    "get_builder_class": "registry",
    "validate_corpus_names": "registry",
    "find_corpus_dir": "registry",
    "locate_corpora": "registry",
    "corpora_present": "registry",
    "scan_corpus": "registry",
    "ScanResult": "discovery",
    "FileInfo": "discovery",
    "CorpusNotFoundError": "discovery",
    "GitLfsPointerError": "discovery",
    "UnknownCodeError": "discovery",
    "load_corpus": "loading",
    "load_corpora": "loading",
    "prepare_corpus": "loading",
    "collect_stats": "stats",
    "corpus_stats": "stats",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# The original project's API (loaders.legacy): `from loaders import download_datasets, ...`.
_EXPORTS.update(download_datasets="legacy", SpeechEmotionDataset="legacy", get_dataset_info="legacy")
__all__ = list(_EXPORTS)
