"""The lock (requirements/constraints.txt) is in sync with setup.cfg and is what this environment runs."""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "constraints.txt"
EXTRAS = ("dev", "deploy", "app", "opensmile")  # the test profile of tools/bootstrap.sh


def read_lock(path: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: '{line}' is not an exact pin (name==version)"
        pins[canonicalize_name(name)] = version.strip()
    return pins


def declared_requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in EXTRAS:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in lines if line.strip()]


def test_every_declared_requirement_is_locked_within_its_range():
    pins = read_lock()
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in setup.cfg but not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK.name} pins {req.name}=={pins[name]}, outside setup.cfg's '{req.specifier}': "
            "run `make lock`"
        )


def test_declared_requirements_have_upper_bounds():
    # A user's `pip install` must not pull a major release the suite never ran against.
    for req in declared_requirements():
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in req.specifier), (
            f"setup.cfg: {req} has no upper bound"
        )


def test_lock_covers_every_dependency_of_the_project():
    """Walk the installed dependency tree from setup.cfg: whatever it reaches must be pinned."""
    pins = read_lock()
    env = default_environment()
    seen: set[tuple[str, str]] = set()
    todo = [(req, "") for req in declared_requirements()]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted_extra in sorted(req.extras) or [""]:
            if (name, wanted_extra) in seen:
                continue
            seen.add((name, wanted_extra))
            assert name in pins, (
                f"{req.name} (needed through setup.cfg) is not in {LOCK.name}: run `make lock`"
            )
            try:
                dist = metadata.distribution(req.name)
            except metadata.PackageNotFoundError:
                pytest.fail(f"{req.name} is not installed: run `make test` (it installs from the lock)")
            todo += [(Requirement(r), wanted_extra) for r in dist.requires or []]


def test_installed_versions_are_the_locked_ones():
    mismatched = []
    for name, version in read_lock().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # e.g. a package only another platform needs
        if installed != version:
            mismatched.append(f"{name} {installed} (locked {version})")
    assert not mismatched, "installed versions differ from the lock: " + ", ".join(mismatched)


def test_read_lock_refuses_a_range(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# comment\ntorch==2.14.1\nnumpy>=1\n")
    with pytest.raises(AssertionError, match="not an exact pin"):
        read_lock(lock)
