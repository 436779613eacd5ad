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


@pytest.fixture(scope="session")
def make_tiny_cnn():
    """Builds a small random CNN classifier over TINY_CNN_LABELS (eval mode): fast enough for any test."""

    def make():
        from modeling import CNNConfig, CNNForAudioClassification

        config = CNNConfig(
            conv_channels=[8, 8],
            n_mfcc=13,
            n_mels=20,
            attention_size=8,
            classifier_hidden_size=8,
            num_labels=len(TINY_CNN_LABELS),
            id2label=dict(enumerate(TINY_CNN_LABELS)),
            label2id={label: i for i, label in enumerate(TINY_CNN_LABELS)},
        )
        return CNNForAudioClassification(config).eval()

    return make
