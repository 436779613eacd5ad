"""S4 / S4D speech emotion classifier, in pure PyTorch.

Read top to bottom:

1. the S4 layer (FFT convolution with an SSM kernel from `kernels_s4.py`, skip term D, optional backward
   kernel) and the prenorm residual block around it;
2. the front-ends that turn 16 kHz audio into 100 Hz frames (log-mel or a learned strided conv);
3. the classifier (`S4ForAudioClassification`) and its streaming interface.

The kernels themselves (S4D: Vandermonde product; S4: Cauchy sums at the roots of unity with the Woodbury
correction; each with its recurrent view) and the FFT convolution are in `kernels_s4.py`, next to this file.

Conventions. A layer has H channels (2H kernels when bidirectional) and a state of size N kept as N/2
complex-conjugate pairs. SSM parameters (A, B, P, dt) are named `ssm_*` (`SSM_PARAMETER_PREFIX`):
`modeling.optimization` gives every parameter whose name starts with that token its own learning rate and no
weight decay. The whole SSM (kernel + FFT convolution) runs in float32, also under autocast.

`forward` does not check its inputs: `SERFeatureExtractor` does (mono, not empty, not shorter than
`min_input_samples`, ones-then-zeros `attention_mask`), so that `forward` is plain tensor code that
`torch.export` traces. A clip shorter than one front-end window has no frame: its logits are NaN.

This file imports only numpy, torch, torchaudio, transformers and its own folder: it is copied (with
`kernels_s4.py` and `configuration_s4.py`) next to saved models and loaded with `trust_remote_code=True`
where this project is not installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_s4 import S4Config
from .kernels_s4 import (
    SSM_PARAMETER_PREFIX,
    DPLRKernel,
    S4DKernel,
    SSMKernel,
    fast_fft_size,
    fft_convolution,
    hippo_legs_dplr,
    is_loaded,
    kernel_spectrum,
    set_unless_initialised,
    vandermonde_kernel,
    vandermonde_kernel_naive,
)


# Copied from modeling.cnn.modeling_cnn.SERClassifierOutput
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


# Copied from modeling.cnn.modeling_cnn.lengths_to_mask
def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_length) bool mask, True on real positions."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


# Copied from modeling.cnn.modeling_cnn.clip_lengths
def clip_lengths(input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(batch,) number of real samples per clip: the ones of `attention_mask` (right padding), or all."""
    if attention_mask is None:
        return torch.full(input_values.shape[:1], input_values.shape[-1], device=input_values.device)
    return attention_mask.sum(-1)


# ---------------------------------------------------------------------------------------------------------
# The S4 layer: y = K * u + D u (FFT convolution), optionally plus a backward kernel
# ---------------------------------------------------------------------------------------------------------


class S4Layer(nn.Module):
    """H-channel sequence map (batch x L x H -> batch x L x H).

    y = irfft(rfft(u, n) * rfft(K, n), n)[..., :L] + D u with n >= 2L (the next 5-smooth size), so the
    circular convolution never wraps around. The forward kernel covers lags 0..L-1; with `bidirectional` a
    second kernel covers lags -1..-(L-1) (D already covers lag 0), stored at the end of the same FFT buffer,
    so a zero (padded) input step contributes nothing in either direction. Outside training with gradients
    off, the kernel is computed for the next power-of-two length and its spectrum cached (one cache entry,
    invalidated when a parameter changes), so clips of similar length do not recompute it.
    """

    def __init__(self, config: S4Config):
        super().__init__()
        self.d_model, self.bidirectional = config.d_model, config.bidirectional
        channels = config.d_model * (2 if config.bidirectional else 1)
        if config.kernel == "s4d":
            self.kernel = S4DKernel(
                channels, config.d_state, config.init, config.discretization, config.dt_min, config.dt_max
            )
        else:
            self.kernel = DPLRKernel(
                channels, config.d_state, config.dplr_kernel_length, config.dt_min, config.dt_max
            )
        self.D = nn.Parameter(torch.empty(config.d_model))
        set_unless_initialised(self.D, torch.randn(config.d_model, device="cpu"), mark=False)
        self._spectrum_cache: tuple[tuple, torch.Tensor] | None = None

    def kernel_spectrum(self, length: int, n_fft: int, naive: bool = False) -> torch.Tensor:
        """rfft (size n_fft >= 2 * length) of the H causal kernels of `length` taps, plus the backward ones
        placed at the end (negative lags) when bidirectional."""
        return kernel_spectrum(self.kernel(length, naive=naive), n_fft, self.bidirectional)

    def _cached_kernel_spectrum(self, length: int, n_fft: int) -> torch.Tensor:
        # Outside training the kernel is a constant of the parameters: keep the last spectrum, keyed on the
        # parameters' identity and in-place version counters, so an optimiser step or a load invalidates it.
        params = tuple(self.kernel.parameters())
        key = (length, n_fft) + tuple((p.data_ptr(), p._version) for p in params)
        if self._spectrum_cache is None or self._spectrum_cache[0] != key:
            self._spectrum_cache = (key, self.kernel_spectrum(length, n_fft))
        return self._spectrum_cache[1]

    def forward(self, u: torch.Tensor, naive_kernel: bool = False) -> torch.Tensor:
        length = u.shape[1]
        with torch.autocast(device_type=u.device.type, enabled=False):
            u = u.float().transpose(1, 2)  # batch, H, L
            if torch.compiler.is_compiling():
                # Traced (torch.export, ONNX): the length is symbolic, so no 5-smooth search and no cache.
                n_fft = 2 * length
                k_spectrum = self.kernel_spectrum(length, n_fft)
            elif self.training or torch.is_grad_enabled() or naive_kernel:
                n_fft = fast_fft_size(2 * length)  # >= 2L: the circular convolution never wraps around
                k_spectrum = self.kernel_spectrum(length, n_fft, naive=naive_kernel)
            else:
                # Inference: one cached kernel per power-of-two length bucket serves every clip up to that
                # length; taps beyond L never reach an output t < L when n_fft >= 2 * bucket.
                bucket = 1 << (length - 1).bit_length()
                if isinstance(self.kernel, DPLRKernel):
                    bucket = min(bucket, self.kernel.kernel_length)
                n_fft = 2 * bucket
                k_spectrum = self._cached_kernel_spectrum(bucket, n_fft)
            y = fft_convolution(u, k_spectrum, n_fft) + self.D.float().unsqueeze(-1) * u
        return y.transpose(1, 2)

    def setup_step(self) -> None:
        if self.bidirectional:
            raise ValueError("a bidirectional S4 layer looks at future steps and cannot run step by step")
        self.kernel.setup_step()

    def default_state(self, batch_size: int) -> torch.Tensor:
        return self.kernel.default_state(batch_size)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: u is batch x H."""
        y, state = self.kernel.step(u, state)
        return y + self.D.float() * u.float(), state


class S4Block(nn.Module):
    """Prenorm residual block: x + Out(Dropout(GELU(S4(LayerNorm(x) with padded steps zeroed))))."""

    def __init__(self, config: S4Config):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.s4 = S4Layer(config)
        self.dropout = nn.Dropout(config.dropout)
        if config.block_output == "glu":
            self.output = nn.Sequential(nn.Linear(config.d_model, 2 * config.d_model), nn.GLU(dim=-1))
        else:
            self.output = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        z = self.norm(x).masked_fill(~frame_mask.unsqueeze(-1), 0.0)
        z = self.dropout(F.gelu(self.s4(z)))
        return x + self.output(z.to(x.dtype))

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, state = self.s4.step(self.norm(x), state)
        return x + self.output(self.dropout(F.gelu(z)).to(x.dtype)), state


# ---------------------------------------------------------------------------------------------------------
# Front-ends: 16 kHz samples -> frames. Frame t is a function of samples [t * hop, t * hop + window) only,
# and is emitted only when that whole window lies inside the real samples.
# ---------------------------------------------------------------------------------------------------------


# Copied from modeling.cnn.modeling_cnn.PitchTracker
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


# Copied from modeling.cnn.modeling_cnn.MaskedBatchNorm1d
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


# Copied from modeling.cnn.modeling_cnn.AdditiveAttentionPooling
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


# Copied from modeling.cnn.modeling_cnn.masked_mean_std
def masked_mean_std(hidden: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the real frames of (batch, frames, channels)."""
    weight = frame_mask[..., None].to(hidden.dtype)
    count = weight.sum(1).clamp(min=1.0)
    hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)
    mean = hidden.sum(1) / count
    variance = ((hidden - mean[:, None, :]).pow(2) * weight).sum(1) / count
    return mean, (variance + 1e-5).sqrt()


# Copied from modeling.cnn.modeling_cnn.utterance_functionals
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


# Copied from modeling.cnn.modeling_cnn.in_graph_capture
def in_graph_capture() -> bool:
    """Whether an exporter, the compiler or the tracer is recording the model: the faster eager paths that
    their graphs cannot hold (NumPy, searchsorted for ONNX) give way to plain operations there."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


# Copied from modeling.cnn.modeling_cnn.sort_values
def sort_values(contours: torch.Tensor) -> torch.Tensor:
    """`contours.sort(dim=-1).values`. On the CPU and without autograd, NumPy's sort gives the same values in
    a tenth of the time (a 3 s clip's 174 rows of 298 frames: 0.1 ms against torch's 1.3 ms on one thread,
    `benchmarks/results/speed-history.md`). The exporters, the compiler and autograd get torch's sort: NumPy
    is outside their graphs and carries no gradient."""
    numpy_sortable = contours.dtype in (torch.float32, torch.float64) and contours.device.type == "cpu"
    if not numpy_sortable or contours.requires_grad or in_graph_capture():
        return contours.sort(dim=-1).values
    return torch.from_numpy(np.sort(contours.numpy(), axis=-1))


# Copied from modeling.cnn.modeling_cnn.contour_functionals
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


# Copied from modeling.cnn.modeling_cnn.smoothed_contours
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


# Copied from modeling.cnn.modeling_cnn.extended_functionals
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


# Copied from modeling.cnn.modeling_cnn.joint_extended_functionals
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


# Copied from modeling.cnn.modeling_cnn.FunctionalsHead
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


# Copied from modeling.cnn.modeling_cnn.functionals_heads_logits
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


# Copied from modeling.cnn.modeling_cnn.energy_peak_functionals
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


# Copied from modeling.cnn.modeling_cnn.EnergyPeaksHead
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
    flux = F.pad(step, (1, 0))
    centred = bands - bands.mean()
    slope = (log_mel * centred).sum(-1) / centred.square().sum()
    descriptors = [energy, centroid.squeeze(-1), spread, entropy, flatness, rolloff, flux, slope]
    return torch.stack(descriptors, dim=-1)


# Channels of `spectrum_descriptors`.
NUM_SPECTRUM_DESCRIPTORS = 15


# Copied from modeling.cnn.modeling_cnn.spectrum_descriptors
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


# Copied from modeling.cnn.modeling_cnn.spectral_harmonicity
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


class MelFrontend(nn.Module):
    """Log-mel frames (float32, on the model's device) and, with `pitch_features`, F0 and voicing; normalised
    per band over the clip, causally, with the training set's statistics, over the clip and with the training
    set's statistics side by side (twice the channels), or not at all."""

    def __init__(self, config: S4Config):
        super().__init__()
        self.window = round(config.frame_length_ms * config.sampling_rate / 1000)
        self.hop = round(config.frame_shift_ms * config.sampling_rate / 1000)
        self.n_fft = 1 << (self.window - 1).bit_length()
        self.normalization = config.mel_normalization
        self.pitch = (
            PitchTracker(
                config.sampling_rate,
                self.window,
                self.hop,
                round(config.pitch_window_ms * config.sampling_rate / 1000),
                config.f0_min,
                config.f0_max,
            )
            if config.pitch_features
            else None
        )
        self.lookback = self.pitch.lookback if self.pitch is not None else 0
        self.feature_dim = config.mel_bins + (2 if config.pitch_features else 0)
        self.out_dim = self.feature_dim * (2 if self.normalization == "utterance+dataset" else 1)
        self.dataset_norm = (
            MaskedBatchNorm1d(self.feature_dim, affine=False, momentum=None)
            if self.normalization in ("dataset", "utterance+dataset")
            else None
        )
        with torch.device("cpu"):  # real values even when transformers builds the model on the meta device
            window = torch.hann_window(self.window, periodic=True)
            filters = torchaudio.functional.melscale_fbanks(
                self.n_fft // 2 + 1, 0.0, config.sampling_rate / 2, config.mel_bins, config.sampling_rate
            )
        self.register_buffer("analysis_window", window)
        self.register_buffer("mel_filters", filters)

    def power_spectrum(self, waveform: torch.Tensor) -> torch.Tensor:
        """batch x samples -> batch x frames x (n_fft / 2 + 1) bins, float32 (frames whose window fits in the
        given samples)."""
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            frames = waveform.float().unfold(-1, self.window, self.hop) * self.analysis_window.float()
            spectrum = torch.view_as_real(torch.fft.rfft(frames, n=self.n_fft))
            real, imaginary = spectrum[..., 0], spectrum[..., 1]
            return real * real + imaginary * imaginary  # no square root, unlike .abs().square()

    def log_mel(self, waveform: torch.Tensor, power: torch.Tensor | None = None) -> torch.Tensor:
        """batch x samples -> batch x frames x mel_bins (`power`: the waveform's `power_spectrum`, where the
        caller has it already)."""
        if power is None:
            power = self.power_spectrum(waveform)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            return torch.log(power @ self.mel_filters.float() + 1e-6)

    def frame_features(
        self, waveform: torch.Tensor, history: torch.Tensor | None = None, power: torch.Tensor | None = None
    ) -> torch.Tensor:
        """batch x samples -> batch x frames x out_dim, before normalisation (`history`: a stream's past
        samples, which the pitch window looks back on; `power`: as for `log_mel`)."""
        features = self.log_mel(waveform, power)
        if self.pitch is None:
            return features
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            pitch = self.pitch(
                waveform.float(), features.shape[1], None if history is None else history.float()
            )
        return torch.cat([features, pitch], dim=-1)

    def forward(self, waveform: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.frame_features(waveform), frame_mask)

    def normalize(self, raw: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """batch x frames x feature_dim -> batch x frames x out_dim, as `mel_normalization` asks."""
        parts = []
        if self.normalization in ("utterance", "utterance+dataset"):
            mean, std = masked_mean_std(raw, frame_mask)
            parts.append((raw - mean.unsqueeze(1)) / std.unsqueeze(1))
        if self.normalization == "causal":
            parts.append(self.causal_normalize(raw, *self.empty_norm_state(raw))[0])
        if self.normalization in ("dataset", "utterance+dataset"):
            parts.append(self.dataset_norm(raw.transpose(1, 2), frame_mask).transpose(1, 2))
        features = torch.cat(parts, dim=-1) if parts else raw
        return features.masked_fill(~frame_mask.unsqueeze(-1), 0.0)

    def empty_norm_state(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zeros = like.new_zeros(like.shape[0], self.feature_dim)
        return zeros, zeros.clone(), like.new_zeros(())

    @staticmethod
    def causal_normalize(
        features: torch.Tensor, running_sum: torch.Tensor, running_sq: torch.Tensor, count: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Normalise frame t by the mean/variance of frames 0..t (continuing from the running sums)."""
        sums = running_sum.unsqueeze(1) + features.cumsum(1)
        squares = running_sq.unsqueeze(1) + features.square().cumsum(1)
        counts = count + torch.arange(1, features.shape[1] + 1, device=features.device, dtype=features.dtype)
        mean = sums / counts[:, None]
        var = (squares / counts[:, None] - mean.square()).clamp_min(0.0)
        normalized = (features - mean) / torch.sqrt(var + 1e-5)
        return normalized, (sums[:, -1], squares[:, -1], counts[-1])


class ConvFrontend(nn.Module):
    """Learned strided Conv1d stack over the waveform (no padding), GELU after each, per-frame LayerNorm."""

    def __init__(self, config: S4Config):
        super().__init__()
        layers, in_channels = [], 1
        for kernel_size, stride in zip(config.conv_kernel_sizes, config.conv_strides, strict=True):
            layers += [nn.Conv1d(in_channels, config.conv_channels, kernel_size, stride), nn.GELU()]
            in_channels = config.conv_channels
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(config.conv_channels)
        self.out_dim = config.conv_channels
        # receptive field and hop of one output frame, in samples
        self.window, self.hop = 1, 1
        for kernel_size, stride in zip(config.conv_kernel_sizes, config.conv_strides, strict=True):
            self.window += (kernel_size - 1) * self.hop
            self.hop *= stride

    def forward(self, waveform: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        features = self.norm(self.convs(waveform.unsqueeze(1).to(self.norm.weight.dtype)).transpose(1, 2))
        return features.masked_fill(~frame_mask.unsqueeze(-1), 0.0)


# ---------------------------------------------------------------------------------------------------------
# The classifier
# ---------------------------------------------------------------------------------------------------------


@dataclass
class S4StreamState:
    """Everything `S4ForAudioClassification.stream_step` carries from one chunk to the next."""

    samples: torch.Tensor  # batch x buffered samples not yet consumed by a complete frame
    layer_states: list[torch.Tensor]
    pooled_sum: torch.Tensor  # batch x d_model, sum of the final hidden states so far (for "attention",
    # each weighted by exp(score - score_max))
    pooled_square_sum: torch.Tensor  # batch x d_model, their sum of squares (pooling="mean_std")
    score_max: torch.Tensor  # batch, the highest attention score so far (pooling="attention")
    score_sum: torch.Tensor  # batch, the sum of exp(score - score_max) so far (pooling="attention")
    history: torch.Tensor  # batch x the samples before `samples` that the pitch window looks back on
    n_frames: int = 0
    norm_state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # mel_normalization="causal"


class S4PreTrainedModel(PreTrainedModel):
    config_class = S4Config
    base_model_prefix = "s4"
    main_input_name = "input_values"

    def _init_weights(self, module: nn.Module) -> None:
        # SSM parameters get their structured initialisation (S4D / HiPPO), never a generic normal init,
        # and only when transformers has not loaded or initialised them already.
        if isinstance(module, SSMKernel):
            module.initialize_ssm()
        elif isinstance(module, S4Layer):
            set_unless_initialised(module.D, torch.randn(module.D.shape, device="cpu"))
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            if not is_loaded(module.weight):
                with torch.no_grad():
                    module.weight.normal_(0.0, self.config.initializer_range)
            if module.bias is not None and not is_loaded(module.bias):
                with torch.no_grad():
                    module.bias.zero_()
        elif isinstance(module, (FunctionalsHead, EnergyPeaksHead)):
            # Starts as logistic regression does, at zero: the S4's logits alone.
            set_unless_initialised(module.weight, torch.zeros_like(module.weight, device="cpu"))
            set_unless_initialised(module.bias, torch.zeros_like(module.bias, device="cpu"))
        elif isinstance(module, PitchTracker):
            for name, value in module.constants().items():
                set_unless_initialised(getattr(module, name), value)
        elif isinstance(module, S4ForAudioClassification) and module.mfcc_head is not None:
            # A checkpoint saved without the MFCC head, loaded with it: its DCT matrix, not the meta device's
            # empty memory.
            coefficients, mel_bins = module.mfcc_head_dct.shape[1], module.mfcc_head_dct.shape[0]
            dct = torchaudio.functional.create_dct(coefficients, mel_bins, "ortho").to(device="cpu")
            set_unless_initialised(module.mfcc_head_dct, dct)
        elif isinstance(module, nn.BatchNorm1d):
            # Statistics missing from a checkpoint (one saved before the functionals head): those of a fresh
            # BatchNorm, not the uninitialised memory the meta device leaves.
            set_unless_initialised(module.running_mean, torch.zeros_like(module.running_mean, device="cpu"))
            set_unless_initialised(module.running_var, torch.ones_like(module.running_var, device="cpu"))
            set_unless_initialised(
                module.num_batches_tracked, torch.zeros_like(module.num_batches_tracked, device="cpu")
            )
        elif isinstance(module, nn.LayerNorm):
            set_unless_initialised(module.weight, torch.ones_like(module.weight, device="cpu"))
            set_unless_initialised(module.bias, torch.zeros_like(module.bias, device="cpu"))


class S4ForAudioClassification(S4PreTrainedModel):
    """Front-end -> Linear(d_model) -> n_layers x S4Block -> LayerNorm -> masked pooling -> Linear head.

    Input: `input_values` (batch x samples, mono float at `config.sampling_rate`) and `attention_mask`
    (1 real, 0 padding; padding at the end). Padding never changes a prediction: frames are computed only
    inside the real samples, padded steps are zeroed before every S4 layer and excluded from the pooling.
    Inputs are checked by `SERFeatureExtractor`, not here (see the module docstring): a clip shorter than
    `min_input_samples` gives NaN logits.

    Streaming (causal configurations: `bidirectional=False` and, for the mel front-end,
    `mel_normalization` "causal", "dataset" or "none"): `state = model.init_stream_state(batch)`, then
    `logits, state = model.stream_step(chunk, state)` for consecutive chunks of any size; the logits after a
    chunk equal the offline logits of all audio so far (cut to whole frames).
    """

    def __init__(self, config: S4Config):
        super().__init__(config)
        self.frontend = MelFrontend(config) if config.frontend == "mel" else ConvFrontend(config)
        self.input_proj = nn.Linear(self.frontend.out_dim, config.d_model)
        self.blocks = nn.ModuleList([S4Block(config) for _ in range(config.n_layers)])
        self.final_norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        pooled_size = 2 * config.d_model if config.pooling == "mean_std" else config.d_model
        self.attention = None
        if config.pooling == "attention":
            self.attention = AdditiveAttentionPooling(config.d_model, config.d_model)
        self.classifier = nn.Linear(pooled_size, config.num_labels)
        self.functionals_head = self.smoothed_contours_head = self.mfcc_head = self.spectrum_head = None
        if config.functionals_head and config.frontend == "mel":
            # What `functionals_input` gives: the grouped bands, the pitch channels, the shape descriptors.
            head_channels = (
                self.frontend.feature_dim
                - config.mel_bins
                + config.mel_bins // config.functionals_mel_group
                + (8 if config.spectral_shape_functionals else 0)
            )
            self.functionals_head = FunctionalsHead(
                head_channels, config.num_labels, config.functionals, config.functionals_smoothing
            )
            if config.smoothed_contours_head and not config.functionals_smoothing:
                # Fitted after training only (`training.calibration`), and until then at zero, adding
                # nothing, so that training and early stopping are those of the model without it (the CNN's
                # raw contours head trained beside its network changed the kept checkpoint: ROUNDS.md,
                # thirty-ninth round).
                self.smoothed_contours_head = FunctionalsHead(
                    head_channels, config.num_labels, "extended", smoothing=True
                ).requires_grad_(False)
            if config.mfcc_head:
                # Fitted after training only, as the smoothed contours head, and left at zero where the
                # validation clips do not show that it helps (`training.calibration.GATED_HEADS`).
                coefficients = min(config.mfcc_head, config.mel_bins)
                self.mfcc_head = FunctionalsHead(
                    coefficients, config.num_labels, "extended", smoothing=True
                ).requires_grad_(False)
                with torch.device("cpu"):  # real values even when transformers builds on the meta device
                    dct = torchaudio.functional.create_dct(coefficients, config.mel_bins, "ortho")
                self.register_buffer("mfcc_head_dct", dct)
            if config.spectrum_head:
                # Fitted after training only, and gated after the MFCC head (`GATED_HEADS` is in that order).
                self.spectrum_head = FunctionalsHead(
                    NUM_SPECTRUM_DESCRIPTORS, config.num_labels, "extended", smoothing=True
                ).requires_grad_(False)
        self.energy_peaks_head = (
            EnergyPeaksHead(config.num_labels, config.sampling_rate / self.frontend.hop)
            if self.functionals_head is not None and config.energy_peaks_head
            else None
        )
        self.post_init()

    @property
    def min_input_samples(self) -> int:
        """The shortest clip (in samples) that yields one frame."""
        return self.frontend.window

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames whose whole window lies inside `num_samples` samples (negative when there is none)."""
        return (num_samples - self.frontend.window) // self.frontend.hop + 1

    def _frame_mask(self, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        return lengths_to_mask(self.num_frames(lengths), n_frames)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SERClassifierOutput | tuple:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch, samples)`): mono audio, right-padded, as
            `SERFeatureExtractor` returns it (which also checks it).
        attention_mask (`torch.LongTensor` of shape `(batch, samples)`, *optional*): 1 real sample, 0 padding.
        labels (`torch.LongTensor` of shape `(batch,)`, *optional*): class ids; gives a cross-entropy `loss`.
        """
        lengths = clip_lengths(input_values, attention_mask)
        # Whatever the padding holds (even inf), zeroed it keeps the padded frames finite, so they add
        # exactly 0 to the masked sums (0 * inf would be nan).
        samples = input_values.masked_fill(~lengths_to_mask(lengths, input_values.shape[-1]), 0.0)
        frame_mask = self._frame_mask(lengths, self.num_frames(samples.shape[-1]))
        if self.functionals_head is None:
            features = self.frontend(samples, frame_mask)
            functionals_logits = None
        else:
            power = self.frontend.power_spectrum(samples) if self.spectrum_head is not None else None
            raw = self.frontend.frame_features(samples, power=power)
            features = self.frontend.normalize(raw, frame_mask)
            contours = self.functionals_input(raw)
            heads = [(self.functionals_head, contours)]
            # The smoothed contours, MFCC and spectrum heads are part of the head's branch: zero while the
            # model trains, so the head's loss is as without them; not trained, so not in the penalty.
            if self.smoothed_contours_head is not None:
                heads.append((self.smoothed_contours_head, contours))
            if self.mfcc_head is not None:
                heads.append((self.mfcc_head, raw[..., : self.config.mel_bins] @ self.mfcc_head_dct))
            if self.spectrum_head is not None:
                bin_hz = self.config.sampling_rate / self.frontend.n_fft
                heads.append((self.spectrum_head, spectrum_descriptors(power, bin_hz)))
            functionals_logits = sum(functionals_heads_logits(heads, frame_mask))
        peaks_logits = None
        if self.energy_peaks_head is not None:
            # The RMS contour of the front-end's frames.
            frames = samples.float().unfold(-1, self.frontend.window, self.frontend.hop)
            peaks_logits = self.energy_peaks_head(frames.square().mean(-1).add(1e-10).sqrt(), frame_mask)
        hidden = self.input_proj(features.to(self.input_proj.weight.dtype))
        all_hidden = [hidden] if output_hidden_states else None
        for block in self.blocks:
            hidden = block(hidden, frame_mask)
            if all_hidden is not None:
                all_hidden.append(hidden)
        hidden = self.final_norm(hidden)
        if self.attention is not None:
            pooled, _ = self.attention(hidden, frame_mask)
        else:
            weight = frame_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weight).sum(1) / weight.sum(1)
            if self.config.pooling == "mean_std":
                variance = ((hidden - pooled.unsqueeze(1)).square() * weight).sum(1) / weight.sum(1)
                pooled = torch.cat([pooled, (variance + 1e-5).sqrt()], dim=-1)
        logits = self.classifier(self.dropout(pooled))
        branches = penalty = None
        if functionals_logits is not None:
            heads = [self.functionals_head]
            branches = (logits, functionals_logits.to(logits.dtype))
            if peaks_logits is not None:
                heads.append(self.energy_peaks_head)
                branches += (peaks_logits.to(logits.dtype),)
            squares = sum(head.weight.float().pow(2).sum() for head in heads)
            penalty = 0.5 * self.config.functionals_l2 * squares
            network_weight, head_weight = self.config.branch_weights
            logits = network_weight * logits + head_weight * sum(branches[1:])
        loss = None
        if labels is not None:
            labels = labels.to(logits.device).long()
            # With a functionals head, two learners, each on its own loss: trained on one loss (the summed
            # logits) the pair did worse on the development corpora (ROUNDS.md, fourth round).
            loss = sum(F.cross_entropy(part.float(), labels) for part in branches or (logits,))
            if penalty is not None:
                loss = loss + penalty
        hidden_states = tuple(all_hidden) if all_hidden is not None else None
        if return_dict is False:
            return tuple(v for v in (loss, logits, hidden_states) if v is not None)
        return SERClassifierOutput(
            loss=loss, logits=logits, hidden_states=hidden_states, branch_logits=branches, penalty=penalty
        )

    def functionals_input(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw front-end frames (batch, frames, feature_dim) -> the channels the functionals head summarises:
        the log-mel averaged over groups of `functionals_mel_group` adjacent bands, the pitch channels, and
        with `spectral_shape_functionals` the shape descriptors of the full-resolution log-mel."""
        mel_bins, group = self.config.mel_bins, self.config.functionals_mel_group
        log_mel = raw[..., :mel_bins]
        parts = [log_mel.unflatten(-1, (mel_bins // group, group)).mean(-1), raw[..., mel_bins:]]
        if self.config.spectral_shape_functionals:
            parts.append(spectral_shape(log_mel))
        return torch.cat(parts, dim=-1)

    # -- streaming ---------------------------------------------------------------------------------------

    def _check_streamable(self) -> None:
        if self.config.bidirectional:
            raise ValueError("streaming needs a causal model: this one has bidirectional=True")
        if self.config.frontend == "mel" and "utterance" in self.config.mel_normalization:
            normalization = self.config.mel_normalization
            raise ValueError(
                f"streaming needs a causal front-end: mel_normalization={normalization!r} uses the whole "
                "clip; train with 'dataset', 'causal' or 'none'"
            )
        if self.functionals_head is not None:
            raise ValueError(
                "streaming needs a causal model: functionals_head=True summarises the whole clip; "
                "train without it"
            )

    def init_stream_state(self, batch_size: int = 1) -> S4StreamState:
        """Prepare the recurrent view of every layer and return an empty state for `batch_size` streams."""
        self._check_streamable()
        for block in self.blocks:
            block.s4.setup_step()
        device = self.input_proj.weight.device
        norm_state = None
        if self.config.frontend == "mel" and self.config.mel_normalization == "causal":
            norm_state = self.frontend.empty_norm_state(torch.zeros(batch_size, 1, device=device))
        return S4StreamState(
            samples=torch.zeros(batch_size, 0, device=device),
            layer_states=[block.s4.default_state(batch_size) for block in self.blocks],
            pooled_sum=torch.zeros(batch_size, self.config.d_model, device=device),
            pooled_square_sum=torch.zeros(batch_size, self.config.d_model, device=device),
            score_max=torch.full((batch_size,), float("-inf"), device=device),
            score_sum=torch.zeros(batch_size, device=device),
            history=torch.zeros(batch_size, getattr(self.frontend, "lookback", 0), device=device),
            norm_state=norm_state,
        )

    @torch.no_grad()
    def stream_step(
        self, chunk: torch.Tensor, state: S4StreamState
    ) -> tuple[torch.Tensor | None, S4StreamState]:
        """Feed the next samples (batch x n, any n >= 0) of each stream; returns the running logits (None
        while no complete frame has arrived) and the new state. Call `model.eval()` first (dropout).

        The parameters are read by `init_stream_state` (`setup_step`): start a new state after changing them.
        """
        if chunk.dim() != 2 or chunk.shape[0] != state.samples.shape[0]:
            raise ValueError(
                f"chunk must be batch x samples with batch={state.samples.shape[0]}; got {tuple(chunk.shape)}"
            )
        samples = torch.cat([state.samples, chunk.to(state.samples)], dim=-1)
        window, hop = self.frontend.window, self.frontend.hop
        n_new = (samples.shape[-1] - window) // hop + 1 if samples.shape[-1] >= window else 0
        if n_new > 0:
            used = samples[:, : (n_new - 1) * hop + window]
            all_valid = torch.ones(used.shape[0], n_new, dtype=torch.bool, device=used.device)
            if isinstance(self.frontend, MelFrontend):
                features = self.frontend.frame_features(used, state.history)
                if state.norm_state is not None:
                    features, state.norm_state = self.frontend.causal_normalize(features, *state.norm_state)
                elif self.frontend.dataset_norm is not None:  # eval: per frame, the saved statistics
                    features = self.frontend.dataset_norm(features.transpose(1, 2), all_valid).transpose(1, 2)
                lookback = self.frontend.lookback
                state.history = torch.cat([state.history, samples], dim=-1)[
                    :, n_new * hop : n_new * hop + lookback
                ]
            else:
                features = self.frontend(used, all_valid)
            hidden = self.input_proj(features.to(self.input_proj.weight.dtype))
            for t in range(n_new):
                x = hidden[:, t]
                for i, block in enumerate(self.blocks):
                    x, state.layer_states[i] = block.step(x, state.layer_states[i])
                final = self.final_norm(x)
                if self.attention is not None:
                    # The softmax over all frames so far, kept as a running sum rescaled whenever the highest
                    # score rises (exp(-inf) = 0 before the first frame).
                    score = self.attention.scores(final).float()
                    score_max = torch.maximum(state.score_max, score)
                    rescale, weight = (state.score_max - score_max).exp(), (score - score_max).exp()
                    state.pooled_sum = state.pooled_sum * rescale[:, None] + weight[:, None] * final.float()
                    state.score_sum = state.score_sum * rescale + weight
                    state.score_max = score_max
                else:
                    state.pooled_sum = state.pooled_sum + final.float()
                    state.pooled_square_sum = state.pooled_square_sum + final.float().square()
            state.n_frames += n_new
            samples = samples[:, n_new * hop :]
        state.samples = samples
        if state.n_frames == 0:
            return None, state
        if self.attention is not None:
            pooled = state.pooled_sum / state.score_sum[:, None]
        else:
            pooled = state.pooled_sum / state.n_frames
        if self.config.pooling == "mean_std":
            variance = (state.pooled_square_sum / state.n_frames - pooled.square()).clamp(min=0.0)
            pooled = torch.cat([pooled, (variance + 1e-5).sqrt()], dim=-1)
        return self.classifier(pooled.to(self.classifier.weight.dtype)), state


__all__ = [
    "SSM_PARAMETER_PREFIX",
    "DPLRKernel",
    "S4Block",
    "S4DKernel",
    "S4ForAudioClassification",
    "S4Layer",
    "S4PreTrainedModel",
    "S4StreamState",
    "clip_lengths",
    "fast_fft_size",
    "hippo_legs_dplr",
    "lengths_to_mask",
    "vandermonde_kernel",
    "vandermonde_kernel_naive",
]
