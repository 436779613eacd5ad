"""The ten canonical emotion names and how a user's choice of emotions becomes class labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Fixed order: it is the order of `label` ids whenever the user does not choose their own.
EMOTIONS: tuple[str, ...] = (
    "anger",
    "anxiety",
    "bored",
    "calm",
    "disgust",
    "fear",
    "happy",
    "neutral",
    "sadness",
    "surprise",
)

# The four emotions every one of the six corpora has.
DEFAULT_EMOTIONS: tuple[str, ...] = ("anger", "happy", "neutral", "sadness")


def resolve_emotions(
    emotions: Iterable[str] | None = None, merge: Mapping[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Turn the user's emotion choice into (class names, source emotion -> class name).

    `emotions` are the classes to keep (default: the four shared by all corpora); `merge` maps an
    extra source emotion onto one of them (e.g. ``{"calm": "neutral"}``). Nothing is merged unless
    asked for. Files whose emotion is neither kept nor merged are left out by the caller.
    """
    names = list(DEFAULT_EMOTIONS if emotions is None else emotions)
    if not names:
        raise ValueError("emotions: choose at least one emotion, e.g. --emotions anger happy neutral sadness")
    unknown = [e for e in names if e not in EMOTIONS]
    if unknown:
        raise ValueError(f"emotions: unknown emotion(s) {unknown}; choose from {list(EMOTIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"emotions: {names} names an emotion twice")
    mapping = {e: e for e in names}
    for source, target in (merge or {}).items():
        if source not in EMOTIONS:
            raise ValueError(f"merge: unknown source emotion {source!r}; choose from {list(EMOTIONS)}")
        if target not in names:
            raise ValueError(
                f"merge: {source!r} -> {target!r}, but {target!r} is not among the emotions {names}"
            )
        if source in names and source != target:
            raise ValueError(
                f"merge: {source!r} is itself a chosen class; drop it from the emotions to merge it"
            )
        mapping[source] = target
    return names, mapping


def parse_merge(specs: Iterable[str]) -> dict[str, str]:
    """Parse command-line merges written ``source:target`` (e.g. ``anxiety:fear calm:neutral``)."""
    merge = {}
    for spec in specs:
        source, sep, target = spec.partition(":")
        if not sep or not source or not target:
            raise ValueError(f"merge: {spec!r} is not of the form source:target (e.g. calm:neutral)")
        merge[source.strip()] = target.strip()
    return merge
