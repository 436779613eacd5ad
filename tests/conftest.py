"""Test-session settings: no test may reach the network (no Hub, no Kaggle, no telemetry)."""

import os

# Set before transformers / datasets / huggingface_hub are imported by any test module, so a forgotten
# download fails at once instead of reaching out; upload tests replace the Hub client itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

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
