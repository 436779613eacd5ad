"""Configuration of the S4 / S4D speech emotion classifier."""

from __future__ import annotations

from transformers import PretrainedConfig

_KERNELS = ("s4d", "s4")
_INITS = ("lin", "inv")
_DISCRETIZATIONS = ("zoh", "bilinear")
_FRONTENDS = ("mel", "conv")
_MEL_NORMALIZATIONS = ("utterance", "causal", "dataset", "utterance+dataset", "none")
_POOLINGS = ("attention", "mean", "mean_std")
_BLOCK_OUTPUTS = ("glu", "linear")
_FUNCTIONALS = ("basic", "extended")
# What a saved configuration without these fields was trained with: the defaults before the eighth round
# (README), or the behaviour before the field existed (`energy_peaks_head`: before the seventeenth round;
# `smoothed_contours_head`: before the fortieth; `mfcc_head`: before the forty-second, where it became the
# default; `spectrum_head`: before the forty-third, the default since the forty-fourth; `pooling`: "mean"
# before the fifty-fourth round).
EARLIER_DEFAULTS = {
    "d_model": 128,
    "n_layers": 4,
    "pitch_features": False,
    "spectral_shape_functionals": False,
    "functionals": "basic",
    "functionals_mel_group": 1,
    "normalize_waveform": True,
    "energy_peaks_head": False,
    "smoothed_contours_head": False,
    "mfcc_head": 0,
    "spectrum_head": False,
    "pooling": "mean",
}


class S4Config(PretrainedConfig):
    r"""
    Configuration of [`S4ForAudioClassification`]: a front-end that turns 16 kHz audio into frames, a stack of
    prenorm residual S4 blocks, attention pooling over the real frames and a linear head.

    The defaults are the speech configuration of the development leaderboard (ROUNDS.md, eighth round), sized
    to cost about what the earlier defaults did: the recording level kept, a log-mel front-end at 100 frames/s
    with pitch channels, 2 bidirectional S4D layers of width 64, and beside them a linear classifier on
    ComParE-like functionals of the frames (pitch, 16 mel bands, spectral shape), as computed and smoothed
    (the fortieth round's second head), and, each kept only where the validation clips show it helps, of
    20 MFCCs (forty-second round) and of 15 descriptors of the power spectrum (forty-third round); the heads
    after the first are fitted after training only. Their time per 3 s clip on one thread:
    `benchmarks/bench_models.py`, README "Speed" (under the 10 ms goal).

    Args:
        d_model (`int`, defaults to 64):
            Width H of the residual stream; every S4 layer has H independent channels.
        n_layers (`int`, defaults to 2):
            Number of prenorm residual blocks `[LayerNorm -> S4 -> GELU -> Dropout -> GLU/Linear]`.
        d_state (`int`, defaults to 64):
            State size N of each SSM. Must be even: the N states are kept as N/2 complex-conjugate pairs.
        kernel (`str`, defaults to `"s4d"`):
            `"s4d"`: diagonal A, kernel by a (chunked) Vandermonde product (Gu et al. 2022, "On the
            parameterization and initialization of diagonal state space models").
            `"s4"`: A = Lambda - P P* (HiPPO-LegS in normal-plus-low-rank form), kernel from Cauchy sums at
            the roots of unity with the Woodbury correction (Gu et al. 2022, "Efficiently modeling long
            sequences with structured state spaces"). Always bilinear discretisation.
        init (`str`, defaults to `"lin"`):
            S4D initialisation of A: `"lin"` (S4D-Lin, A_n = -1/2 + i pi n) or `"inv"` (S4D-Inv,
            A_n = -1/2 + i N/pi (N/(2n+1) - 1)). Ignored by `kernel="s4"` (always HiPPO-LegS).
        discretization (`str`, defaults to `"zoh"`):
            S4D discretisation: `"zoh"` (zero-order hold) or `"bilinear"`. `kernel="s4"` is always bilinear.
        dt_min (`float`, defaults to 1e-3) / dt_max (`float`, defaults to 1e-1):
            Range of the log-uniform initialisation of the step size dt, in units of frames.
        bidirectional (`bool`, defaults to `True`):
            A second kernel runs backwards in time (non-causal). Streaming needs `bidirectional=False`.
        dropout (`float`, defaults to 0.1):
            Dropout after the activation of each block and before the head.
        block_output (`str`, defaults to `"glu"`):
            Output map of each block: `"glu"` (Linear H->2H then GLU) or `"linear"` (Linear H->H).
        ssm_lr (`float`, defaults to 1e-3):
            Learning rate of the SSM parameters (A, B, P, dt), which also get no weight decay;
            `modeling.optimization.ssm_parameter_groups` reads it.
        frontend (`str`, defaults to `"mel"`):
            `"mel"`: log-mel frames computed inside the model with torchaudio (float32, on the model's
            device).
            `"conv"`: a learned strided Conv1d stack over the waveform followed by a per-frame LayerNorm.
            Both emit a frame only when its whole window lies inside the real (unpadded) samples.
        mel_bins (`int`, defaults to 64):
            Number of mel bands of the `"mel"` front-end.
        frame_length_ms (`float`, defaults to 25.0) / frame_shift_ms (`float`, defaults to 10.0):
            Window and hop of the `"mel"` front-end (the FFT size equals the window, no centring).
        mel_normalization (`str`, defaults to `"utterance"`):
            Normalisation of the log-mel (and pitch) features per band: `"utterance"` (mean/variance over the
            real frames of the clip), `"causal"` (running mean/variance over the frames so far; streamable),
            `"dataset"` (mean/variance of the training set: a BatchNorm without scale and shift over real
            frames, whose running statistics are saved with the model; streamable), `"utterance+dataset"`
            (both side by side, twice the channels: the clip's contours and, unlike per-clip statistics, its
            level and register against the training set) or `"none"`.
        pitch_features (`bool`, defaults to `True`):
            `"mel"` front-end: add two prosody channels per frame, F0 in semitones and voicing strength, from
            the normalised autocorrelation of a `pitch_window_ms` window that ends where the frame ends.
        pitch_window_ms (`float`, defaults to 40.0) / f0_min (`float`, defaults to 75.0) /
        f0_max (`float`, defaults to 500.0):
            The pitch window (at least two periods of `f0_min` and one frame) and the F0 search range in Hz.
        pooling (`str`, defaults to `"attention"`):
            How the frames become one vector, always over the real frames only: `"attention"`, a weighted mean
            with weights softmax(vᵀ tanh(W h + b)) over the frames (additive attention, as the CNN pools; W is
            d_model x d_model; ROUNDS.md, fifty-third and fifty-fourth rounds), `"mean"`, or `"mean_std"`
            (mean and standard deviation, statistics pooling as in x-vectors: how much each channel varies).
            All three stream exactly (a running softmax for `"attention"`).
        functionals_head (`bool`, defaults to `True`):
            `"mel"` front-end only (the `"conv"` front-end has none): add a linear classifier on per-clip
            functionals of the front-end's frames before normalisation (per channel, over the real frames:
            mean, standard deviation, and the mean absolute value and standard deviation of the
            frame-to-frame difference), standardised with statistics of the training set; its logits are
            added to the S4's (`branch_weights`). The classical paralinguistics recipe (openSMILE functionals
            and a linear classifier) beside the learned one. Offline only: it summarises the whole clip (the
            streaming S4 of `run_train.py --streaming` has none). A checkpoint saved before the head existed
            loads with it at zero, where it adds nothing.
        spectral_shape_functionals (`bool`, defaults to `True`):
            With `functionals_head`: also summarise eight descriptors of each frame's mel spectrum (log
            energy, centroid, spread, entropy, flatness, 85% roll-off, flux, slope), as ComParE's spectral
            low-level descriptors do; how the spectrum's shape moves is what per-band functionals miss.
            Without the head it does nothing.
        functionals (`str`, defaults to `"extended"`):
            What the functionals head computes per channel: `"basic"`, the four above; `"extended"`, 38 after
            the families of ComParE's functionals, for the contour and its frame-to-frame difference each:
            moments (mean, standard deviation, skewness, kurtosis), percentiles 1 / 25 / 50 / 75 / 99, a line
            over time (slope and the spread around it), up-level times (the share of frames above 25 / 50 / 75
            / 90 % of the range), the share of rising steps, local maxima per frame and the mean rising and
            falling step. The timing and peak functionals carry the speaking rate and the shape of the pitch
            and energy contours.
        functionals_smoothing (`bool`, defaults to `False`):
            With `"extended"`: the functionals of each channel smoothed by a 3-frame moving average and of its
            delta by regression over 2 frames either side (`modeling_s4.smoothed_contours`), as ComParE
            processes its low-level descriptors, instead of the raw channel and its frame-to-frame difference.
        functionals_mel_group (`int`, defaults to 4):
            The functionals head summarises the log-mel in bands of this many adjacent mel bands, averaged
            (16 of the default 64; the S4 still sees every band). Broader bands keep the head's cost in bounds
            with the extended functionals (38 per channel) and lost little on speech (ROUNDS.md, eighth
            round).
            Must divide `mel_bins`.
        energy_peaks_head (`bool`, defaults to `True`):
            With the functionals head: a second linear classifier beside it, on 12 functionals of the peaks
            of the smoothed RMS contour of the front-end's frames (`modeling_s4.energy_peak_functionals`:
            peaks per second, the time between them, their height, the slopes between peaks and valleys),
            ComParE's peak functionals, which carry the syllable rhythm; on its own cross-entropy and L2
            penalty (`functionals_l2`), its logits added to the head's.
        smoothed_contours_head (`bool`, defaults to `True`):
            With the functionals head on the channels as computed: a second linear classifier beside it, on
            the extended functionals of the same channels smoothed (`functionals_smoothing`'s view, the one
            the CNN's head takes), its logits added to the head's. Without the head, or with
            `functionals_smoothing` (the head then takes that view itself), it does nothing.
            It does not train: it stays at zero, adding nothing, until `training.calibration` fits it after
            training as it refits the head (its own C), so the checkpoint is the one without it. Each view
            alone suits other corpora (the nineteenth round: smoothed +0.009 on espeak, −0.024 on festival);
            both, each with its own C, gained on every corpus: +0.014 / +0.001 / +0.002 on espeak / festival /
            synthetic over 16 folds (ROUNDS.md, fortieth round).
        mfcc_head (`int`, defaults to 20):
            With the functionals head and the mel front-end: a third linear classifier in the head's branch,
            on the smoothed extended functionals of the first `mfcc_head` MFCCs of the log-mel (its DCT-II; at
            most `mel_bins` of them), the spectral envelope that the bands summarise coarsely; 0 builds none.
            Like the smoothed contours head it does not train and is fitted after training (its own C); then
            `training.calibration` keeps it only where it lowers the validation clips' cross-entropy of the
            weighted sum, and otherwise puts it back to zero. MFCCs lift festival and cost espeak (ROUNDS.md,
            thirty-first and thirty-second rounds); gated this way, 20 of them moved the fortieth round's
            defaults by +0.001 / +0.017 / −0.000 on espeak / festival / synthetic over 24 runs (forty-first
            round). The default since the forty-second round, where the heads came to share one pass of the
            functionals (`functionals_heads_logits`), which brought its cost down to 0.4-1.0 ms per 3 s clip.
        spectrum_head (`bool`, defaults to `True`):
            With the functionals head and the mel front-end: a fourth linear classifier in the head's
            branch, on the smoothed extended functionals of 15 descriptors of each frame's power spectrum
            (the front-end's own, 31.25 Hz per bin) after ComParE's spectral low-level descriptors
            (`spectrum_descriptors`: band shares, roll-offs, flux, centroid, entropy, spread, skewness,
            kurtosis, slope, sharpness, harmonicity), which the mel-scale shape descriptors summarise
            coarsely. Fitted after training and gated as the MFCC head, after it: kept only where it lowers
            the validation clips' cross-entropy of the weighted sum with the heads kept before it. Replayed on
            the fortieth round's runs beside the gated MFCC head: +0.004 / +0.010 / +0.001 on espeak /
            festival / synthetic over 24 runs (ROUNDS.md, forty-first round); trained on the leaderboard's
            partition +0.000 / +0.021 / +0.000 (forty-third round). The default since the forty-fourth round,
            where NumPy's sort of the functionals' order statistics (`sort_values`) gave the S4 the time it
            costs: with it the S4 takes 8.6-9.1 ms per 3 s clip on one thread in three quiet runs, about 1 ms
            more than before the round (README, "Speed").
        functionals_l2 (`float`, defaults to 0.2):
            The functionals head trains as a logistic regression beside the S4: on its own cross-entropy plus
            `functionals_l2 / 2 * ||W||^2` (scikit-learn's `LogisticRegression` penalty, `1 / (C * n_clips)`),
            while the S4 trains on its own cross-entropy; the returned logits are their weighted sum
            (`branch_weights`).
        branch_weights (`list[float]`, defaults to `[1.0, 1.0]`):
            With the functionals head, the logits are `branch_weights[0]` times the S4's plus
            `branch_weights[1]` times the head's. Training leaves them at 1 (each branch learns on its own
            loss); `run_train.py` then fits them on the validation set (`training.calibration`: the pair that
            minimises the cross-entropy of the weighted sum, the S4's weight shrunk towards 0 unless the
            clips give evidence for it: `--branch_network_penalty`), so that the branch that generalises
            better counts more and the scores are calibrated.
        conv_channels (`int`, defaults to 128):
            Channels of every layer of the `"conv"` front-end.
        conv_kernel_sizes (`list[int]`, defaults to `[80, 4]`) /
        conv_strides (`list[int]`, defaults to `[40, 4]`):
            Kernel sizes and strides of the `"conv"` front-end (no padding). The defaults give 10 ms frames
            with a 12.5 ms receptive field.
        dplr_kernel_length (`int`, defaults to 2048):
            `kernel="s4"` only: the length (in frames) the trained C~ = C (I - A_bar^l) refers to; the kernel
            is computed at this length and truncated, so inputs may not have more frames than this.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialisation of the Linear / Conv1d weights (not the SSM).
        sampling_rate (`int`, defaults to 16000):
            Sampling rate of `input_values`; the front-end sizes above are converted with it.
        normalize_waveform (`bool`, defaults to `False`):
            Whether the model's feature extractor scales each clip to zero mean and unit variance before the
            model sees it. `False` keeps the recording level, and with it loudness, a cue of arousal.
        num_labels / id2label / label2id:
            The emotions, as in every `PretrainedConfig`.

    A saved configuration that lacks a field whose default has changed since loads with the value it was
    trained with (`from_dict`): d_model 128, n_layers 4, no pitch channels, no spectral shape, the basic
    functionals of every mel band, unit-variance clips, no energy peaks head, no smoothed contours head, no
    MFCC head.
    """

    model_type = "ser-s4"

    def __init__(
        self,
        d_model: int = 64,
        n_layers: int = 2,
        d_state: int = 64,
        kernel: str = "s4d",
        init: str = "lin",
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        bidirectional: bool = True,
        dropout: float = 0.1,
        block_output: str = "glu",
        ssm_lr: float = 1e-3,
        frontend: str = "mel",
        mel_bins: int = 64,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        mel_normalization: str = "utterance",
        pitch_features: bool = True,
        pitch_window_ms: float = 40.0,
        f0_min: float = 75.0,
        f0_max: float = 500.0,
        pooling: str = "attention",
        functionals_head: bool = True,
        spectral_shape_functionals: bool = True,
        energy_peaks_head: bool = True,
        smoothed_contours_head: bool = True,
        mfcc_head: int = 20,
        spectrum_head: bool = True,
        functionals: str = "extended",
        functionals_mel_group: int = 4,
        functionals_smoothing: bool = False,
        functionals_l2: float = 0.2,
        branch_weights: list[float] | tuple[float, float] = (1.0, 1.0),
        conv_channels: int = 128,
        conv_kernel_sizes: list[int] | tuple[int, ...] = (80, 4),
        conv_strides: list[int] | tuple[int, ...] = (40, 4),
        dplr_kernel_length: int = 2048,
        initializer_range: float = 0.02,
        sampling_rate: int = 16000,
        normalize_waveform: bool = False,
        **kwargs,
    ):
        for name, value, allowed in (
            ("kernel", kernel, _KERNELS),
            ("init", init, _INITS),
            ("discretization", discretization, _DISCRETIZATIONS),
            ("frontend", frontend, _FRONTENDS),
            ("mel_normalization", mel_normalization, _MEL_NORMALIZATIONS),
            ("block_output", block_output, _BLOCK_OUTPUTS),
            ("pooling", pooling, _POOLINGS),
            ("functionals", functionals, _FUNCTIONALS),
        ):
            if value not in allowed:
                raise ValueError(f"S4Config: {name}={value!r} is not one of {allowed}")
        if d_state < 2 or d_state % 2:
            raise ValueError(
                f"S4Config: d_state={d_state} must be even and >= 2 (states come in conjugate pairs)"
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"S4Config: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if len(conv_kernel_sizes) != len(conv_strides) or not conv_kernel_sizes:
            raise ValueError(
                f"S4Config: conv_kernel_sizes {list(conv_kernel_sizes)} and conv_strides "
                f"{list(conv_strides)} must be non-empty and of the same length"
            )
        if not 0 < f0_min < f0_max <= sampling_rate / 2:
            raise ValueError(f"S4Config: need 0 < f0_min < f0_max <= Nyquist, got {f0_min}, {f0_max}")
        if pitch_features and not 2000 / f0_min <= pitch_window_ms >= frame_length_ms:
            raise ValueError(
                f"S4Config: pitch_window_ms={pitch_window_ms} must hold two periods of f0_min ({f0_min} Hz) "
                f"and the frame: give at least {max(2000 / f0_min, frame_length_ms):.1f}"
            )
        if functionals_mel_group < 1 or mel_bins % functionals_mel_group:
            raise ValueError(
                f"S4Config: functionals_mel_group={functionals_mel_group} must divide mel_bins={mel_bins} "
                "(the functionals head averages groups of adjacent bands); give a divisor, 1 for every band"
            )
        if mfcc_head < 0:
            raise ValueError(
                f"S4Config: mfcc_head={mfcc_head}: give a number of MFCCs, or 0 for no MFCC head"
            )
        if len(branch_weights) != 2 or not all(0.0 <= w < float("inf") for w in branch_weights):
            raise ValueError(
                f"S4Config: branch_weights={branch_weights!r}: give two finite weights >= 0 (S4, head)"
            )
        if frame_shift_ms > frame_length_ms:
            raise ValueError(
                f"S4Config: frame_shift_ms={frame_shift_ms} exceeds frame_length_ms={frame_length_ms}: "
                "samples between frames would be ignored"
            )
        self.d_model = d_model
        self.n_layers = n_layers
        self.d_state = d_state
        self.kernel = kernel
        self.init = init
        self.discretization = discretization
        self.dt_min = dt_min
        self.dt_max = dt_max
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.block_output = block_output
        self.ssm_lr = ssm_lr
        self.frontend = frontend
        self.mel_bins = mel_bins
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.mel_normalization = mel_normalization
        self.pitch_features = pitch_features
        self.pitch_window_ms = pitch_window_ms
        self.f0_min = f0_min
        self.f0_max = f0_max
        self.pooling = pooling
        self.functionals_head = functionals_head
        self.spectral_shape_functionals = spectral_shape_functionals
        self.energy_peaks_head = energy_peaks_head
        self.smoothed_contours_head = smoothed_contours_head
        self.mfcc_head = mfcc_head
        self.spectrum_head = spectrum_head
        self.functionals = functionals
        self.functionals_mel_group = functionals_mel_group
        self.functionals_smoothing = functionals_smoothing
        self.functionals_l2 = functionals_l2
        self.branch_weights = [float(w) for w in branch_weights]
        self.conv_channels = conv_channels
        self.conv_kernel_sizes = list(conv_kernel_sizes)
        self.conv_strides = list(conv_strides)
        self.dplr_kernel_length = dplr_kernel_length
        self.initializer_range = initializer_range
        self.sampling_rate = sampling_rate
        self.normalize_waveform = normalize_waveform
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # A saved configuration lacking a field whose default has changed was trained with the old value.
        return super().from_dict({**EARLIER_DEFAULTS, **config_dict}, **kwargs)


__all__ = ["EARLIER_DEFAULTS", "S4Config"]
