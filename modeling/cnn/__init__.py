"""Attention CNN after Alsabhan (Sensors 2023): raw audio -> ZCR/RMS/MFCC frames -> 1-D CNN -> attention."""

from .configuration_cnn import CNNConfig
from .modeling_cnn import CNNForAudioClassification, CNNPreTrainedModel

__all__ = ["CNNConfig", "CNNForAudioClassification", "CNNPreTrainedModel"]
