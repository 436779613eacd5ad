"""Using a trained classifier: audio reading, segmentation of long recordings, batched prediction,
streaming with the causal S4, and ONNX export. The command line is `python -m inference.predict`."""

from .audio_io import AudioReadError, AudioSource, read_audio
from .classify import EmotionClassifier, FileResult, PredictOptions, predict_files
from .segmentation import Segment, VadConfig, fixed_windows, segments_from_energy
from .streaming import StreamingClassifier

__all__ = [
    "AudioReadError",
    "AudioSource",
    "EmotionClassifier",
    "FileResult",
    "PredictOptions",
    "Segment",
    "StreamingClassifier",
    "VadConfig",
    "fixed_windows",
    "predict_files",
    "read_audio",
    "segments_from_energy",
]
