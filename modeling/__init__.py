"""Emotion classifiers (Wav2Vec2, attention CNN, S4/S4D) behind one Hugging Face interface."""

from .auto import feature_extractor_for, min_input_samples, push_to_hub, register_auto_classes, save_for_hub
from .cnn import CNNConfig, CNNForAudioClassification
from .feature_extraction import SERFeatureExtractor
from .s4 import S4Config, S4ForAudioClassification
from .wav2vec2 import build_wav2vec2

__all__ = [
    "CNNConfig",
    "CNNForAudioClassification",
    "S4Config",
    "S4ForAudioClassification",
    "SERFeatureExtractor",
    "build_wav2vec2",
    "feature_extractor_for",
    "min_input_samples",
    "push_to_hub",
    "register_auto_classes",
    "save_for_hub",
]
