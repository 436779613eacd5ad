"""Test-session settings: no test may reach the network (no Hub, no Kaggle, no telemetry)."""

import os

# Set before transformers / datasets / huggingface_hub are imported by any test module, so a forgotten
# download fails at once instead of reaching out; upload tests replace the Hub client itself.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
