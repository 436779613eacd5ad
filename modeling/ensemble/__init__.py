"""An ensemble of the project's CNN and S4 classifiers: their class probabilities averaged."""

from .configuration_ensemble import EnsembleConfig
from .modeling_ensemble import EnsembleForAudioClassification, EnsemblePreTrainedModel

__all__ = ["EnsembleConfig", "EnsembleForAudioClassification", "EnsemblePreTrainedModel"]
