"""Test-session settings: no test may reach the network (no Hub, no Kaggle, no telemetry); pytest-xdist
workers share the cores."""

import atexit
import os
import shutil
import tempfile

# Set before transformers / datasets / huggingface_hub are imported by any test module, so a forgotten
# download fails at once instead of reaching out; upload tests replace the Hub client itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Builders write Arrow files to the datasets cache, and the fixture corpora get new cache names on every run:
# in the user's cache they piled up (41 runs left 41 copies of the EMO-DB fixture in ~/.cache). Each test
# process gets a cache of its own, removed when it exits; the runs it starts as subprocesses inherit it.
_datasets_cache = tempfile.mkdtemp(prefix="ser-tests-datasets-")
os.environ["HF_DATASETS_CACHE"] = _datasets_cache
atexit.register(shutil.rmtree, _datasets_cache, ignore_errors=True)

# `make test` runs two pytest-xdist workers on the machine's cores. With torch's default of one thread per
# core in each, they oversubscribe the cores: the suite took 546 s on 2 cores, 417 s with one thread per
# worker (README, "Tests"). Set before torch is imported, and inherited by the runs tests start as
# subprocesses.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    # The cores this process may run on (a container's share), not the host's count.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores // _workers)))

import pytest  # noqa: E402  (after the environment above, which must come first)

TINY_CNN_LABELS = ["neutral", "angry", "happy", "sad"]
PROJECT_LOGGERS = ("run_train", "training", "loaders", "modeling", "inference", "evaluation")


@pytest.fixture(autouse=True)
def isolated_log_levels():
    """A run sets its loggers' levels from transformers' verbosity (log_level "passive"), which a run with
    --log_level error leaves behind: restore both after every test, so no test hides another's warnings."""
    import logging

    import transformers

    verbosity = transformers.utils.logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in PROJECT_LOGGERS}
    yield
    transformers.utils.logging.set_verbosity(verbosity)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def make_tiny_cnn():
    """Builds a small random CNN classifier (eval mode) over `labels` (default TINY_CNN_LABELS): fast enough
    for any test."""

    def make(labels=TINY_CNN_LABELS, **overrides):
        from modeling import CNNConfig, CNNForAudioClassification

        config = CNNConfig(
            **overrides,
            conv_channels=[8, 8],
            n_mfcc=13,
            n_mels=20,
            attention_size=8,
            classifier_hidden_size=8,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
        return CNNForAudioClassification(config).eval()

    return make
