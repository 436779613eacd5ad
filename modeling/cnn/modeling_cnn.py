"""Attention CNN for speech emotion recognition, after Alsabhan (Sensors 2023, 23(3):1386).

Raw 16 kHz audio -> per-frame ZCR + RMS + MFCC -> 1-D conv blocks -> (BiLSTM) -> additive attention pooling
-> dense -> logits.

Where it follows the paper: the frame features (zero-crossing rate, RMS energy, MFCCs), a stack of 1-D
convolution blocks with batch normalisation, ReLU, max pooling and dropout, an attention layer that weighs the
frames, and a small dense head; light enough for real-time use on a CPU.

Where it departs, and why:
* The features are computed inside the model with torch/torchaudio (the paper computes them in a separate
  preprocessing step), so a saved model takes raw audio and runs on any device. Frames are taken without
  centring and without reflect padding at the clip end, so only frames lying fully inside the real samples
  exist.
* Features are standardised with statistics of the training set (`feature_normalization="dataset"`: a
  BatchNorm without scale and shift over the real frames, saved with the model), as the paper scales them;
  the waveform keeps its recording level (`normalize_waveform=False`), so loudness, a cue of arousal, reaches
  the model. Per-utterance standardisation of unit-variance clips (`"utterance"`, the earlier default) erases
  an utterance's level and range, and with it much of what separates anger from sadness: on the development
  corpora this change (with the BatchNorm below) gained 7 to 24 points of UAR (README, "Leaderboard of the
  development corpora").
* The blocks use the paper's BatchNorm, its training statistics taken over real frames only
  (`MaskedBatchNorm1d`); `norm_type="layer"` (LayerNorm over the channels of each frame) is kept as an option.
* Two prosody channels (`pitch_features`: F0 and voicing, `PitchTracker`) and a linear classifier on the
  clip's functionals beside the network (`functionals_head`, `FunctionalsHead`: ComParE's families of
  functionals, as the challenge baseline classifies them), on by default: together they gained 3 to 6 points
  of UAR on every development corpus (README, "Leaderboard of the development corpora"). The head also
  summarises 16 grouped log-mel bands and eight spectral-shape descriptors (`functionals_mel_group`,
  `spectral_shape_functionals`: ComParE's auditory bands and spectral descriptors): over two seeds, +0.010
  / +0.022 / +0.005 UAR on the three development corpora. Optional: 15 descriptors of the power spectrum
  in Hz after ComParE's for the head (`spectrum_functionals`, `spectrum_descriptors`: level with the defaults
  over three seeds; benchmarks/results/dev-speaker-cv/ROUNDS.md, twenty-fifth round). A second linear head
  in the head's branch is fitted after training only, on the pitch, band and shape contours as computed
  (`raw_contours_head`), and a third, kept only where the validation clips show it helps, on the smoothed
  functionals of the same 15 descriptors of a 512-point spectrum (`spectrum_head`, the default since the
  forty-fifth round). Optional: statistics pooling beside the attention (`pooling="attention_stats"`) and
  SpecAugment masking in training (`time_masks`, `feature_masks`).
* The exact layer table of the paper is not published in machine-readable form; every size is a config field
  and the defaults (64-128-256-256 channels, kernel 5) are chosen to train on a laptop CPU and to run a 3 s
  clip within 10 ms on one thread (see benchmarks/bench_models.py).
* An optional BiLSTM (`use_lstm`) sits between the conv blocks and the attention.

Padding never changes a prediction: the frame mask comes from `attention_mask` (right padding), masked frames
are set to zero before every convolution (so they equal the convolution's own zero padding), pooling keeps a
frame only if both halves are real (floor), the LSTM runs on packed sequences, and the attention gives masked
frames exactly zero weight.

`forward` does not check its inputs: `SERFeatureExtractor` does (mono, not empty, not shorter than
`config.min_input_samples`, ones-then-zeros `attention_mask`), so that `forward` is plain tensor code that
`torch.export` traces. A clip shorter than `min_input_samples` has no frame left: its logits are NaN.

This file imports only numpy, torch, torchaudio, transformers and its own folder: it is copied next to saved
models and loaded with `trust_remote_code=True` where this project is not installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_cnn import NUM_SPECTRUM_DESCRIPTORS, CNNConfig

try:  # transformers >= 5: init helpers that leave weights loaded from a checkpoint untouched
    from transformers import initialization as init
except ImportError:  # transformers 4
    from torch.nn import init


@dataclass
class SERClassifierOutput(SequenceClassifierOutput):
    r"""`SequenceClassifierOutput`, and with a functionals head:

    branch_logits (`tuple(torch.FloatTensor)`): the network's logits and the head's; `logits` is their sum
        weighted by `config.branch_weights`. Each learner trains on its own cross-entropy: `loss` is the sum
        of theirs plus `penalty`.
    penalty (`torch.FloatTensor`): the head's L2 penalty, `functionals_l2 / 2 * ||W||^2`.
    """

    branch_logits: tuple[torch.FloatTensor, ...] | None = None
    penalty: torch.FloatTensor | None = None


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_length) bool mask, True on real positions."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def clip_lengths(input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(batch,) number of real samples per clip: the ones of `attention_mask` (right padding), or all."""
    if attention_mask is None:
        return torch.full(input_values.shape[:1], input_values.shape[-1], device=input_values.device)
    return attention_mask.sum(-1)


class PitchTracker(nn.Module):
    """Waveform (batch, samples) -> (batch, frames, 2): F0 in semitones above `f0_min` and voicing strength.

    Boersma (1993): r(lag) = autocorrelation of the Hann-windowed, mean-free pitch window, divided by r(0) and
    by the window's own normalised autocorrelation; voicing = r at the chosen lag among those of
    [f0_max, f0_min], after an octave cost of 0.05 per octave below f0_max (Praat's idea, larger because the
    lags are not interpolated: a periodic frame correlates as well at twice its period); F0 = sampling_rate /
    lag. The autocorrelation is the inverse FFT of the power spectrum (Wiener-Khinchin), in half the time of
    the cosine-table product used before (the same values to float rounding).

    Frame t's pitch window is the `pitch_win_length` samples that end where frame t (`win_length` samples
    from t * hop) ends, with zeros before the clip's start: it never reads past the frame, so padding cannot
    reach it and a stream has everything it needs once the frame is complete.
    """

    def __init__(
        self,
        sampling_rate: int,
        win_length: int,
        hop_length: int,
        pitch_win_length: int,
        f0_min: float,
        f0_max: float,
    ):
        super().__init__()
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self.pitch_win_length = pitch_win_length
        self.lookback = pitch_win_length - win_length
        self.f0_min = f0_min
        self.min_lag = int(sampling_rate // f0_max)
        self.max_lag = int(sampling_rate // f0_min)
        # Long enough that lags up to max_lag do not wrap around the circular autocorrelation.
        self.n_fft = 1 << (pitch_win_length + self.max_lag - 1).bit_length()
        for name, value in self.constants().items():
            self.register_buffer(name, value)

    def constants(self) -> dict[str, torch.Tensor]:
        """The buffers, functions of the configuration alone: the models' `_init_weights` writes those a
        checkpoint lacks (one saved by an earlier version of the tracker)."""
        with torch.device("cpu"):  # real values even when transformers builds the model on the meta device
            window = torch.hann_window(self.pitch_win_length, dtype=torch.float64)
            window_power = torch.fft.rfft(window, n=self.n_fft).abs().square()
            window_autocorrelation = torch.fft.irfft(window_power, n=self.n_fft)[: self.max_lag + 1]
            octaves_below_f0_max = torch.log2(torch.arange(self.min_lag, self.max_lag + 1) / self.min_lag)
        return {
            "window": window.float(),
            # 1 / the window's own normalised autocorrelation, at the candidate lags.
            "window_correction": (window_autocorrelation[0] / window_autocorrelation[self.min_lag :]).float(),
            "octave_cost": 0.05 * octaves_below_f0_max.float(),
        }

    def forward(
        self, waveform: torch.Tensor, num_frames: int, history: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`history`: the `pitch_win_length - win_length` samples before `waveform` (a stream's past);
        zeros when not given."""
        if history is None:
            samples = nn.functional.pad(waveform, (self.lookback, 0))
        else:
            samples = torch.cat([history, waveform], dim=-1)
        frames = samples.unfold(-1, self.pitch_win_length, self.hop_length)[:, :num_frames]
        # In place where a new temporary is not needed: each is about 1 MB per 3 s clip, and fewer of them
        # took a sixth off this tracker's median time.
        frames = (frames - frames.mean(-1, keepdim=True)).mul_(self.window)
        spectrum = torch.view_as_real(torch.fft.rfft(frames, n=self.n_fft))
        real, imaginary = spectrum[..., 0], spectrum[..., 1]
        power = (real * real).addcmul_(imaginary, imaginary)  # not .pow(2).sum(-1) over pairs: 4x the time
        autocorrelation = torch.fft.irfft(power, n=self.n_fft)[..., : self.max_lag + 1]
        # clamp, not + 1e-8: the ONNX export lost that epsilon, and silent (padded) frames came out NaN.
        energy = autocorrelation[..., :1].clamp(min=1e-8)
        # r(lag) / w(lag) - cost * r(0) is r(0) times the normalised candidate minus its cost: the same argmax
        # (r(0) > 0), without dividing every lag by r(0).
        candidates = autocorrelation[..., self.min_lag :] * self.window_correction
        lag = (candidates - self.octave_cost * energy).argmax(-1, keepdim=True)
        voicing = (candidates.gather(-1, lag) / energy).squeeze(-1).clamp(-1.0, 1.0)
        f0 = self.sampling_rate / (lag.squeeze(-1) + self.min_lag).to(waveform.dtype)
        return torch.stack([12.0 * torch.log2(f0 / self.f0_min), voicing], dim=-1)


class CNNFrameFeatures(nn.Module):
    """Waveform (batch, samples) -> frame features (batch, channels, frames): ZCR, RMS, MFCC 0..n_mfcc-1 and,
    with `pitch_features`, F0 in semitones above `f0_min` and the voicing strength.

    For frame t = samples [t * hop, t * hop + win): ZCR = share of adjacent sample pairs that change sign,
    RMS = sqrt(mean(x^2)), MFCC = DCT-II(log(mel_filterbank @ |rfft(hann * x)|^2 + 1e-6)) (torchaudio's
    filterbank and DCT matrix; the same numbers as torchaudio.transforms.MFCC with log_mels=True and
    center=False, without its second framing pass).

    Pitch: `PitchTracker`.
    """

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.win_length = config.win_length
        self.hop_length = config.hop_length
        self.normalization = config.feature_normalization
        # Constants: built on the CPU even when transformers constructs the model on the meta device
        # (from_pretrained); they are saved with the weights.
        with torch.device("cpu"):
            self.register_buffer("window", torch.hann_window(config.win_length))
            mel_filters = torchaudio.functional.melscale_fbanks(
                config.win_length // 2 + 1, config.f_min, config.f_max, config.n_mels, config.sampling_rate
            )
            self.register_buffer("mel_filters", mel_filters)  # (freq bins, n_mels)
            self.register_buffer(
                "dct", torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, "ortho")
            )
        self.pitch = (
            PitchTracker(
                config.sampling_rate,
                config.win_length,
                config.hop_length,
                config.pitch_win_length,
                config.f0_min,
                config.f0_max,
            )
            if config.pitch_features
            else None
        )
        self.dataset_norm = (
            MaskedBatchNorm1d(config.num_features, affine=False, momentum=None)
            if self.normalization == "dataset"
            else None
        )

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames that lie fully inside `num_samples` samples: per clip (a tensor, 0 when there is none), or
        for the width of the batch (an int, symbolic when traced; a batch narrower than one window fails in
        `unfold`)."""
        if isinstance(num_samples, torch.Tensor):
            frames = torch.div(num_samples - self.win_length, self.hop_length, rounding_mode="floor")
            return frames.clamp(min=-1) + 1
        return (num_samples - self.win_length) // self.hop_length + 1

    def forward(self, waveform: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.extract(waveform), frame_mask)

    def extract(self, waveform: torch.Tensor) -> torch.Tensor:
        """The frame features as computed, before `feature_normalization`."""
        return self.extract_with_spectra(waveform)[0]

    def extract_with_spectra(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(`extract`'s frame features, the log-mel frames (batch, frames, n_mels) their MFCCs come from, the
        power spectra (batch, frames, win_length // 2 + 1) of the frames)."""
        frames = waveform.unfold(-1, self.win_length, self.hop_length)  # (batch, frames, win_length)
        rms = frames.pow(2).mean(-1).add(1e-10).sqrt()
        negative = torch.signbit(frames)
        zcr = (negative[..., 1:] != negative[..., :-1]).to(waveform.dtype).mean(-1)
        power = self.power_spectrum(waveform)
        log_mel = torch.log(power @ self.mel_filters + 1e-6)
        mfcc = log_mel @ self.dct  # (batch, frames, n_mfcc)
        features = torch.cat([zcr[..., None], rms[..., None], mfcc], dim=-1).transpose(1, 2)
        if self.pitch is not None:
            features = torch.cat([features, self.pitch(waveform, frames.shape[1]).transpose(1, 2)], dim=1)
        return features, log_mel, power

    def power_spectrum(self, waveform: torch.Tensor, n_fft: int | None = None) -> torch.Tensor:
        """Waveform (batch, samples) -> |rfft|^2 of the Hann-windowed frames (batch, frames, n_fft // 2 + 1),
        each frame zero-padded to `n_fft` points (`win_length` without it)."""
        frames = waveform.unfold(-1, self.win_length, self.hop_length)
        spectrum = torch.fft.rfft(frames * self.window, n=n_fft)
        # |X|^2 as a complex product (no square root, unlike abs()): half the time of squaring the real pairs
        return torch.view_as_real(spectrum * spectrum.conj())[..., 0]

    def normalize(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        if self.normalization == "none":
            return features.contiguous()
        if self.normalization == "dataset":
            return self.dataset_norm(features, frame_mask)
        mask = frame_mask[:, None, :].to(features.dtype)
        count = mask.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (features * mask).sum(-1, keepdim=True) / count
        features = features - mean
        if self.normalization == "utterance":
            variance = (features.pow(2) * mask).sum(-1, keepdim=True) / count
            features = features * torch.rsqrt(variance + 1e-5)
        return features


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics come from real frames only; eval uses the running statistics."""

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(hidden)
        mask = frame_mask[:, None, :].to(hidden.dtype)
        count = mask.sum().clamp(min=2.0)
        mean = (hidden * mask).sum((0, 2)) / count
        variance = ((hidden - mean[None, :, None]).pow(2) * mask).sum((0, 2)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                # momentum=None: the cumulative mean over all batches seen (a scaler fitted to the data).
                # A tensor weight: no host sync per step on a GPU.
                seen = self.num_batches_tracked.float()
                factor = self.momentum if self.momentum is not None else 1.0 / seen
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(variance * count / (count - 1), factor)
        normed = (hidden - mean[None, :, None]) * torch.rsqrt(variance[None, :, None] + self.eps)
        if not self.affine:
            return normed
        return normed * self.weight[None, :, None] + self.bias[None, :, None]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each frame of a (batch, channels, frames) tensor, without transposes."""

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        mean = hidden.mean(1, keepdim=True)
        centred = hidden - mean
        normed = centred * torch.rsqrt(centred.pow(2).mean(1, keepdim=True) + self.eps)
        return normed * self.weight[None, :, None] + self.bias[None, :, None]


class PairMaxPool(nn.Module):
    """nn.MaxPool1d(2) (an odd last frame is dropped) as the maximum of the even and the odd frames: the same
    values, but torch.export traces it with a symbolic number of frames, where max_pool1d's shape function
    (and unfold's contiguity check) fix the example's length or its parity."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        end = 2 * (hidden.shape[-1] // 2)
        return torch.maximum(hidden[..., 0:end:2], hidden[..., 1:end:2])


class CNNConvBlock(nn.Module):
    """Conv1d -> norm -> ReLU -> MaxPool(2) -> Dropout, with masked frames zeroed before the convolution."""

    def __init__(self, in_channels: int, out_channels: int, config: CNNConfig):
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels, out_channels, config.conv_kernel_size, padding=config.conv_kernel_size // 2
        )
        if config.norm_type == "batch":
            self.norm = MaskedBatchNorm1d(out_channels)
        else:
            self.norm = ChannelLayerNorm(out_channels)
        self.activation = nn.ReLU()
        self.pool = PairMaxPool()
        self.dropout = nn.Dropout(config.conv_dropout)

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.conv(hidden * frame_mask[:, None, :].to(hidden.dtype))
        hidden = self.activation(self.norm(hidden, frame_mask))
        return self.dropout(self.pool(hidden))


class AdditiveAttentionPooling(nn.Module):
    """Weighted mean over frames, weights softmax(vᵀ tanh(W h + b)) over the real frames only."""

    def __init__(self, hidden_size: int, attention_size: int):
        super().__init__()
        self.projection = nn.Linear(hidden_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden_size) -> (...): each frame's score vᵀ tanh(W h + b), before the softmax."""
        return self.score(torch.tanh(self.projection(hidden))).squeeze(-1)

    def forward(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.scores(hidden).masked_fill(~frame_mask, float("-inf")).softmax(dim=-1)
        # Masked frames get weight 0, but 0 * inf is nan: whatever padding holds must not reach the sum.
        hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)
        return (weights[:, None, :] @ hidden).squeeze(1), weights


def masked_mean_std(hidden: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the real frames of (batch, frames, channels)."""
    weight = frame_mask[..., None].to(hidden.dtype)
    count = weight.sum(1).clamp(min=1.0)
    hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)
    mean = hidden.sum(1) / count
    variance = ((hidden - mean[:, None, :]).pow(2) * weight).sum(1) / count
    return mean, (variance + 1e-5).sqrt()


def utterance_functionals(features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Frame features (batch, frames, channels) -> (batch, 4 * channels): per channel, over the real frames,
    the mean and standard deviation of x_t, then the mean absolute value and the standard deviation of
    x_t - x_{t-1} (how fast the channel moves), as openSMILE's functionals summarise its low-level
    descriptors."""
    mean, std = masked_mean_std(features, frame_mask)
    delta_mask = frame_mask[:, 1:] & frame_mask[:, :-1]
    delta = features[:, 1:] - features[:, :-1]
    weight = delta_mask[..., None].to(delta.dtype)
    delta_abs = (delta.abs() * weight).sum(1) / weight.sum(1).clamp(min=1.0)
    _, delta_std = masked_mean_std(delta, delta_mask)
    return torch.cat([mean, std, delta_abs, delta_std], dim=-1)


def in_graph_capture() -> bool:
    """Whether an exporter, the compiler or the tracer is recording the model: the faster eager paths that
    their graphs cannot hold (NumPy, searchsorted for ONNX) give way to plain operations there."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def sort_values(contours: torch.Tensor) -> torch.Tensor:
    """`contours.sort(dim=-1).values`. On the CPU and without autograd, NumPy's sort gives the same values in
    a tenth of the time (a 3 s clip's 174 rows of 298 frames: 0.1 ms against torch's 1.3 ms on one thread,
    `benchmarks/results/speed-history.md`). The exporters, the compiler and autograd get torch's sort: NumPy
    is outside their graphs and carries no gradient."""
    numpy_sortable = contours.dtype in (torch.float32, torch.float64) and contours.device.type == "cpu"
    if not numpy_sortable or contours.requires_grad or in_graph_capture():
        return contours.sort(dim=-1).values
    return torch.from_numpy(np.sort(contours.numpy(), axis=-1))


def contour_functionals(
    contours: torch.Tensor, mask: torch.Tensor, level_ramp: float = 0.02, step_ramp: float = 0.01
) -> torch.Tensor:
    """The 19 functionals of `extended_functionals` of finite contours (batch, rows, frames) over their real
    frames (`mask`, the same shape, True where real) -> (batch, 19, rows). The up-level times count a frame
    by a ramp `level_ramp` of the clip's range wide, centred on the level; rise time, peaks and the mean
    steps count a step as rising (falling) in proportion up to `step_ramp` of the range, fully beyond."""
    # Padding is zeroed by multiplying with the mask and frames are counted in integers: both are exact for
    # finite contours and take less than half the time of masked_fill and of float sums over booleans.
    weight = mask.to(contours.dtype)
    real = mask.sum(-1).to(contours.dtype)  # (batch, rows)
    count = real.clamp(min=1.0)
    contours = contours * weight
    mean = contours.sum(-1) / count
    centred = (contours - mean[..., None]) * weight
    square = centred * centred
    variance = square.sum(-1) / count + 1e-5
    skewness = (square * centred).sum(-1) / count / (variance * variance.sqrt())
    kurtosis = (square * square).sum(-1) / count / (variance * variance) - 3.0
    # Order statistics: padding sorts last (+inf), so statistic k of the real frames sits at index k;
    # percentiles interpolate between neighbours as numpy.percentile does. Quantiles 0 and 1: min and max.
    ordered = sort_values(contours.masked_fill(~mask, float("inf")))
    quantiles = torch.tensor(
        [0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0], dtype=contours.dtype, device=contours.device
    )
    position = quantiles * (count[..., None] - 1)  # (batch, rows, quantiles)
    below = position.floor()
    above = torch.minimum(below + 1, count[..., None] - 1)
    # A row without real frames (the difference of a one-frame clip) reads padding: +inf, made 0.
    empty = (real == 0)[..., None]
    low = ordered.gather(-1, below.long()).masked_fill(empty, 0.0)
    high = ordered.gather(-1, above.long()).masked_fill(empty, 0.0)
    lowest, *percentiles, highest = (low + (position - below) * (high - low)).unbind(-1)
    # Least-squares line over time scaled to [-1, 1] across the real frames.
    index = torch.arange(contours.shape[-1], device=contours.device, dtype=contours.dtype)
    time = (2 * index / (count[..., None] - 1).clamp(min=1.0) - 1) * weight
    slope = (centred * time).sum(-1) / (time * time).sum(-1).clamp(min=1e-5)
    residual = centred - slope[..., None] * time
    spread = ((residual * residual).sum(-1) / count + 1e-5).sqrt()
    # The counting functionals count softly: a frame is above a level, and a step rising or falling, by a
    # ramp over a small share of the clip's range, not by a hard threshold. A hard count jumps when a value
    # moves across its threshold by a rounding error (float32 in PyTorch and in onnxruntime differ by about
    # 1e-5), and standardisation turns that jump into a different prediction; a ramp moves it by the error
    # over the ramp's width. Flat stretches (silence) still count as neither rising nor falling.
    span = (highest - lowest).clamp(min=1e-5)[..., None]
    # Up-level times: the share of frames above 25 / 50 / 75 / 90 % of the clip's range.
    level = (contours - lowest[..., None]) / span
    shares = torch.tensor([0.25, 0.5, 0.75, 0.9], dtype=contours.dtype, device=contours.device)
    above_share = ((level[..., None, :] - shares[:, None]) / level_ramp + 0.5).clamp(0.0, 1.0)
    above_share = above_share * weight[..., None, :]  # (batch, rows, 4, frames)
    uplevel = (above_share.sum(-1) / count[..., None]).unbind(-1)
    # Rise time, peaks per frame and the mean rising / falling step, from the steps between real frames.
    step_mask = mask[..., 1:] & mask[..., :-1]
    steps = (contours[..., 1:] - contours[..., :-1]) * step_mask.to(contours.dtype)
    rising = (steps / (step_ramp * span)).clamp(0.0, 1.0)
    falling = (-steps / (step_ramp * span)).clamp(0.0, 1.0)
    rises = rising.sum(-1)
    rise_time = rises / step_mask.sum(-1).to(count.dtype).clamp(min=1.0)
    peaks = rising[..., :-1] * (1.0 - rising[..., 1:]) * step_mask[..., 1:].to(contours.dtype)
    peak_rate = peaks.sum(-1) / count
    rising_step = steps.clamp(min=0).sum(-1) / rises.clamp(min=1.0)
    falling_step = steps.clamp(max=0).sum(-1) / falling.sum(-1).clamp(min=1.0)
    functionals = [mean, variance.sqrt(), skewness, kurtosis, *percentiles, slope, spread, *uplevel]
    functionals += [rise_time, peak_rate, rising_step, falling_step]
    return torch.stack(functionals, dim=1)


def smoothed_contours(contours: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Contours (batch, rows, frames) and their real frames (batch, frames) -> (the contours smoothed by a
    3-frame moving average, their delta by regression over 2 frames either side), ComParE's processing of its
    low-level descriptors before the functionals: the average takes out the frame-to-frame noise of a 10 ms
    analysis, and the regression delta is the slope of the smoothed contour, where x_t - x_{t-1} of the raw
    one carries that noise too. Beyond the ends of the real frames the end frame repeats, so padding cannot
    reach a real frame."""
    last = (frame_mask.sum(-1, keepdim=True) - 1).clamp(min=0)  # (batch, 1)
    index = torch.arange(contours.shape[-1], device=contours.device)

    def shifted(values: torch.Tensor, step: int) -> torch.Tensor:
        """values[..., t + step], the index held within the real frames."""
        at = torch.minimum((index + step).clamp(min=0), last)  # (batch, frames)
        return values.gather(-1, at[:, None, :].expand_as(values))

    smooth = (shifted(contours, -1) + contours + shifted(contours, 1)) / 3
    delta = (shifted(smooth, 1) - shifted(smooth, -1) + 2 * (shifted(smooth, 2) - shifted(smooth, -2))) / 10
    return smooth, delta


def extended_functionals(
    features: torch.Tensor, frame_mask: torch.Tensor, smoothing: bool = False
) -> torch.Tensor:
    """Frame features (batch, frames, channels) -> (batch, 38 * channels): per channel, 19 functionals of x_t
    and the same of x_t - x_{t-1}, over the real frames, after the families of ComParE's: moments (mean,
    standard deviation, skewness, excess kurtosis), percentiles 1 / 25 / 50 / 75 / 99, the slope of a line
    over time and the spread around it, the share of frames above 25 / 50 / 75 / 90 % of the range, the
    share of rising steps, local maxima per frame, and the mean rising and falling step (the counts soft, as
    `contour_functionals` says). Timing and peak functionals carry the speaking rate and the shape of the
    contours, which moments miss. With `smoothing`, of the smoothed x and its regression delta instead, as
    ComParE (`smoothed_contours`). Order: the 19 functionals of x (each over all channels), then those of the
    difference."""
    return joint_extended_functionals([(features, smoothing)], frame_mask)[0]


def joint_extended_functionals(
    parts: list[tuple[torch.Tensor, bool]], frame_mask: torch.Tensor
) -> list[torch.Tensor]:
    """`extended_functionals(features, frame_mask, smoothing)` of each (features, smoothing) of `parts`, all
    from one call of `contour_functionals`. On one clip a share of its time is the fixed cost of its ~80 small
    operations, which heads that summarise different frame features pay once this way; each row's
    functionals are computed as they would be alone."""
    rows, masks, widths = [], [], []
    for features, smoothing in parts:
        channels = features.shape[-1]
        contours = features.transpose(1, 2)  # frames last: reductions and the sort run along memory
        if smoothing:
            contours, delta = smoothed_contours(contours, frame_mask)
            delta_mask = frame_mask  # a regression delta at every real frame
        else:
            # The difference gets one padded frame at the end, so that it stacks with x.
            delta = nn.functional.pad(contours[..., 1:] - contours[..., :-1], (0, 1))
            delta_mask = nn.functional.pad(frame_mask[:, 1:] & frame_mask[:, :-1], (0, 1))
        # x and its difference as rows of one tensor: every step of contour_functionals runs once for both.
        rows += [contours, delta]
        masks += [
            frame_mask[:, None, :].expand(-1, channels, -1),
            delta_mask[:, None, :].expand(-1, channels, -1),
        ]
        widths.append(channels)
    functionals = contour_functionals(torch.cat(rows, dim=1), torch.cat(masks, dim=1))  # (batch, 19, rows)
    batch = functionals.shape[0]
    return [
        part.reshape(batch, 19, 2, channels).transpose(1, 2).reshape(batch, 38 * channels)
        for part, channels in zip(functionals.split([2 * c for c in widths], dim=-1), widths, strict=True)
    ]


# Copied from modeling.s4.modeling_s4.spectral_shape with F.pad->nn.functional.pad
def spectral_shape(log_mel: torch.Tensor) -> torch.Tensor:
    """Log-mel frames (batch, frames, bands) -> (batch, frames, 8) spectral-shape descriptors: log energy;
    centroid, spread and entropy of the band energies as a distribution over band index; flatness (log
    geometric over arithmetic mean); roll-off (the first band where the cumulative energy reaches 85%);
    flux (distance to the previous frame, 0 for the first); slope of the least-squares line through the
    log-mel bands."""
    energy = log_mel.logsumexp(-1)
    log_share = log_mel.log_softmax(-1)
    share = log_share.exp()
    bands = torch.arange(log_mel.shape[-1], device=log_mel.device, dtype=log_mel.dtype)
    centroid = (share * bands).sum(-1, keepdim=True)
    spread = (share * (bands - centroid).square()).sum(-1).clamp_min(0.0).sqrt()
    entropy = -(share * log_share).sum(-1)
    flatness = log_mel.mean(-1) - (energy - math.log(log_mel.shape[-1]))
    rolloff = (share.cumsum(-1) < 0.85).sum(-1).to(log_mel.dtype)
    step = (log_mel[:, 1:] - log_mel[:, :-1]).square().sum(-1).sqrt()
    flux = nn.functional.pad(step, (1, 0))
    centred = bands - bands.mean()
    slope = (log_mel * centred).sum(-1) / centred.square().sum()
    descriptors = [energy, centroid.squeeze(-1), spread, entropy, flatness, rolloff, flux, slope]
    return torch.stack(descriptors, dim=-1)


def spectrum_descriptors(power: torch.Tensor, bin_hz: float) -> torch.Tensor:
    """Power spectra (batch, frames, bins), bin k at k * `bin_hz` Hz -> (batch, frames, 15) descriptors after
    ComParE's spectral low-level descriptors (openSMILE's cSpectral), on the linear spectrum: the
    shares of the frame's power in 250-650 Hz and in 1-4 kHz; the frequencies under which 25, 50, 75 and
    90 % of it lie (roll-off, interpolated within a bin); flux, the root mean square step of the magnitudes
    from the previous frame (0 for the first); with the power as a distribution p over frequency f:
    centroid sum(p f), entropy -sum(p ln p), spread (the standard deviation about the centroid), skewness
    and kurtosis; the slope of the least-squares line through the power over f; sharpness, the centroid in
    Bark weighted by Zwicker's g(z) (times 0.11); and harmonicity (`spectral_harmonicity`)."""
    eps = 1e-10
    freqs = torch.arange(power.shape[-1], device=power.device, dtype=power.dtype) * bin_hz
    bark = 13 * torch.atan(0.00076 * freqs) + 3.5 * torch.atan((freqs / 7500).square())
    zwicker = torch.where(bark < 15.8, torch.ones_like(bark), 0.066 * torch.exp(0.171 * bark))
    low_band = ((freqs >= 250) & (freqs < 650)).to(power.dtype)
    high_band = ((freqs >= 1000) & (freqs < 4000)).to(power.dtype)
    share = power / power.sum(-1, keepdim=True).clamp_min(eps)
    # The descriptors that are sums of the share times a function of f, in one product; with the functions
    # as rows (`linear`), a quarter of the time of the same product with them as columns.
    weights = torch.stack([low_band, high_band, freqs, 0.11 * bark * zwicker])
    low, high, centroid, sharpness = nn.functional.linear(share, weights).unbind(-1)
    # Bin k spans [k, k + 1) * bin_hz, its power spread evenly: the roll-off is the bins whose cumulative
    # share stays under p, plus the part of the next bin that reaches p. Whole bins alone would jump by a bin
    # when rounding moves a sum across p (ONNX Runtime's sums against PyTorch's).
    cumulative = share.cumsum(-1)
    levels = torch.tensor([0.25, 0.5, 0.75, 0.9], device=power.device, dtype=power.dtype)
    if in_graph_capture():
        # ONNX has no searchsorted: each bin's part of reaching p, summed (the same values, 5x the time).
        below = (cumulative - share)[..., None, :]
        parts = ((levels[:, None] - below) / share[..., None, :].clamp_min(eps)).clamp_(0, 1)
        rolloffs = (parts.sum(-1) * bin_hz).unbind(-1)
    else:
        whole = torch.searchsorted(cumulative, levels.expand(*share.shape[:-1], -1).contiguous())
        whole = whole.clamp_(max=power.shape[-1] - 1)
        crossing = share.gather(-1, whole)  # (batch, frames, 4)
        part = ((levels - cumulative.gather(-1, whole) + crossing) / crossing.clamp_min(eps)).clamp_(0, 1)
        rolloffs = ((whole.to(power.dtype) + part) * bin_hz).unbind(-1)
    magnitude = power.clamp_min(0).sqrt()
    flux = nn.functional.pad((magnitude[:, 1:] - magnitude[:, :-1]).square().mean(-1).sqrt(), (1, 0))
    entropy = -(share * share.clamp_min(eps).log()).sum(-1)
    deviation = freqs - centroid[..., None]
    squared = deviation.square()
    weighted = share * squared
    variance = weighted.sum(-1).clamp_min(eps)
    skewness = (weighted * deviation).sum(-1) / variance.pow(1.5)
    kurtosis = (weighted * squared).sum(-1) / variance.square()
    centred = freqs - freqs.mean()
    slope = power @ (centred / centred.square().sum())
    descriptors = [low, high, *rolloffs, flux, centroid, entropy, variance.sqrt(), skewness, kurtosis, slope]
    descriptors += [sharpness, spectral_harmonicity(power)]
    return torch.stack(descriptors, dim=-1)


def spectral_harmonicity(power: torch.Tensor) -> torch.Tensor:
    """Power spectra (batch, frames, bins) -> (batch, frames): half the summed steps between consecutive local
    extrema (a bin above, or below, its two neighbours on each side; DC left out), over the frame's power.
    Resolved harmonics make deep valleys between high peaks; noise makes shallow ones. The extrema are
    gathered in frequency order by their rank (a running count, then a scatter), not sorted (2.3 against
    0.5 ms for a 3 s clip on one thread), nor found by a running maximum, which ONNX export lacks."""
    spectrum = power[..., 1:]
    centre = spectrum[..., 2:-2]
    pair_max = torch.maximum(spectrum[..., :-1], spectrum[..., 1:])  # of bins k and k + 1
    pair_min = torch.minimum(spectrum[..., :-1], spectrum[..., 1:])
    peak = centre > torch.maximum(pair_max[..., :-3], pair_max[..., 3:])
    valley = centre < torch.minimum(pair_min[..., :-3], pair_min[..., 3:])
    extremum = peak | valley
    bins = centre.shape[-1]
    # Extremum number r (from 1) lands in slot r; the bins that are none add 0 to the slot of the extremum
    # before them (slot 0 before the first).
    rank = extremum.cumsum(-1)
    values = centre.new_zeros(*centre.shape[:-1], bins + 1)
    values = values.scatter_add(-1, rank, centre * extremum.to(centre.dtype))
    # Slots after the last extremum's (rank[..., -1]) stay 0: of the steps from slot 1 on, the only one not
    # between two extrema is the last extremum's step down to 0, its own value.
    last = values.gather(-1, rank[..., -1:]).squeeze(-1)
    steps = (values[..., 2:] - values[..., 1:-1]).abs().sum(-1) - last
    return steps / 2 / spectrum.sum(-1).clamp_min(1e-10)


class FunctionalsHead(nn.Module):
    """Frame features (batch, frames, channels) -> logits of a linear classifier on their functionals
    (`utterance_functionals`, or `extended_functionals` with or without `smoothing`, as `functionals` and
    `smoothing` say), standardised with training-set statistics (a BatchNorm without scale and shift), as the
    challenge baseline scales its functionals before the SVM. Weights start at zero."""

    per_channel = {"basic": 4, "extended": 38}

    def __init__(
        self, num_features: int, num_labels: int, functionals: str = "basic", smoothing: bool = False
    ):
        super().__init__()
        self.functionals = functionals
        self.smoothing = smoothing
        width = self.per_channel[functionals] * num_features
        self.norm = MaskedBatchNorm1d(width, affine=False, momentum=None)
        self.weight = nn.Parameter(torch.zeros(num_labels, width))
        self.bias = nn.Parameter(torch.zeros(num_labels))

    def forward(
        self, features: torch.Tensor, frame_mask: torch.Tensor, functionals: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`functionals`: those of `features`, where computed already (`functionals_heads_logits`)."""
        if functionals is None and self.functionals == "extended":
            functionals = extended_functionals(features, frame_mask, self.smoothing)
        elif functionals is None:
            functionals = utterance_functionals(features, frame_mask)
        functionals = functionals[..., None]  # one "frame" per clip
        clip_mask = torch.ones_like(frame_mask[:, :1])
        return nn.functional.linear(self.norm(functionals, clip_mask).squeeze(-1), self.weight, self.bias)


def functionals_heads_logits(
    heads: list[tuple[FunctionalsHead, torch.Tensor]], frame_mask: torch.Tensor
) -> list[torch.Tensor]:
    """`head(features, frame_mask)` of each (head, features) of `heads`, the extended functionals of all of
    them from one `joint_extended_functionals` call."""
    extended = [(features, head.smoothing) for head, features in heads if head.functionals == "extended"]
    joint = iter(joint_extended_functionals(extended, frame_mask) if extended else [])
    return [
        head(features, frame_mask, functionals=next(joint) if head.functionals == "extended" else None)
        for head, features in heads
    ]


def energy_peak_functionals(
    energy: torch.Tensor, frame_mask: torch.Tensor, frame_rate: float, half_window: int = 5
) -> torch.Tensor:
    """An energy contour (batch, frames), its real frames `frame_mask`, frames per second -> (batch, 12)
    functionals of its peaks, after ComParE's peak functionals of the RMS energy: the rhythm of the syllables.

    The contour is smoothed over three frames (the clip's end frames repeated); a peak (valley) is a real
    frame that is the largest (smallest) within `half_window` frames either side and lies at least a tenth of
    the clip's range above (below) that window's smallest (largest) value; of a flat top or bottom, only
    its first frame. The 12: peaks per second; mean and
    standard deviation of the time between consecutive peaks (s); range and mean of the peak values; the
    peaks' mean above the contour's mean, absolute and as a share of the range; the valleys' mean above the
    minimum as a share of the range; mean and standard deviation of the rising and of the falling slopes
    (per second) between consecutive extrema. Missing values (no peaks, no slopes) are 0, the contour's mean
    for the peak and valley means, and the clip's duration for the time between peaks."""
    dtype, frames = energy.dtype, energy.shape[-1]
    weight = frame_mask.to(dtype)
    count = weight.sum(-1).clamp(min=1.0)
    # Three-frame moving average; at the ends of the real frames the missing neighbour is the frame itself.
    previous = torch.cat([energy[:, :1], energy[:, :-1]], dim=-1)
    following = torch.cat([energy[:, 1:], energy[:, -1:]], dim=-1)
    following_real = torch.cat([frame_mask[:, 1:], torch.zeros_like(frame_mask[:, :1])], dim=-1)
    contour = (previous + energy + torch.where(following_real, following, energy)) / 3
    contour = contour * weight
    mean = contour.sum(-1) / count
    window = 2 * half_window + 1

    # Window maxima and minima over real frames only: padding enters the windows as -inf. Windows by
    # `unfold`, not `max_pool1d`, whose export specialises on the number of frames of short examples.
    def window_maxima(values: torch.Tensor) -> torch.Tensor:
        real = values.masked_fill(~frame_mask, -math.inf)
        padded = nn.functional.pad(real, (half_window, half_window), value=-math.inf)
        return padded.unfold(-1, window, 1).amax(-1)

    window_max = window_maxima(contour)
    window_min = -window_maxima(-contour)
    highest = window_max.amax(-1).clamp(min=-1e30)
    lowest = window_min.amin(-1).clamp(max=1e30)
    span = (highest - lowest).clamp(min=1e-5)
    threshold = 0.1 * span[:, None]
    # A flat top or bottom (silence is one: its RMS is constant) is one extremum, at its first frame.
    starts = torch.cat([torch.ones_like(frame_mask[:, :1]), contour[:, 1:] != contour[:, :-1]], dim=-1)
    candidates = frame_mask & starts
    peaks = candidates & (contour >= window_max) & (contour - window_min >= threshold)
    valleys = candidates & (contour <= window_min) & (window_max - contour >= threshold)

    def mean_and_std(values: torch.Tensor, mask: torch.Tensor, empty: torch.Tensor) -> list[torch.Tensor]:
        number = mask.sum(-1).to(dtype)
        some = number > 0
        values = values * mask.to(dtype)
        average = values.sum(-1) / number.clamp(min=1.0)
        variance = ((values - average[:, None]).square() * mask.to(dtype)).sum(-1) / number.clamp(min=1.0)
        return [torch.where(some, average, empty), variance.clamp(min=0.0).sqrt()]

    def in_order(marks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The frame indices of the marked frames, ascending, padded with `frames`; and which are real."""
        index = torch.arange(frames, device=energy.device).expand_as(marks)
        ordered = torch.where(marks, index, torch.full_like(index, frames)).sort(dim=-1).values
        return ordered, ordered < frames

    duration = count / frame_rate
    number_of_peaks = peaks.sum(-1).to(dtype)
    positions, _ = in_order(peaks)
    gaps = (positions[:, 1:] - positions[:, :-1]).to(dtype) / frame_rate
    gap_mean, gap_std = mean_and_std(gaps, positions[:, 1:] < frames, duration)
    peak_mean, _ = mean_and_std(contour, peaks, mean)
    valley_mean, _ = mean_and_std(contour, valleys, mean)
    highest_peak = contour.masked_fill(~peaks, -math.inf).amax(-1)
    lowest_peak = contour.masked_fill(~peaks, math.inf).amin(-1)
    peak_range = torch.where(number_of_peaks > 0, highest_peak - lowest_peak, torch.zeros_like(mean))
    extrema, real = in_order(peaks | valleys)
    values = contour.gather(-1, extrema.clamp(max=frames - 1))
    steps = real[:, 1:]
    slopes = (values[:, 1:] - values[:, :-1]) / (extrema[:, 1:] - extrema[:, :-1]).clamp(min=1).to(dtype)
    slopes = slopes * frame_rate
    zero = torch.zeros_like(mean)
    rising = mean_and_std(slopes, steps & (slopes > 0), zero)
    falling = mean_and_std(slopes, steps & (slopes < 0), zero)
    functionals = [number_of_peaks / duration, gap_mean, gap_std, peak_range, peak_mean, peak_mean - mean]
    functionals += [(peak_mean - mean) / span, (valley_mean - lowest) / span, *rising, *falling]
    return torch.stack(functionals, dim=-1)


class EnergyPeaksHead(nn.Module):
    """An energy contour (batch, frames) -> logits of a linear classifier on its `energy_peak_functionals`,
    standardised with training-set statistics as `FunctionalsHead`'s. Weights start at zero."""

    num_functionals = 12

    def __init__(self, num_labels: int, frame_rate: float):
        super().__init__()
        self.frame_rate = frame_rate
        self.norm = MaskedBatchNorm1d(self.num_functionals, affine=False, momentum=None)
        self.weight = nn.Parameter(torch.zeros(num_labels, self.num_functionals))
        self.bias = nn.Parameter(torch.zeros(num_labels))

    def forward(self, energy: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        functionals = energy_peak_functionals(energy, frame_mask, self.frame_rate)[..., None]
        clip_mask = torch.ones_like(frame_mask[:, :1])
        return nn.functional.linear(self.norm(functionals, clip_mask).squeeze(-1), self.weight, self.bias)


def spec_augment(features: torch.Tensor, frame_lengths: torch.Tensor, config: CNNConfig) -> torch.Tensor:
    """SpecAugment's masking on (batch, channels, frames): `time_masks` spans of up to `time_mask_width`
    real frames and `feature_masks` bands of up to `feature_mask_width` channels set to 0 (the mean of
    normalised features), independently per clip."""
    batch, channels, frames = features.shape
    masked = torch.zeros(batch, channels, frames, dtype=torch.bool, device=features.device)
    for count, width, size, axis in (
        (config.time_masks, config.time_mask_width, frame_lengths, 2),
        (config.feature_masks, config.feature_mask_width, torch.full_like(frame_lengths, channels), 1),
    ):
        positions = torch.arange(features.shape[axis], device=features.device)
        for _ in range(count):
            span = torch.randint(0, width + 1, (batch, 1), device=features.device)
            start = (
                torch.rand(batch, 1, device=features.device) * (size[:, None] - span).clamp(min=1)
            ).long()
            hit = (positions[None, :] >= start) & (positions[None, :] < start + span)
            masked |= hit[:, None, :] if axis == 2 else hit[:, :, None]
    return features.masked_fill(masked, 0.0)


class CNNPreTrainedModel(PreTrainedModel):
    config_class = CNNConfig
    base_model_prefix = "cnn"
    main_input_name = "input_values"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            # Glorot init: with std 0.02 the tiny logits of a fresh head hold training back for many steps.
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)) and module.weight is not None:
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (FunctionalsHead, EnergyPeaksHead)):
            # Starts as logistic regression does, at zero: the CNN's logits alone, a loss near chance.
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, PitchTracker):
            for name, value in module.constants().items():
                init.copy_(getattr(module, name), value)
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if "weight" in name:
                    init.xavier_uniform_(param)
                else:
                    init.zeros_(param)


class CNNForAudioClassification(CNNPreTrainedModel):
    """Attention CNN classifier over raw 16 kHz audio; see the module docstring for the architecture."""

    def __init__(self, config: CNNConfig):
        super().__init__(config)
        self.features = CNNFrameFeatures(config)
        channels = [config.num_features, *config.conv_channels]
        self.conv_blocks = nn.ModuleList(
            CNNConvBlock(channels[i], channels[i + 1], config) for i in range(len(config.conv_channels))
        )
        hidden_size = channels[-1]
        if config.use_lstm:
            self.lstm = nn.LSTM(hidden_size, config.lstm_hidden_size, batch_first=True, bidirectional=True)
            hidden_size = 2 * config.lstm_hidden_size
        else:
            self.lstm = None
        self.attention = AdditiveAttentionPooling(hidden_size, config.attention_size)
        pooled_size = 3 * hidden_size if config.pooling == "attention_stats" else hidden_size
        self.classifier = nn.Sequential(
            nn.Linear(pooled_size, config.classifier_hidden_size),
            nn.ReLU(),
            nn.Dropout(config.classifier_dropout),
            nn.Linear(config.classifier_hidden_size, config.num_labels),
        )
        self.functionals_head = (
            FunctionalsHead(
                config.num_functionals_channels,
                config.num_labels,
                config.functionals,
                config.functionals_smoothing,
            )
            if config.functionals_head
            else None
        )
        self.energy_peaks_head = (
            EnergyPeaksHead(config.num_labels, config.sampling_rate / config.hop_length)
            if config.functionals_head and config.energy_peaks_head
            else None
        )
        self.raw_contours_head = (
            FunctionalsHead(config.num_raw_contour_channels, config.num_labels, "extended", smoothing=False)
            if config.functionals_head and config.raw_contours_head and config.num_raw_contour_channels
            else None
        )
        if self.raw_contours_head is not None:
            # Fitted after training only (`training.calibration`), and until then at zero, adding nothing:
            # trained beside the network it changed which checkpoint early stopping kept, and lost on espeak
            # what the same head fitted to the kept checkpoint gains (ROUNDS.md, thirty-ninth round).
            self.raw_contours_head.requires_grad_(False)
        self.spectrum_head = (
            FunctionalsHead(NUM_SPECTRUM_DESCRIPTORS, config.num_labels, "extended", smoothing=True)
            if config.functionals_head and config.spectrum_head
            else None
        )
        if self.spectrum_head is not None:
            self.spectrum_head.requires_grad_(False)  # fitted after training only, as the raw contours head
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SERClassifierOutput | tuple:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`): mono 16 kHz audio, right-padded, as
            `SERFeatureExtractor` returns it (which also checks it).
        attention_mask (`torch.LongTensor` of shape `(batch, samples)`, *optional*): 1 real sample, 0 padding.
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*): class ids; gives a cross-entropy `loss`.
        """
        sample_lengths = clip_lengths(input_values, attention_mask)
        frame_lengths = self.features.num_frames(sample_lengths)
        num_frames = self.features.num_frames(input_values.shape[-1])
        frame_mask = lengths_to_mask(frame_lengths, num_frames)
        features, log_mel, power = self.features.extract_with_spectra(input_values)
        hidden = self.features.normalize(features, frame_mask)
        functionals_logits = fitted_logits = None
        if self.functionals_head is not None:
            head_input = self.functionals_input(features, log_mel, power)
            heads = [(self.functionals_head, head_input)]
            if self.raw_contours_head is not None:
                # F0 and voicing, the bands and the shape descriptors follow ZCR, RMS and the MFCCs.
                start = 2 + self.config.num_functionals_mfcc
                contours = head_input[..., start : start + self.config.num_raw_contour_channels]
                heads.append((self.raw_contours_head, contours))
            if self.spectrum_head is not None:
                heads.append((self.spectrum_head, self.spectrum_head_descriptors(input_values)))
            # The heads after the first are fitted after training only: zero while the model trains, so the
            # head's loss is as without them; not trained, so not in the penalty.
            functionals_logits, *fitted_after_training = functionals_heads_logits(heads, frame_mask)
            fitted_logits = sum(fitted_after_training) if fitted_after_training else None
        # The RMS contour (channel 1) as computed, before normalisation.
        peaks_logits = (
            self.energy_peaks_head(features[:, 1], frame_mask) if self.energy_peaks_head is not None else None
        )
        if self.training:
            hidden = spec_augment(hidden, frame_lengths, self.config)
        for block in self.conv_blocks:
            hidden = block(hidden, frame_mask)
            frame_lengths = torch.div(frame_lengths, 2, rounding_mode="floor")
            frame_mask = lengths_to_mask(frame_lengths, hidden.shape[-1])

        hidden = hidden.transpose(1, 2)  # (batch, frames, channels)
        if self.lstm is not None:
            # A clip without frames (shorter than min_input_samples) is packed as one frame, which the
            # attention then masks: NaN logits, as without the LSTM, instead of an error from packing.
            packed = nn.utils.rnn.pack_padded_sequence(
                hidden, frame_lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            hidden, _ = self.lstm(packed)
            hidden, _ = nn.utils.rnn.pad_packed_sequence(
                hidden, batch_first=True, total_length=frame_mask.shape[1]
            )
        pooled, _ = self.attention(hidden, frame_mask)
        if self.config.pooling == "attention_stats":
            pooled = torch.cat([pooled, *masked_mean_std(hidden, frame_mask)], dim=-1)
        logits = self.classifier(pooled)
        branches = penalty = None
        if functionals_logits is not None:
            if fitted_logits is not None:
                functionals_logits = functionals_logits + fitted_logits
            heads = [self.functionals_head]
            branches = (logits, functionals_logits)
            if peaks_logits is not None:
                heads.append(self.energy_peaks_head)
                branches += (peaks_logits,)
            penalty = 0.5 * self.config.functionals_l2 * sum(head.weight.pow(2).sum() for head in heads)
            network_weight, head_weight = self.config.branch_weights
            logits = network_weight * logits + head_weight * sum(branches[1:])

        loss = None
        if labels is not None:
            labels = labels.to(logits.device).view(-1)
            # With a functionals head, two learners, each on its own loss: trained on one loss (the summed
            # logits) the pair did worse on the development corpora (ROUNDS.md, fourth round).
            loss = sum(nn.functional.cross_entropy(part, labels) for part in branches or (logits,))
            if penalty is not None:
                loss = loss + penalty
        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return SERClassifierOutput(loss=loss, logits=logits, branch_logits=branches, penalty=penalty)

    def spectrum_head_descriptors(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform (batch, samples) -> the spectrum head's frames (batch, frames, 15): `spectrum_descriptors`
        of the front-end's frames, Hann-windowed and zero-padded to `spectrum_head_n_fft` points."""
        n_fft = self.config.spectrum_head_n_fft
        power = self.features.power_spectrum(waveform, n_fft)
        return spectrum_descriptors(power, self.config.sampling_rate / n_fft)

    def functionals_input(
        self, features: torch.Tensor, log_mel: torch.Tensor, power: torch.Tensor
    ) -> torch.Tensor:
        """Front-end features (batch, channels, frames), before normalisation, their log-mel (batch, frames,
        n_mels) and power spectra (batch, frames, bins) -> the frames (batch, frames, channels) the
        functionals head summarises: ZCR, RMS, the first `functionals_mfcc` MFCCs (and the pitch channels,
        the log-mel averaged over groups of `functionals_mel_group` bands, the spectral-shape descriptors,
        the spectrum descriptors)."""
        if self.config.num_functionals_mfcc < self.config.n_mfcc:
            kept = 2 + self.config.num_functionals_mfcc
            features = torch.cat([features[:, :kept], features[:, 2 + self.config.n_mfcc :]], dim=1)
        parts = [features.transpose(1, 2)]
        group = self.config.functionals_mel_group
        if group is not None:
            parts.append(log_mel.unflatten(-1, (self.config.n_mels // group, group)).mean(-1))
        if self.config.spectral_shape_functionals:
            parts.append(spectral_shape(log_mel))
        if self.config.spectrum_functionals:
            parts.append(spectrum_descriptors(power, self.config.sampling_rate / self.config.win_length))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


__all__ = ["CNNForAudioClassification", "CNNPreTrainedModel"]
