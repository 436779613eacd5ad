"""Using a trained classifier: the command line ``python -m inference.predict`` and the web demo share it.

``inputs`` (which files), ``audio_io`` (reading them), ``segmentation`` (cutting long recordings),
``classify`` (batched prediction, top-k), ``outputs`` (records, timeline, table, CSV/JSON),
``streaming`` (the causal S4, live), ``onnx_export``; ``predict`` is the command line's wiring.
"""

from .audio_io import AudioReadError, AudioSource, read_audio
from .classify import EmotionClassifier, FileResult, PredictOptions, predict_files, top_labels
from .inputs import collect_inputs
from .segmentation import Segment, VadConfig, fixed_windows, segments_from_energy
from .streaming import StreamingClassifier, stream_files

__all__ = [
    "AudioReadError",
    "AudioSource",
    "EmotionClassifier",
    "FileResult",
    "PredictOptions",
    "Segment",
    "StreamingClassifier",
    "VadConfig",
    "collect_inputs",
    "fixed_windows",
    "predict_files",
    "read_audio",
    "segments_from_energy",
    "stream_files",
    "top_labels",
]
