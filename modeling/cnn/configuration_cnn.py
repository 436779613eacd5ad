"""Configuration of the attention CNN after Alsabhan (Sensors 2023, 23(3):1386)."""

from __future__ import annotations

from transformers import PretrainedConfig

# Channels of `modeling_cnn.spectrum_descriptors`.
NUM_SPECTRUM_DESCRIPTORS = 15

# Defaults before the tenth round (the first three), the twelfth (the next two), the twentieth, the
# thirty-ninth and the forty-fifth (the last), for configurations saved before a field existed
# (`CNNConfig.from_dict`).
EARLIER_DEFAULTS = {
    "pitch_features": False,
    "functionals_head": False,
    "functionals": "basic",
    "functionals_mel_group": None,
    "spectral_shape_functionals": False,
    "functionals_smoothing": False,
    "raw_contours_head": False,
    "spectrum_head": False,
}


class CNNConfig(PretrainedConfig):
    r"""Configuration of [`CNNForAudioClassification`]: frame features, a 1-D CNN, attention pooling.

    Front-end (inside the model, so a saved model takes raw 16 kHz audio):

    Args:
        sampling_rate (`int`, defaults to 16000): sampling rate of `input_values`.
        normalize_waveform (`bool`, defaults to `False`): whether the model's feature extractor scales each
            clip to zero mean and unit variance before the model sees it. `False` keeps the recording level,
            and with it loudness, a cue of arousal (what openSMILE's loudness features measure).
        win_length (`int`, defaults to 400): analysis window in samples (25 ms). Also the FFT size, so a frame
            covers exactly `win_length` samples.
        hop_length (`int`, defaults to 160): frame step in samples (10 ms).
        n_mfcc (`int`, defaults to 40): MFCCs per frame. With zero-crossing rate and RMS energy the front-end
            gives `n_mfcc + 2` channels per frame, and 2 more with `pitch_features`.
        n_mels (`int`, defaults to 64): mel bands the MFCCs are computed from (must be >= `n_mfcc`).
        f_min (`float`, defaults to 0.0) and f_max (`float`, defaults to 8000.0): mel filterbank range in Hz.
        pitch_features (`bool`, defaults to `True`): add two prosody channels per frame, the fundamental
            frequency in semitones and the voicing strength, from the normalised autocorrelation of a
            `pitch_win_length` window (what eGeMAPS and ComParE carry and MFCCs drop).
        pitch_win_length (`int`, defaults to 640): the pitch analysis window in samples (40 ms: three periods
            of `f0_min`), ending where the frame ends.
        f0_min (`float`, defaults to 75.0) and f0_max (`float`, defaults to 500.0): the F0 search range in Hz.
        feature_normalization (`str`, defaults to `"dataset"`): `"utterance"` standardises each channel to
            zero mean and unit variance over the clip's real frames; `"utterance_mean"` only subtracts the
            mean (cepstral mean normalisation); `"dataset"` standardises each channel with statistics of the
            training set (a BatchNorm without scale and shift over real frames, whose running statistics are
            saved with the model, like the paper's scaler); `"none"` leaves the features as computed. Why:
            see the modeling file's docstring.

    Body:

    Args:
        conv_channels (`list[int]`, defaults to `[64, 128, 256, 256]`): output channels of the conv blocks,
            one block per entry. Each block halves the number of frames.
        conv_kernel_size (`int`, defaults to 5): kernel of every Conv1d (odd, "same" padding).
        norm_type (`str`, defaults to `"batch"`): normalisation inside each block. `"batch"`: BatchNorm1d
            whose statistics are taken over the real frames only (masked BatchNorm), as in the paper; with
            LayerNorm (`"layer"`: over the channels of each frame) the CNN stayed at chance for epochs on the
            development corpora (README, "Leaderboard of the development corpora").
        use_lstm (`bool`, defaults to `False`): a bidirectional LSTM after the conv blocks.
        lstm_hidden_size (`int`, defaults to 128): hidden size per direction of that LSTM.
        attention_size (`int`, defaults to 128): size of the additive attention's hidden layer.
        pooling (`str`, defaults to `"attention"`): how the frames become one vector. `"attention"`: additive
            attention (a weighted mean). `"attention_stats"`: the attention's weighted mean beside the mean
            and standard deviation over the real frames (statistics pooling, as in x-vectors), which keeps how
            much each channel varies over the clip.
        classifier_hidden_size (`int`, defaults to 128): width of the dense layer before the logits.
        conv_dropout (`float`, defaults to 0.1): dropout at the end of each conv block.
        classifier_dropout (`float`, defaults to 0.3): dropout after the dense layer.
        time_masks (`int`, defaults to 0) and time_mask_width (`int`, defaults to 20): in training only,
            SpecAugment's time masking: this many spans of up to `time_mask_width` frames of the normalised
            features set to 0.
        feature_masks (`int`, defaults to 0) and feature_mask_width (`int`, defaults to 8): in training only,
            this many bands of up to `feature_mask_width` feature channels set to 0.
        functionals_head (`bool`, defaults to `True`): add a linear classifier on per-clip functionals of the
            front-end's frame features (per channel, over the real frames: mean, standard deviation, and the
            mean absolute value and standard deviation of the frame-to-frame difference), standardised with
            statistics of the training set; its logits are added to the CNN's (`branch_weights`). The
            classical paralinguistics recipe (openSMILE functionals and a linear classifier) beside the
            learned one.
        functionals (`str`, defaults to `"extended"`): what the functionals head computes per channel:
            `"basic"`, the four above; `"extended"`, 38 after the families of ComParE's functionals (moments,
            percentiles, a line over time, up-level times, rise time, peaks, rising and falling steps) of the
            channel and of its frame-to-frame difference (`modeling_cnn.extended_functionals`).
        functionals_smoothing (`bool`, defaults to `True`): with `"extended"`, the functionals are of each
            channel smoothed by a 3-frame moving average and of its delta by regression over 2 frames either
            side (`modeling_cnn.smoothed_contours`), as ComParE processes its low-level descriptors, instead
            of the raw channel and its frame-to-frame difference, which at a 10 ms hop is noisy.
        functionals_mfcc (`int`, *optional*): the functionals head summarises ZCR, RMS, the pitch channels and
            only the first `functionals_mfcc` MFCCs (ComParE's functionals take MFCC 1-14), the spectral
            envelope without its fine detail: fewer functionals to estimate from a few hundred clips, and
            about half the extended head's time at 14. `None`, or a count over `n_mfcc`: all MFCCs.
        functionals_mel_group (`int`, *optional*, defaults to 4): the functionals head also summarises the
            log-mel bands the MFCCs come from, each the mean of `functionals_mel_group` adjacent bands
            (`n_mels` must be a multiple; 16 bands at the defaults): the spectral envelope band by band, as
            ComParE's auditory bands, which the MFCCs spread over every coefficient. `None`: no bands.
        spectral_shape_functionals (`bool`, defaults to `True`): the functionals head also summarises eight
            spectral-shape descriptors of each frame's log-mel (log energy, centroid, spread, entropy,
            flatness, roll-off, flux, slope: `modeling_cnn.spectral_shape`), ComParE's spectral descriptors.
        spectrum_functionals (`bool`, defaults to `False`): the functionals head also summarises 15
            descriptors of each frame's power spectrum in Hz, after ComParE's spectral low-level descriptors
            (`modeling_cnn.spectrum_descriptors`: the shares of 250-650 Hz and 1-4 kHz, the 25/50/75/90 %
            roll-off points, flux, centroid, entropy, spread, skewness, kurtosis, slope, sharpness and
            harmonicity). The shape descriptors above weigh the mel bands equally; these weigh the spectrum's
            bins, where the high frequencies span most of them and the harmonics are resolved. With seed 42
            +0.016 UAR on espeak, but over three seeds level on every development corpus (+0.002 / -0.001 /
            0.000 on espeak / festival / synthetic), so not the default (ROUNDS.md, twenty-fifth round).
        energy_peaks_head (`bool`, defaults to `False`): with `functionals_head`, a second linear classifier
            beside it, on 12 functionals of the peaks of the smoothed RMS contour (`modeling_cnn.
            energy_peak_functionals`: peaks per second, the time between them, their height, the slopes
            between peaks and valleys), ComParE's peak functionals, which carry the syllable rhythm; on its
            own cross-entropy and L2 penalty (`functionals_l2`), its logits added to the head's.
        raw_contours_head (`bool`, defaults to `True`): with `functionals_head`, a second linear classifier
            beside it on the `"extended"` functionals of the pitch, band and spectral-shape channels as
            computed (not smoothed) and of their frame-to-frame differences: the S4's head inputs, from the
            CNN's own front-end. A classifier of its own, not more columns of the head's: the two see the
            same contours through different processing, and kept apart each is fitted with its own penalty.
            It is fitted after training only (`training.calibration`, as the functionals head is refitted,
            with its own C), and until then it is zero and frozen, adding nothing, so training and its
            early stopping go as without it; its logits are added to the head's. Trained beside the network
            it moved the checkpoint that early stopping kept and lost on espeak (ROUNDS.md, thirty-eighth
            round); fitted after training it gains on every development corpus (+0.001 / +0.003 / +0.015
            over 48 runs per corpus) for 0.8 to 1.6 ms per clip (ROUNDS.md, thirty-ninth round).
        spectrum_head (`bool`, defaults to `True`): with `functionals_head`, a third linear classifier in the
            head's branch, on the smoothed `"extended"` functionals of the 15 `spectrum_descriptors` (see
            `spectrum_functionals`) of each frame's power spectrum with the frame zero-padded to the next
            power of two (512 points at the defaults, 31.25 Hz per bin: the S4's spectrum, whose finer bins
            the replay below measured; the front-end's own 400-point spectrum gained less on festival).
            Like the raw contours head it is fitted after training only and zero until then; then
            `training.calibration` keeps it only where it lowers the validation clips' cross-entropy of the
            weighted sum, and otherwise puts it back to zero, as the S4's spectrum head. Replayed on the
            thirty-ninth round's runs: +0.005 / +0.004 / +0.001 on espeak / festival / synthetic over 16
            folds, +0.008 / +0.001 / +0.001 over 24 runs (ROUNDS.md, forty-third and forty-fourth rounds);
            trained on the leaderboard's partition +0.008 / +0.002 / +0.000. The default since the
            forty-fifth round, with faster descriptors: it costs the CNN 1.8 to 2.5 ms per 3 s clip (best
            calls), and with it the CNN takes 8.3 to 9.0 ms (medians of five runs on a quiet machine, one
            thread; best calls 7.4 to 9.4 ms on a busy one; README, "Speed"). In the forty-fourth round, with
            slower descriptors and measured on a busy machine, its best calls reached the 10 ms goal and it
            was an option.
        functionals_l2 (`float`, defaults to 0.2): the functionals head trains as a logistic regression
            beside the CNN: on its own cross-entropy plus `functionals_l2 / 2 * ||W||^2` (the L2 penalty of
            scikit-learn's `LogisticRegression`, `1 / (C * n_clips)`), while the CNN trains on its own
            cross-entropy; the returned logits are their weighted sum (`branch_weights`).
        branch_weights (`list[float]`, defaults to `[1.0, 1.0]`): with `functionals_head`, the logits are
            `branch_weights[0]` times the CNN's plus `branch_weights[1]` times the head's. Training leaves
            them at 1 (each branch learns on its own loss); `run_train.py` then fits them on the validation
            set (`training.calibration`: the pair that minimises the cross-entropy of the weighted sum), so
            that the branch that generalises better counts more and the scores are calibrated.

    Labels: `num_labels`, `id2label`, `label2id` as in every `PretrainedConfig`.
    """

    model_type = "ser-cnn"

    def __init__(
        self,
        sampling_rate: int = 16000,
        normalize_waveform: bool = False,
        win_length: int = 400,
        hop_length: int = 160,
        n_mfcc: int = 40,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float = 8000.0,
        pitch_features: bool = True,
        pitch_win_length: int = 640,
        f0_min: float = 75.0,
        f0_max: float = 500.0,
        feature_normalization: str = "dataset",
        conv_channels: list[int] | tuple[int, ...] = (64, 128, 256, 256),
        conv_kernel_size: int = 5,
        norm_type: str = "batch",
        use_lstm: bool = False,
        lstm_hidden_size: int = 128,
        attention_size: int = 128,
        pooling: str = "attention",
        classifier_hidden_size: int = 128,
        conv_dropout: float = 0.1,
        classifier_dropout: float = 0.3,
        time_masks: int = 0,
        time_mask_width: int = 20,
        feature_masks: int = 0,
        feature_mask_width: int = 8,
        functionals_head: bool = True,
        functionals: str = "extended",
        functionals_l2: float = 0.2,
        functionals_mfcc: int | None = None,
        functionals_mel_group: int | None = 4,
        spectral_shape_functionals: bool = True,
        spectrum_functionals: bool = False,
        functionals_smoothing: bool = True,
        energy_peaks_head: bool = False,
        raw_contours_head: bool = True,
        spectrum_head: bool = True,
        branch_weights: list[float] | tuple[float, float] = (1.0, 1.0),
        **kwargs,
    ):
        if feature_normalization not in ("utterance", "utterance_mean", "dataset", "none"):
            raise ValueError(
                f"feature_normalization: {feature_normalization!r}; "
                "choose 'utterance', 'utterance_mean', 'dataset' or 'none'"
            )
        if pooling not in ("attention", "attention_stats"):
            raise ValueError(f"pooling: {pooling!r}; choose 'attention' or 'attention_stats'")
        if not 0 < f0_min < f0_max <= sampling_rate / 2:
            raise ValueError(f"f0_min ({f0_min}) and f0_max ({f0_max}): need 0 < f0_min < f0_max <= Nyquist")
        if pitch_features and not 2 * sampling_rate / f0_min <= pitch_win_length >= win_length:
            raise ValueError(
                f"pitch_win_length ({pitch_win_length}) must hold two periods of f0_min ({f0_min} Hz) and "
                f"the frame: give at least {max(int(2 * sampling_rate / f0_min) + 1, win_length)} samples"
            )
        if functionals not in ("basic", "extended"):
            raise ValueError(f"functionals: {functionals!r}; choose 'basic' or 'extended'")
        if functionals_mfcc is not None and functionals_mfcc < 0:
            raise ValueError(f"functionals_mfcc ({functionals_mfcc}): give a count >= 0 (None: all MFCCs)")
        if functionals_mel_group is not None and not (
            functionals_mel_group > 0 and n_mels % functionals_mel_group == 0
        ):
            raise ValueError(
                f"functionals_mel_group ({functionals_mel_group}): give a divisor of n_mels ({n_mels}), "
                "e.g. 4, or None for no bands"
            )
        if len(branch_weights) != 2 or not all(0.0 <= w < float("inf") for w in branch_weights):
            raise ValueError(f"branch_weights: {branch_weights!r}; give two finite weights >= 0 (CNN, head)")
        if norm_type not in ("layer", "batch"):
            raise ValueError(f"norm_type: {norm_type!r}; choose 'layer' or 'batch'")
        if conv_kernel_size % 2 != 1:
            raise ValueError(f"conv_kernel_size: {conv_kernel_size} must be odd ('same' padding)")
        if not conv_channels:
            raise ValueError("conv_channels: give at least one conv block, e.g. [64, 128, 256, 256]")
        if n_mels < n_mfcc:
            raise ValueError(f"n_mels ({n_mels}) must be >= n_mfcc ({n_mfcc})")
        self.sampling_rate = sampling_rate
        self.normalize_waveform = normalize_waveform
        self.win_length = win_length
        self.hop_length = hop_length
        self.n_mfcc = n_mfcc
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.pitch_features = pitch_features
        self.pitch_win_length = pitch_win_length
        self.f0_min = f0_min
        self.f0_max = f0_max
        self.feature_normalization = feature_normalization
        self.conv_channels = list(conv_channels)
        self.conv_kernel_size = conv_kernel_size
        self.norm_type = norm_type
        self.use_lstm = use_lstm
        self.lstm_hidden_size = lstm_hidden_size
        self.attention_size = attention_size
        self.pooling = pooling
        self.classifier_hidden_size = classifier_hidden_size
        self.conv_dropout = conv_dropout
        self.classifier_dropout = classifier_dropout
        self.time_masks = time_masks
        self.time_mask_width = time_mask_width
        self.feature_masks = feature_masks
        self.feature_mask_width = feature_mask_width
        self.functionals_head = functionals_head
        self.functionals = functionals
        self.functionals_l2 = functionals_l2
        self.functionals_mfcc = functionals_mfcc
        self.functionals_mel_group = functionals_mel_group
        self.spectral_shape_functionals = spectral_shape_functionals
        self.spectrum_functionals = spectrum_functionals
        self.functionals_smoothing = functionals_smoothing
        self.energy_peaks_head = energy_peaks_head
        self.raw_contours_head = raw_contours_head
        self.spectrum_head = spectrum_head
        self.branch_weights = [float(w) for w in branch_weights]
        super().__init__(**kwargs)

    @property
    def num_features(self) -> int:
        """Channels per frame out of the front-end: ZCR, RMS, the MFCCs (and F0 and voicing)."""
        return self.n_mfcc + 2 + (2 if self.pitch_features else 0)

    @property
    def num_functionals_mfcc(self) -> int:
        """MFCCs the functionals head summarises: the first `functionals_mfcc` (all without it)."""
        return self.n_mfcc if self.functionals_mfcc is None else min(self.functionals_mfcc, self.n_mfcc)

    @property
    def num_functionals_channels(self) -> int:
        """Channels the functionals head summarises: ZCR, RMS, its MFCCs (and F0 and voicing, the grouped
        log-mel bands, the spectral-shape and the spectrum descriptors)."""
        bands = 0 if self.functionals_mel_group is None else self.n_mels // self.functionals_mel_group
        shape = 8 if self.spectral_shape_functionals else 0
        spectrum = NUM_SPECTRUM_DESCRIPTORS if self.spectrum_functionals else 0
        return self.num_functionals_mfcc + 2 + (2 if self.pitch_features else 0) + bands + shape + spectrum

    @property
    def num_raw_contour_channels(self) -> int:
        """Channels the raw contours head summarises: F0 and voicing, the grouped log-mel bands and the
        spectral-shape descriptors, as far as the functionals head has them."""
        bands = 0 if self.functionals_mel_group is None else self.n_mels // self.functionals_mel_group
        return (2 if self.pitch_features else 0) + bands + (8 if self.spectral_shape_functionals else 0)

    @property
    def spectrum_head_n_fft(self) -> int:
        """FFT points of the spectrum head's power spectrum: `win_length` rounded up to a power of two."""
        return 1 << (self.win_length - 1).bit_length()

    @property
    def min_input_samples(self) -> int:
        """Shortest clip that leaves at least one frame after every conv block's pooling."""
        min_frames = 2 ** len(self.conv_channels)
        return self.win_length + (min_frames - 1) * self.hop_length

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # A saved configuration lacking a field whose default has changed was trained with the old value.
        return super().from_dict({**EARLIER_DEFAULTS, **config_dict}, **kwargs)


__all__ = ["EARLIER_DEFAULTS", "CNNConfig"]
