"""Live emotion recognition with the S4 model in its recurrent form.

The causal S4 configuration (``bidirectional=False``; for the mel front-end ``mel_normalization``
"dataset", "causal" or "none") can run one frame at a time: ``x_k = A_bar x_{k-1} + B_bar u_k``.
:class:`StreamingClassifier` feeds it chunks of any size (e.g. 20 ms from a microphone) and returns the
current emotion probabilities after each; memory is constant (one state per layer, a running pooled sum,
and fewer than one frame of buffered samples), whatever the stream's length. After the last chunk the
logits equal the offline model's logits on the whole clip.

The feature extractor's per-clip normalisation (``do_normalize=True``: zero mean, unit variance over the
whole clip) cannot be applied to a stream whose end is unknown, so streamed audio is fed raw. Models meant
for streaming should be saved with ``do_normalize=False`` (what ``normalize_waveform=False`` in the model's
config gives); otherwise a warning says that streamed and offline predictions differ (slightly, for the
mel front-end, whose causal normalisation removes most of a gain change).

:func:`stream_files` is the loop behind ``python -m inference.predict MODEL FILE... --stream``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable

import numpy as np
import torch

from .audio_io import AudioReadError, AudioSource
from .classify import PredictOptions, screen_file, top_labels
from .outputs import format_ranked


class StreamingClassifier:
    """A causal ``S4ForAudioClassification`` on a live stream: ``push(chunk) -> probabilities``.

    ``push`` returns None until the first complete frame has arrived.
    """

    def __init__(self, model, feature_extractor=None):
        if not hasattr(model, "init_stream_state") or not hasattr(model, "stream_step"):
            raise TypeError(
                f"{type(model).__name__} has no recurrent form; streaming needs an S4ForAudioClassification "
                "trained with bidirectional=False (and mel_normalization='dataset', 'causal' or 'none')."
            )
        self.model = model.eval()
        self.labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
        self.sampling_rate = int(getattr(model.config, "sampling_rate", 16000))
        if feature_extractor is not None and getattr(feature_extractor, "do_normalize", False):
            warnings.warn(
                "the model's feature extractor normalises each clip by its own mean and variance "
                "(do_normalize=True), which a stream cannot know in advance: streamed audio is fed "
                "unnormalised, so streamed predictions differ from offline ones. Save the feature extractor "
                "with do_normalize=False for models meant for streaming.",
                stacklevel=2,
            )
        self.reset()

    def reset(self) -> None:
        """Start a new stream (re-reads the model's parameters)."""
        self.state = self.model.init_stream_state(batch_size=1)
        self._logits: torch.Tensor | None = None
        self.samples_seen = 0

    @property
    def frames(self) -> int:
        """Frames consumed so far (the model's frame rate, e.g. 100 per second for the mel front-end)."""
        return self.state.n_frames

    @torch.inference_mode()
    def push(self, chunk: np.ndarray | torch.Tensor) -> np.ndarray | None:
        """Feed the next mono samples at ``sampling_rate``; returns the current probabilities or None."""
        samples = chunk if torch.is_tensor(chunk) else torch.from_numpy(np.asarray(chunk, dtype=np.float32))
        if samples.dim() != 1:
            raise ValueError(f"push() takes a 1-D chunk of mono samples; got shape {tuple(samples.shape)}")
        self.samples_seen += samples.shape[0]
        logits, self.state = self.model.stream_step(samples.float().unsqueeze(0), self.state)
        if logits is not None:
            self._logits = logits[0].float()
        return self.probabilities()

    def logits(self) -> np.ndarray | None:
        return None if self._logits is None else self._logits.cpu().numpy()

    def probabilities(self) -> np.ndarray | None:
        return None if self._logits is None else torch.softmax(self._logits, -1).cpu().numpy()

    def top(self) -> tuple[str, float] | None:
        probabilities = self.probabilities()
        return None if probabilities is None else top_labels(probabilities, self.labels, 1)[0]


def stream_files(
    streamer: StreamingClassifier,
    entries: Iterable[tuple[str, str | None]],
    options: PredictOptions,
    min_samples: int,
    *,
    chunk_ms: float = 20.0,
    print_every: float = 0.5,
    top_k: int = 3,
) -> int:
    """Feed each ``(path, skip_reason)`` to ``streamer`` in ``chunk_ms`` chunks, printing the running top-k
    every ``print_every`` seconds of audio and a final line; returns 1 if any file failed, else 0.

    Failures and the closing count go to stderr, one line each; the other files still stream.
    """
    classified = failures = skipped = 0
    for path, skip in entries:
        if skip:
            skipped += 1
            print(f"{path}: SKIPPED: {skip}")
            continue
        streamer.reset()
        chunk = max(1, round(chunk_ms / 1000 * streamer.sampling_rate))
        every = max(1, round(print_every * streamer.sampling_rate))
        try:
            with AudioSource(path, streamer.sampling_rate) as source:
                # A first pass refuses what offline prediction refuses (NaN/Inf, silence only, too short)
                # before any running emotion is printed for the file.
                screen_file(source, options, min_samples)
                fed, next_print = 0, every
                for block in source.blocks(1.0):
                    for i in range(0, len(block), chunk):
                        probabilities = streamer.push(block[i : i + chunk])
                        fed += len(block[i : i + chunk])
                        if fed >= next_print and probabilities is not None:
                            next_print += every
                            shown = format_ranked(top_labels(probabilities, streamer.labels, top_k))
                            print(f"{path}  t={fed / streamer.sampling_rate:7.2f} s  {shown}", flush=True)
            probabilities = streamer.probabilities()
            if probabilities is None:
                raise AudioReadError(f"{path}: too short to produce one frame")
            print(f"{path}  final  {format_ranked(top_labels(probabilities, streamer.labels, top_k))}")
            classified += 1
        except (AudioReadError, OSError, RuntimeError, ValueError) as error:
            failures += 1
            print(f"{path}: FAILED: {error}", file=sys.stderr)
    print(f"{classified} streamed, {failures} failed, {skipped} skipped (not audio)", file=sys.stderr)
    return 1 if failures else 0
