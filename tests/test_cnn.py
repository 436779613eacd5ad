"""The attention CNN's own parts: front-end features, masking, masked BatchNorm, config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from modeling.auto import feature_extractor_for
from modeling.cnn import CNNConfig, CNNForAudioClassification
from modeling.cnn.modeling_cnn import (
    AdditiveAttentionPooling,
    CNNFrameFeatures,
    FunctionalsHead,
    MaskedBatchNorm1d,
    PitchTracker,
    contour_functionals,
    energy_peak_functionals,
    extended_functionals,
    functionals_heads_logits,
    joint_extended_functionals,
    masked_mean_std,
    smoothed_contours,
    sort_values,
    spectral_harmonicity,
    spectral_shape,
    spectrum_descriptors,
    utterance_functionals,
)

SR = 16000


def tiny_config(**overrides) -> CNNConfig:
    sizes = {"conv_channels": [8, 8, 8, 8], "attention_size": 8, "classifier_hidden_size": 8, "num_labels": 3}
    return CNNConfig(**{**sizes, **overrides})


def test_frames_lie_fully_inside_the_clip():
    features = CNNFrameFeatures(tiny_config())
    assert features.num_frames(torch.tensor([399, 400, 559, 560, 48000])).tolist() == [0, 1, 1, 2, 298]
    out = features(torch.randn(2, 48000), torch.ones(2, 298, dtype=torch.bool))
    assert out.shape == (2, 44, 298)  # ZCR, RMS, 40 MFCCs, F0, voicing


def test_mfcc_channels_are_torchaudios_mfcc():
    """The same numbers as torchaudio.transforms.MFCC with log_mels and no centring, whose power spectrum
    is computed its own way (the model's is a complex product)."""
    features = CNNFrameFeatures(tiny_config(feature_normalization="none"))
    clip = torch.randn(2, 16000)
    reference = torchaudio.transforms.MFCC(
        SR,
        n_mfcc=40,
        log_mels=True,
        melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 64, "center": False, "f_max": 8000.0},
    )(clip)
    torch.testing.assert_close(features.extract(clip)[:, 2:42], reference, atol=1e-4, rtol=1e-5)


def test_zcr_and_rms_channels():
    features = CNNFrameFeatures(tiny_config(feature_normalization="none"))
    alternating = torch.tensor([0.5, -0.5]).repeat(800)[None]  # a sign change at every sample
    constant = torch.full((1, 1600), 0.25)
    zcr_rms = features(torch.cat([alternating, constant]), torch.ones(2, 8, dtype=torch.bool))[:, :2]
    assert torch.allclose(zcr_rms[0, 0], torch.ones(8)) and torch.allclose(zcr_rms[1, 0], torch.zeros(8))
    assert torch.allclose(zcr_rms[0, 1], torch.full((8,), 0.5)) and torch.allclose(
        zcr_rms[1, 1], torch.full((8,), 0.25)
    )


def test_utterance_normalisation_uses_real_frames_only():
    features = CNNFrameFeatures(tiny_config(feature_normalization="utterance"))
    clip = torch.randn(1, 8000)
    alone = features(clip, torch.ones(1, 48, dtype=torch.bool))
    padded = torch.cat([clip, 3 * torch.randn(1, 4000)], dim=1)  # loud garbage after the clip
    mask = torch.arange(73)[None] < 48
    with_padding = features(padded, mask)[..., :48]
    assert torch.allclose(alone, with_padding, atol=1e-4)
    assert torch.allclose(alone.mean(-1), torch.zeros(44), atol=1e-4)
    # ZCR and RMS vary little, so the 1e-5 added to their variance shows; the MFCCs come out at unit variance.
    assert torch.allclose(alone.std(-1, unbiased=False)[0, :2], torch.ones(2), atol=3e-2)
    assert torch.allclose(alone.std(-1, unbiased=False)[0, 2:42], torch.ones(40), atol=1e-3)


PROSODY = {
    "feature_normalization": "dataset",
    "pitch_features": True,
    "pooling": "attention_stats",
    "norm_type": "batch",
    "time_masks": 2,
    "feature_masks": 2,
}


FUNCTIONALS = {"norm_type": "batch", "pitch_features": True, "functionals_head": True}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"norm_type": "batch", "use_lstm": True, "lstm_hidden_size": 4},
        PROSODY,
        FUNCTIONALS,
        {**FUNCTIONALS, "functionals": "extended", "functionals_mfcc": 3},
        {**FUNCTIONALS, "energy_peaks_head": True},
        {**FUNCTIONALS, "functionals_smoothing": False},
        {**FUNCTIONALS, "functionals": "extended", "raw_contours_head": True},
        {**FUNCTIONALS, "functionals": "extended", "spectrum_head": True},
    ],
)
def test_garbage_in_the_padding_never_changes_a_prediction(overrides):
    """Stronger than zero padding: whatever the padded samples hold, the logits stay the same."""
    torch.manual_seed(0)
    model = CNNForAudioClassification(tiny_config(**overrides))
    heads = (model.functionals_head, model.energy_peaks_head, model.raw_contours_head, model.spectrum_head)
    for head in heads:
        if head is not None:  # it starts at zero, where padding could not show
            torch.nn.init.normal_(head.weight, std=0.05)
    if overrides.get("norm_type") == "batch":  # give the running statistics something other than 0/1
        model.train()
        model(torch.randn(4, 8000))
    model.eval()
    lengths = [8000, 5123, 2800]
    batch = torch.randn(3, 8000) * 5
    mask = (torch.arange(8000)[None] < torch.tensor(lengths)[:, None]).long()
    with torch.no_grad():
        batched = model(batch, attention_mask=mask).logits
        for i, length in enumerate(lengths):
            alone = model(batch[i : i + 1, :length]).logits[0]
            assert torch.allclose(batched[i], alone, atol=1e-4), (i, batched[i], alone)


def test_pitch_tracker_finds_the_fundamental_not_an_octave_below():
    """Harmonic tones at known F0 (low male to high female): F0 within a semitone's 1/10 and voicing near 1;
    white noise has no pitch (low voicing). A periodic signal correlates as well at twice its period, so
    without the octave cost 150 Hz came out as 75 Hz."""
    tracker = PitchTracker(16000, 400, 160, 640, 75.0, 500.0)
    t = torch.arange(16000) / 16000
    for f0 in (80.0, 150.0, 220.0, 400.0):
        tone = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in (1, 2, 3))[None]
        semitones, voicing = tracker(tone, 98)[0, 4:].T  # the first frames look back on zeros
        estimate = 75.0 * 2 ** (semitones.median() / 12)
        assert abs(12 * torch.log2(estimate / f0)) < 0.1, (f0, estimate)
        assert voicing.median() > 0.95
    noise = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
    assert tracker(noise, 98)[0, :, 1].median() < 0.4


def test_pitch_window_looks_back_so_padding_and_later_samples_cannot_reach_it():
    tracker = PitchTracker(16000, 400, 160, 640, 75.0, 500.0)
    clip = torch.randn(1, 4000)
    frames = (4000 - 400) // 160 + 1
    alone = tracker(clip, frames)
    extended = tracker(torch.cat([clip, 10 * torch.randn(1, 3000)], dim=-1), frames)
    assert torch.equal(alone, extended)
    # A stream's past (`history`) stands where the zeros before the clip would be.
    past = torch.randn(1, 480)  # three hops
    continued = tracker(torch.cat([past, clip], dim=-1), frames + 3)[:, 3:]
    assert torch.allclose(tracker(clip, frames, history=past[:, 240:]), continued, atol=1e-5)


def test_dataset_normalisation_learns_the_training_set_statistics():
    """feature_normalization="dataset": the scaler's statistics are the cumulative mean and variance of the
    real frames of every training batch (momentum None), applied unchanged in eval."""
    features = CNNFrameFeatures(tiny_config(feature_normalization="dataset"))
    raw = CNNFrameFeatures(tiny_config(feature_normalization="none"))
    features.train()
    batches = [torch.randn(2, 8000) * scale for scale in (0.5, 1.0, 2.0)]
    mask = torch.ones(2, 48, dtype=torch.bool)
    for batch in batches:
        features(batch, mask)
    frames = torch.cat([raw(batch, mask) for batch in batches], dim=0)
    per_batch_mean = torch.stack([raw(batch, mask).mean((0, 2)) for batch in batches])
    assert torch.allclose(features.dataset_norm.running_mean, per_batch_mean.mean(0), atol=1e-4)
    features.eval()
    expected = (frames[:2] - features.dataset_norm.running_mean[:, None]) / torch.sqrt(
        features.dataset_norm.running_var[:, None] + features.dataset_norm.eps
    )
    assert torch.allclose(features(batches[0], mask), expected, atol=1e-4)


def test_spec_augment_masks_in_training_only():
    torch.manual_seed(0)
    model = CNNForAudioClassification(
        tiny_config(time_masks=2, feature_masks=2, conv_dropout=0.0, classifier_dropout=0.0)
    )
    clip = torch.randn(2, 8000)
    model.train()
    first, second = model(clip).logits, model(clip).logits
    assert not torch.allclose(first, second)  # a new mask every step
    model.eval()
    assert torch.equal(model(clip).logits, model(clip).logits)


def test_statistics_pooling_feeds_mean_and_std_to_the_classifier():
    model = CNNForAudioClassification(tiny_config(pooling="attention_stats"))
    assert model.classifier[0].in_features == 3 * 8
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    mean, std = masked_mean_std(hidden, mask)
    assert torch.allclose(mean[1], hidden[1, :3].mean(0), atol=1e-6)
    assert torch.allclose(std[1], hidden[1, :3].std(0, unbiased=False), atol=1e-3)


def test_utterance_functionals_summarise_the_real_frames_only():
    torch.manual_seed(0)
    features = torch.randn(2, 9, 3)
    features[1, 6:] = 1e6  # padding
    mask = torch.arange(9)[None] < torch.tensor([[9], [6]])
    functionals = utterance_functionals(features, mask)
    assert functionals.shape == (2, 12)
    real = features[1, :6].double().numpy()
    delta = np.diff(real, axis=0)
    expected = np.concatenate([real.mean(0), real.std(0), np.abs(delta).mean(0), delta.std(0)])
    np.testing.assert_allclose(functionals[1].numpy(), expected, atol=1e-3)


def test_extended_functionals_of_a_ramp():
    """x_t = t over 11 frames: every order statistic, slope and timing functional is known."""
    ramp = torch.arange(11.0)[None, :, None]
    values = extended_functionals(ramp, torch.ones(1, 11, dtype=torch.bool))[0]
    assert values.shape == (38,)
    of_x, of_delta = values[:19], values[19:]
    mean, std, skewness, kurtosis, p1, p25, p50, p75, p99, slope, residual = of_x[:11]
    torch.testing.assert_close(mean, torch.tensor(5.0))
    torch.testing.assert_close(std, torch.tensor(10.0).sqrt(), atol=1e-5, rtol=0)
    torch.testing.assert_close(skewness, torch.tensor(0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(kurtosis, torch.tensor(-1.22), atol=1e-5, rtol=0)  # uniform: -6/5 (n+1)/(n-1)
    torch.testing.assert_close(torch.stack([p1, p25, p50, p75, p99]), torch.tensor([0.1, 2.5, 5.0, 7.5, 9.9]))
    torch.testing.assert_close(slope, torch.tensor(5.0))  # 10 units over time -1..1
    torch.testing.assert_close(residual, torch.tensor(0.0), atol=1e-2, rtol=0)  # sqrt of the 1e-5 floor
    uplevel, rise_time, peak_rate, rising, falling = of_x[11:15], of_x[15], of_x[16], of_x[17], of_x[18]
    # Frames above 2.5, 5, 7.5, 9; a frame on the level (5 and 9) counts half.
    torch.testing.assert_close(uplevel, torch.tensor([8, 5.5, 3, 1.5]) / 11.0)
    assert rise_time == 1 and peak_rate == 0 and rising == 1 and falling == 0
    # The difference of a ramp is constant: no spread, no rise, no peak.
    assert of_delta[0] == 1 and of_delta[2] == 0 and of_delta[15] == 0 and of_delta[16] == 0


def test_extended_functionals_summarise_the_real_frames_only():
    """Against numpy / scipy on the real frames of a padded clip (padding 1e6 must not show)."""
    from scipy.stats import kurtosis, skew

    torch.manual_seed(0)
    features = torch.randn(2, 40, 3, dtype=torch.float64).cumsum(1)
    features[1, 25:] = 1e6
    mask = torch.arange(40)[None] < torch.tensor([[40], [25]])
    values = extended_functionals(features, mask)[1].reshape(38, 3).numpy()
    for contour, got in (
        (features[1, :25].numpy(), values[:19]),
        (np.diff(features[1, :25].numpy(), axis=0), values[19:]),
    ):
        time = np.linspace(-1, 1, len(contour))
        slope = np.polyfit(time, contour, 1)[0]
        span = contour.max(0) - contour.min(0)
        level = (contour - contour.min(0)) / span
        steps = np.diff(contour, axis=0)
        # Soft counts: ramps 2 % of the range wide around each level, 1 % of it from a step of 0.
        rising, falling = np.clip(steps / (0.01 * span), 0, 1), np.clip(-steps / (0.01 * span), 0, 1)
        peaks = rising[:-1] * (1 - rising[1:])
        expected = [
            contour.mean(0),
            contour.std(0),
            skew(contour, axis=0),
            kurtosis(contour, axis=0),
            *np.percentile(contour, [1, 25, 50, 75, 99], axis=0),
            slope,
            (contour - contour.mean(0) - slope * time[:, None]).std(0),
            *[np.clip((level - share) / 0.02 + 0.5, 0, 1).mean(0) for share in (0.25, 0.5, 0.75, 0.9)],
            rising.mean(0),
            peaks.sum(0) / len(contour),
            np.where(steps > 0, steps, 0).sum(0) / np.maximum(rising.sum(0), 1),
            np.where(steps < 0, steps, 0).sum(0) / np.maximum(falling.sum(0), 1),
        ]
        np.testing.assert_allclose(got, np.stack(expected), atol=1e-3)


def test_smoothed_contours_are_compares_moving_average_and_regression_delta_of_the_real_frames():
    """Against numpy on the real frames of a padded clip (padding 1e6 must not show): a 3-frame moving
    average and the delta (sum_k k (s[t+k] - s[t-k])) / (2 sum_k k^2) over k = 1, 2, end frames repeated."""
    torch.manual_seed(0)
    contours = torch.randn(2, 3, 12, dtype=torch.float64).cumsum(-1)
    contours[1, :, 7:] = 1e6
    mask = torch.arange(12)[None] < torch.tensor([[12], [7]])
    smooth, delta = smoothed_contours(contours, mask)
    for row, length in ((0, 12), (1, 7)):
        real = contours[row, :, :length].numpy()
        padded = np.pad(real, ((0, 0), (1, 1)), mode="edge")
        expected_smooth = (padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3
        s = np.pad(expected_smooth, ((0, 0), (2, 2)), mode="edge")
        expected_delta = (s[:, 3:-1] - s[:, 1:-3] + 2 * (s[:, 4:] - s[:, :-4])) / 10
        np.testing.assert_allclose(smooth[row, :, :length].numpy(), expected_smooth)
        np.testing.assert_allclose(delta[row, :, :length].numpy(), expected_delta)
    # A ramp keeps its inner frames and has slope 1 away from its ends.
    smooth, delta = smoothed_contours(torch.arange(11.0)[None, None], torch.ones(1, 11, dtype=torch.bool))
    torch.testing.assert_close(smooth[0, 0, 1:-1], torch.arange(1.0, 10.0))
    torch.testing.assert_close(delta[0, 0, 3:-3], torch.ones(5))


def test_smoothed_extended_functionals_are_the_functionals_of_the_smoothed_contours():
    """The 19 of the smoothed channel, then the 19 of its regression delta over every real frame (the raw
    difference has one frame fewer); padding does not show."""
    torch.manual_seed(0)
    features = torch.randn(2, 30, 3, dtype=torch.float64).cumsum(1)
    features[1, 20:] = 1e6
    mask = torch.arange(30)[None] < torch.tensor([[30], [20]])
    values = extended_functionals(features, mask, smoothing=True)
    alone = extended_functionals(features[1:, :20], mask[1:, :20], smoothing=True)
    torch.testing.assert_close(values[1:], alone)
    smooth, delta = smoothed_contours(features.transpose(1, 2), mask)
    rows = torch.cat([smooth, delta], dim=1)
    expected = contour_functionals(rows, mask[:, None].expand(-1, 6, -1))
    torch.testing.assert_close(values, expected.reshape(2, 19, 2, 3).transpose(1, 2).reshape(2, 114))
    assert not torch.allclose(values, extended_functionals(features, mask))


def test_functionals_computed_together_are_each_computed_alone():
    """Heads share one pass of `contour_functionals` (the models' speed): each part's functionals, and each
    head's logits, equal what it gives alone, to the bit, padded clips included."""
    torch.manual_seed(0)
    mask = torch.arange(40)[None] < torch.tensor([[40], [25], [1]])
    contours, mfcc = torch.randn(3, 40, 5).cumsum(1), torch.randn(3, 40, 7)
    joint = joint_extended_functionals([(contours, False), (contours, True), (mfcc, True)], mask)
    alone = [extended_functionals(contours, mask), extended_functionals(contours, mask, smoothing=True)]
    alone.append(extended_functionals(mfcc, mask, smoothing=True))
    for together, by_itself in zip(joint, alone, strict=True):
        assert torch.equal(together, by_itself)
    heads = [
        (FunctionalsHead(5, 4, "extended"), contours),
        (FunctionalsHead(5, 4, "basic"), contours),
        (FunctionalsHead(7, 4, "extended", smoothing=True), mfcc),
    ]
    for head, features in heads:  # weights, and standardisation statistics, other than 0 / 1
        torch.nn.init.normal_(head.weight)
        head.train()(features, mask)
        head.eval()
    logits = functionals_heads_logits(heads, mask)
    for (head, features), together in zip(heads, logits, strict=True):
        assert torch.equal(together, head(features, mask))


def test_extended_functionals_of_a_one_frame_clip_are_finite():
    """Its difference has no real frame: none of its functionals is inf or nan, its percentiles are 0
    (padding sorts as +inf and would otherwise be read as the clip's order statistics)."""
    features = torch.randn(2, 5, 3)
    mask = torch.tensor([[True] * 5, [True] + [False] * 4])
    values = extended_functionals(features, mask).reshape(2, 2, 19, 3)
    assert torch.isfinite(values).all()
    assert (values[1, 1, 4:9] == 0).all()
    torch.testing.assert_close(values[1, 0, 4:9], features[1, :1].expand(5, 3))  # percentiles of one value


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sort_values_sorts_as_torch_sort_does(dtype: torch.dtype):
    """NumPy's sort (on the CPU, without a gradient) against torch.sort, along the last dimension of a batch
    of rows, over signs, zeros, subnormals and infinities, also on a transposed (non-contiguous) view and in
    inference mode; with a gradient it is torch.sort itself."""
    special = [float("-inf"), -3e38, -2.5, -1e-40, -0.0, 0.0, 1e-40, 1.5, 3e38, float("inf")]
    torch.manual_seed(0)
    rows = torch.cat([torch.tensor(special)[torch.randperm(10)][None] for _ in range(4)])
    rows = torch.cat([rows, torch.randn(4, 10) * 100]).to(dtype).reshape(2, 4, 10)
    for case in (rows, rows.transpose(1, 2)):
        torch.testing.assert_close(sort_values(case), case.sort(-1).values, rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(sort_values(rows), rows.sort(-1).values, rtol=0, atol=0)
    assert sort_values(rows).dtype == dtype
    leaf = torch.randn(3, 7, dtype=dtype, requires_grad=True)
    sort_values(leaf).sum().backward()
    assert (leaf.grad == 1).all()


def test_functionals_head_trains_as_a_logistic_regression_beside_the_cnn():
    """The head starts at zero (the CNN's logits alone) and learns from its own loss, cross-entropy plus
    `functionals_l2 / 2 * ||W||^2`; the CNN learns from its own; the logits are their sum."""
    torch.manual_seed(0)
    with_head = CNNForAudioClassification(
        tiny_config(functionals_head=True, functionals_l2=0.5, energy_peaks_head=False)
    )
    without = CNNForAudioClassification(tiny_config())
    without.load_state_dict(with_head.state_dict(), strict=False)
    waveform, labels = torch.randn(4, 8000), torch.tensor([0, 1, 2, 1])
    with_head.eval(), without.eval()
    with torch.no_grad():
        torch.testing.assert_close(with_head(waveform).logits, without(waveform).logits)
        torch.nn.init.normal_(with_head.functionals_head.weight)
        out = with_head(waveform, labels=labels)
        cnn_logits = without(waveform).logits
    head = with_head.functionals_head
    head_logits = out.logits - cnn_logits
    expected = (
        torch.nn.functional.cross_entropy(cnn_logits, labels)
        + torch.nn.functional.cross_entropy(head_logits, labels)
        + 0.25 * head.weight.pow(2).sum()
    )
    torch.testing.assert_close(out.loss, expected, atol=1e-4, rtol=1e-4)
    # separate losses: the head's gradient does not depend on the CNN's logits
    with_head.train()
    with_head(waveform, labels=labels).loss.backward()
    expected_grad = head.weight.grad.clone()
    head.weight.grad = None
    with torch.no_grad():
        with_head.classifier[-1].bias.add_(5.0)
    with_head(waveform, labels=labels).loss.backward()
    torch.testing.assert_close(head.weight.grad, expected_grad)


def reference_energy_peak_functionals(contour: np.ndarray, frame_rate: float, half_window: int = 5) -> list:
    """`energy_peak_functionals` of one clip's real frames, written with scipy's window filters."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    x = np.convolve(np.pad(contour, 1, mode="edge"), np.ones(3) / 3, "valid")
    lowest, span, mean = x.min(), max(np.ptp(x), 1e-5), x.mean()
    window_max = maximum_filter1d(x, 2 * half_window + 1, mode="nearest")
    window_min = minimum_filter1d(x, 2 * half_window + 1, mode="nearest")
    starts = np.r_[True, x[1:] != x[:-1]]  # of a flat stretch only its first frame
    peaks = np.flatnonzero(starts & (x == window_max) & (x - window_min >= 0.1 * span))
    valleys = np.flatnonzero(starts & (x == window_min) & (window_max - x >= 0.1 * span))
    peak_mean = x[peaks].mean() if len(peaks) else mean
    gaps = np.diff(peaks) / frame_rate if len(peaks) > 1 else np.array([len(x) / frame_rate])
    extrema = np.sort(np.concatenate([peaks, valleys]))
    slopes = np.diff(x[extrema]) / np.diff(extrema) * frame_rate
    rising, falling = slopes[slopes > 0], slopes[slopes < 0]

    def mean_std(values: np.ndarray) -> list[float]:
        return [values.mean(), values.std()] if len(values) else [0.0, 0.0]

    return [
        len(peaks) / (len(x) / frame_rate),
        gaps.mean(),
        gaps.std(),
        np.ptp(x[peaks]) if len(peaks) else 0.0,
        peak_mean,
        peak_mean - mean,
        (peak_mean - mean) / span,
        ((x[valleys].mean() if len(valleys) else mean) - lowest) / span,
        *mean_std(rising),
        *mean_std(falling),
    ]


def test_energy_peak_functionals_of_a_five_hertz_rhythm():
    """Two seconds of |sin| with 5 syllables a second (100 frames per second): 10 peaks, 0.2 s apart."""
    t = torch.arange(200, dtype=torch.float64) / 100
    contour = torch.sin(2 * math.pi * 2.5 * t).abs()[None]
    functionals = energy_peak_functionals(contour, torch.ones_like(contour, dtype=torch.bool), 100.0)[0]
    peaks_per_second, gap_mean, gap_std, peak_range = functionals[:4].tolist()
    assert peaks_per_second == pytest.approx(5.0)
    assert gap_mean == pytest.approx(0.2) and gap_std == pytest.approx(0.0, abs=1e-9)
    assert peak_range == pytest.approx(0.0, abs=1e-9)  # every peak equally high
    rising_mean, _, falling_mean, _ = functionals[8:].tolist()
    assert rising_mean > 0 > falling_mean and rising_mean == pytest.approx(-falling_mean, rel=0.05)


def test_energy_peak_functionals_match_a_reference_over_the_real_frames_only():
    """Against scipy's window filters, per clip; padding (here huge values) is never read; a flat clip and a
    one-frame clip have no peaks and finite functionals."""
    rng = np.random.default_rng(0)
    lengths = [300, 120, 7, 1, 250, 40]
    contours = np.full((len(lengths), 320), 50.0)
    for row, length in enumerate(lengths):
        t = np.arange(length)
        contours[row, :length] = np.abs(np.sin(t / 7.0) + 0.3 * rng.standard_normal(length))
    contours[5, :40] = 0.2  # flat
    contours[0, 100:130] = contours[0, 100]  # silence between words: a flat valley, one extremum
    contours[4, 50:53] = 3.0  # a flat top
    mask = np.arange(320)[None] < np.array(lengths)[:, None]
    got = energy_peak_functionals(torch.tensor(contours), torch.tensor(mask), 100.0).numpy()
    assert np.isfinite(got).all()
    for row, length in enumerate(lengths):
        expected = reference_energy_peak_functionals(contours[row, :length], 100.0)
        np.testing.assert_allclose(got[row], expected, atol=1e-9, err_msg=f"clip {row}")
    assert got[5, 0] == 0.0 and got[1, 0] > 0.0


def test_energy_peaks_head_is_a_third_learner_beside_the_cnn_and_the_functionals_head():
    """With `energy_peaks_head`, the branches are (CNN, functionals head, peaks head): the logits are the
    CNN's plus `branch_weights[1]` times the sum of the two heads'; each branch has its own cross-entropy, and
    the L2 penalty covers both heads' weights."""
    torch.manual_seed(0)
    config = tiny_config(functionals_head=True, energy_peaks_head=True, raw_contours_head=False)
    model = CNNForAudioClassification(config).eval()
    head, peaks = model.functionals_head, model.energy_peaks_head
    assert not peaks.weight.any()  # starts at zero, as the functionals head
    waveform, labels = torch.randn(4, 8000), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        torch.nn.init.normal_(head.weight)
        torch.nn.init.normal_(peaks.weight)
        model.config.branch_weights = [0.5, 2.0]
        out = model(waveform, labels=labels)
    network_logits, head_logits, peaks_logits = out.branch_logits
    torch.testing.assert_close(out.logits, 0.5 * network_logits + 2.0 * (head_logits + peaks_logits))
    assert peaks_logits.abs().sum() > 0
    cross_entropy = sum(torch.nn.functional.cross_entropy(b, labels) for b in out.branch_logits)
    l2 = 0.5 * model.config.functionals_l2 * (head.weight.pow(2).sum() + peaks.weight.pow(2).sum())
    torch.testing.assert_close(out.loss, cross_entropy + l2)


def test_the_raw_contours_head_summarises_pitch_bands_and_shape_as_computed():
    """With `raw_contours_head`, a second linear classifier in the head's branch, on the extended functionals
    of the functionals head's F0, voicing, bands and shape channels, unsmoothed (the head's are smoothed); its
    logits are added to the head's. It is fitted after training only: no parameter that the optimizer would
    train, and not in the penalty."""
    from modeling.cnn.modeling_cnn import extended_functionals, lengths_to_mask

    torch.manual_seed(0)
    config = tiny_config(
        functionals_head=True, functionals="extended", pitch_features=True, raw_contours_head=True
    )
    model = CNNForAudioClassification(config).eval()
    head, raw = model.functionals_head, model.raw_contours_head
    assert config.num_raw_contour_channels == 2 + config.n_mels // config.functionals_mel_group + 8
    assert not raw.weight.any() and not raw.smoothing  # starts at zero, summarises the raw contours
    assert not any(p.requires_grad for p in raw.parameters())
    waveform, labels = torch.randn(4, 8000), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=0.1)
        torch.nn.init.normal_(raw.weight, std=0.1)
        model.config.branch_weights = [0.5, 2.0]
        out = model(waveform, labels=labels)
        features, log_mel, power = model.features.extract_with_spectra(waveform)
        frames = lengths_to_mask(model.features.num_frames(torch.full((4,), 8000)), features.shape[-1])
        channels = model.functionals_input(features, log_mel, power)
        start = 2 + config.num_functionals_mfcc  # after ZCR, RMS and the MFCCs: F0, voicing, bands, shape
        contours = channels[..., start:]
        assert contours.shape[-1] == config.num_raw_contour_channels
        # the head's own functionals of those channels smoothed, the raw head's of them as computed
        unsmoothed = extended_functionals(contours, frames, smoothing=False)
        assert not torch.allclose(unsmoothed, extended_functionals(contours, frames, smoothing=True))
        expected = raw(contours, frames)
        head_alone = head(channels, frames)
    network_logits, heads_logits = out.branch_logits
    torch.testing.assert_close(heads_logits, head_alone + expected)
    assert not torch.allclose(heads_logits, head_alone)  # the raw head's share is there
    torch.testing.assert_close(out.logits, 0.5 * network_logits + 2.0 * heads_logits)
    cross_entropy = sum(torch.nn.functional.cross_entropy(b, labels) for b in out.branch_logits)
    l2 = 0.5 * config.functionals_l2 * head.weight.pow(2).sum()
    torch.testing.assert_close(out.loss, cross_entropy + l2)


def test_the_spectrum_head_summarises_descriptors_of_a_512_point_spectrum_smoothed():
    """With `spectrum_head`, a linear classifier in the head's branch on the smoothed extended functionals of
    the 15 `spectrum_descriptors` of the front-end's Hann frames zero-padded to 512 points (31.25 Hz bins, not
    the front-end's 400-point spectrum); its logits are added to the head's. Fitted after training only: no
    parameter the optimizer would train, and not in the penalty."""
    from modeling.cnn.modeling_cnn import extended_functionals, lengths_to_mask, spectrum_descriptors

    torch.manual_seed(0)
    config = tiny_config(raw_contours_head=False)  # the spectrum head is a default
    model = CNNForAudioClassification(config).eval()
    head, spectrum_head = model.functionals_head, model.spectrum_head
    assert config.spectrum_head_n_fft == 512
    assert spectrum_head.smoothing and spectrum_head.weight.shape == (3, 38 * 15)
    assert not spectrum_head.weight.any() and not any(p.requires_grad for p in spectrum_head.parameters())
    assert CNNForAudioClassification(tiny_config(spectrum_head=False)).spectrum_head is None
    assert (
        CNNForAudioClassification(tiny_config(functionals_head=False, spectrum_head=True)).spectrum_head
        is None
    )
    waveform, labels = torch.randn(4, 8000), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        torch.nn.init.normal_(head.weight, std=0.1)
        torch.nn.init.normal_(spectrum_head.weight, std=0.1)
        out = model(waveform, labels=labels)
        power = torch.fft.rfft(waveform.unfold(-1, 400, 160) * torch.hann_window(400), n=512).abs().square()
        descriptors = spectrum_descriptors(power, 16000 / 512)
        frames = lengths_to_mask(model.features.num_frames(torch.full((4,), 8000)), descriptors.shape[1])
        standardised = (
            extended_functionals(descriptors, frames, smoothing=True) - spectrum_head.norm.running_mean
        ) / (spectrum_head.norm.running_var + spectrum_head.norm.eps).sqrt()
        features, log_mel, own_power = model.features.extract_with_spectra(waveform)
        assert own_power.shape[-1] == 201  # the front-end's spectrum is not the head's
        head_alone = head(model.functionals_input(features, log_mel, own_power), frames)
    heads_logits = out.branch_logits[1]
    expected = head_alone + standardised @ spectrum_head.weight.T + spectrum_head.bias
    torch.testing.assert_close(heads_logits, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(heads_logits, head_alone)  # the spectrum head's share is there
    cross_entropy = sum(torch.nn.functional.cross_entropy(b, labels) for b in out.branch_logits)
    l2 = 0.5 * config.functionals_l2 * head.weight.pow(2).sum()
    torch.testing.assert_close(out.loss, cross_entropy + l2)


@pytest.mark.parametrize("pitch_features", [True, False])
def test_functionals_head_summarises_zcr_rms_the_first_mfccs_and_pitch(pitch_features):
    no_spectra = {
        "functionals_mel_group": None,
        "spectral_shape_functionals": False,
        "spectrum_functionals": False,
    }
    config = tiny_config(
        functionals_head=True,
        functionals="extended",
        functionals_mfcc=3,
        pitch_features=pitch_features,
        **no_spectra,
    )
    model = CNNForAudioClassification(config).eval()
    features, log_mel, power = model.features.extract_with_spectra(torch.randn(2, 8000))
    kept = model.functionals_input(features, log_mel, power)  # features: (batch, channels, frames)
    pitch = [42, 43] if pitch_features else []
    torch.testing.assert_close(kept, features[:, [0, 1, 2, 3, 4, *pitch]].transpose(1, 2))
    assert config.num_functionals_channels == kept.shape[-1] == 5 + len(pitch)
    assert model.functionals_head.weight.shape == (3, 38 * kept.shape[-1])
    for count in (None, 99):  # or a count over n_mfcc
        config = tiny_config(
            functionals_head=True, functionals_mfcc=count, pitch_features=pitch_features, **no_spectra
        )
        model = CNNForAudioClassification(config)
        assert (
            model.functionals_input(features, log_mel, power).shape[-1]
            == features.shape[1]
            == 42 + len(pitch)
        )


def test_functionals_head_adds_grouped_log_mel_bands_spectral_shape_and_spectrum_descriptors():
    config = tiny_config(
        functionals_head=True,
        functionals="basic",
        functionals_mel_group=16,
        spectral_shape_functionals=True,
        spectrum_functionals=True,
    )
    model = CNNForAudioClassification(config).eval()
    clip = torch.randn(2, 8000)
    features, log_mel, power = model.features.extract_with_spectra(clip)
    torch.testing.assert_close(features, model.features.extract(clip))
    # The log-mel the MFCCs come from: their DCT gives back the MFCC channels; the power spectra, the log-mel.
    torch.testing.assert_close(log_mel @ model.features.dct, features[:, 2:42].transpose(1, 2))
    torch.testing.assert_close(log_mel, torch.log(power @ model.features.mel_filters + 1e-6))
    summarised = model.functionals_input(features, log_mel, power)
    bands = config.n_mels // 16
    assert summarised.shape[-1] == config.num_functionals_channels == features.shape[1] + bands + 8 + 15
    torch.testing.assert_close(summarised[..., : features.shape[1]], features.transpose(1, 2))
    torch.testing.assert_close(summarised[..., features.shape[1]], log_mel[..., :16].mean(-1))
    torch.testing.assert_close(summarised[..., -23:-15], spectral_shape(log_mel))
    torch.testing.assert_close(summarised[..., -15:], spectrum_descriptors(power, SR / config.win_length))
    assert model.functionals_head.weight.shape == (3, 4 * summarised.shape[-1])
    with pytest.raises(ValueError, match="functionals_mel_group"):
        tiny_config(functionals_mel_group=5)


def frame_power(signal: torch.Tensor) -> torch.Tensor:
    """(samples,) -> (1, frames, 201): the CNN front-end's power spectra (25 ms Hann frames, 10 ms hop)."""
    frames = signal.unfold(-1, 400, 160) * torch.hann_window(400, dtype=signal.dtype)
    return torch.fft.rfft(frames).abs().square()[None]


def test_spectrum_descriptors_of_a_steady_tone():
    # 1 kHz is bin 25 of a 400-point frame and fits the 10 ms hop exactly: a Hann window puts the power in
    # bins 24, 25, 26 as 1/6, 2/3, 1/6, and every frame is the same.
    tone = 0.1 * torch.sin(2 * math.pi * 1000 * torch.arange(SR, dtype=torch.float64) / SR)
    d = spectrum_descriptors(frame_power(tone), 40.0)[0]
    names = "low high roll25 roll50 roll75 roll90 flux centroid entropy spread skew kurt slope sharp harm"
    d = dict(zip(names.split(), d.unbind(-1), strict=True))
    assert d["low"].max() < 1e-9  # 1-4 kHz holds bins 25 and 26, not bin 24 (960 Hz)
    torch.testing.assert_close(d["high"], torch.full_like(d["high"], 5 / 6))
    # Bin 25 spans 1000-1040 Hz: 25 % of the power is reached 1/8 into it (1/6 lies below it, 2/3 in it).
    for name, hz in (("roll25", 1005), ("roll50", 1020), ("roll75", 1035), ("roll90", 1056)):
        torch.testing.assert_close(d[name], torch.full_like(d[name], hz), msg=name)
    torch.testing.assert_close(d["centroid"], torch.full_like(d["centroid"], 1000.0))
    torch.testing.assert_close(d["spread"], torch.full_like(d["spread"], 40 / math.sqrt(3)))
    torch.testing.assert_close(d["skew"], torch.zeros_like(d["skew"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(d["kurt"], torch.full_like(d["kurt"], 3.0))
    entropy = math.log(6) / 3 + 2 / 3 * math.log(1.5)
    torch.testing.assert_close(d["entropy"], torch.full_like(d["entropy"], entropy))
    assert d["flux"].abs().max() < 1e-9  # the first frame's by definition, the others' as the frames repeat
    # Sharpness: 0.11 times the Bark of 1 kHz (8.5, Zwicker's table), where g(z) is 1; above 15.8 Bark (a
    # 6 kHz tone: 19.6 Bark) g(z) weighs it up.
    torch.testing.assert_close(d["sharp"], torch.full_like(d["sharp"], 0.11 * 8.51), atol=0.01, rtol=0)
    high = 0.1 * torch.sin(2 * math.pi * 6000 * torch.arange(SR, dtype=torch.float64) / SR)
    assert torch.all(spectrum_descriptors(frame_power(high), 40.0)[0, :, 13] > 1.5 * 0.11 * 19.6)
    louder = spectrum_descriptors(frame_power(10 * tone), 40.0)[0]
    # Only flux (magnitudes) and slope (power) follow the level; the rest are shapes.
    level_free = [i for i in range(15) if i not in (6, 12)]
    torch.testing.assert_close(louder[:, level_free], torch.stack(list(d.values()), -1)[:, level_free])
    torch.testing.assert_close(louder[:, 12], 100 * d["slope"])


def test_spectrum_descriptors_under_graph_capture_match_the_eager_ones(monkeypatch):
    """Exporters and the tracer get the roll-offs as summed parts of bins (ONNX has no searchsorted): the same
    values as the eager path, a silent frame included."""
    from modeling.cnn import modeling_cnn

    power = torch.rand(2, 30, 257, generator=torch.Generator().manual_seed(0)) ** 3
    power[0, 3] = 0.0
    eager = spectrum_descriptors(power, 31.25)
    monkeypatch.setattr(modeling_cnn, "in_graph_capture", lambda: True)
    captured = spectrum_descriptors(power, 31.25)
    torch.testing.assert_close(captured, eager)
    assert captured[0, 3, 2:6].tolist() == [257 * 31.25] * 4  # no power anywhere: all bins count


def test_spectral_harmonicity_is_the_summed_steps_between_extrema_and_higher_for_harmonics():
    def reference(spectrum: list[float]) -> float:  # openSMILE's scan, bin by bin
        p, last, total = spectrum[1:], None, 0.0
        for j in range(2, len(p) - 2):
            peak = p[j - 2] < p[j] and p[j - 1] < p[j] and p[j] > p[j + 1] and p[j] > p[j + 2]
            valley = p[j - 2] > p[j] and p[j - 1] > p[j] and p[j] < p[j + 1] and p[j] < p[j + 2]
            if peak or valley:
                if last is not None:
                    total += abs(p[j] - last)
                last = p[j]
        return total / 2 / sum(p)

    power = torch.rand(3, 4, 40, dtype=torch.float64) ** 3
    expected = torch.tensor([[reference(row) for row in frames] for frames in power.tolist()])
    torch.testing.assert_close(spectral_harmonicity(power), expected.to(power.dtype))
    t = torch.arange(SR, dtype=torch.float64) / SR
    voiced = sum(torch.sin(2 * math.pi * 210 * k * t) / k for k in range(1, 12))
    noise = torch.randn(SR, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert spectral_harmonicity(frame_power(voiced)).min() > spectral_harmonicity(frame_power(noise)).max()


def test_masked_batchnorm_statistics_ignore_padding():
    norm = MaskedBatchNorm1d(3, momentum=1.0)
    norm.train()
    real = torch.randn(2, 3, 10)
    padded = torch.cat([real, torch.full((2, 3, 6), 100.0)], dim=-1)
    mask = torch.arange(16)[None].expand(2, 16) < 10
    out = norm(padded, mask)
    reference = torch.nn.functional.batch_norm(real, None, None, training=True)
    assert torch.allclose(out[..., :10], reference, atol=1e-5)
    assert torch.allclose(norm.running_mean, real.mean((0, 2)), atol=1e-5)
    assert torch.allclose(norm.running_var, real.var((0, 2), unbiased=True), atol=1e-4)


def test_attention_gives_masked_frames_zero_weight():
    pooling = AdditiveAttentionPooling(4, 8)
    hidden = torch.randn(1, 6, 4)
    mask = torch.tensor([[True, True, True, False, False, False]])
    pooled, weights = pooling(hidden, mask)
    assert torch.equal(weights[0, 3:], torch.zeros(3)) and torch.isclose(weights.sum(), torch.tensor(1.0))
    assert torch.allclose(pooled, pooling(hidden[:, :3], mask[:, :3])[0], atol=1e-6)
    hidden[:, 3:] = float("inf")  # whatever the padded frames hold
    assert torch.allclose(pooling(hidden, mask)[0], pooled, atol=1e-6)


def test_inputs_are_checked_by_the_feature_extractor_not_by_forward():
    """forward polices nothing (so it traces); the feature extractor saved with the model refuses what it
    cannot classify, and a too-short clip that gets past it anyway gives NaN, never a plausible class."""
    model = CNNForAudioClassification(tiny_config()).eval()
    assert model.config.min_input_samples == 400 + 15 * 160
    extractor = feature_extractor_for(model)
    with pytest.raises(ValueError, match="minimum of 2800 samples"):
        extractor(np.zeros(2799, dtype=np.float32), sampling_rate=SR)
    with pytest.raises(ValueError, match="2-channel"):
        extractor(np.zeros((2, 4000), dtype=np.float32), sampling_rate=SR)
    inputs = extractor(
        [np.random.randn(4000).astype(np.float32), np.random.randn(2800).astype(np.float32)],
        sampling_rate=SR,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**inputs).logits
        assert torch.isfinite(logits).all()
        mask = torch.ones(2, 4000, dtype=torch.long)
        mask[1, 2799:] = 0  # one sample short of the minimum: no frame left after the last pooling
        logits = model(torch.randn(2, 4000), attention_mask=mask).logits
    assert torch.isfinite(logits[0]).all() and torch.isnan(logits[1]).all()
    audio, labels = torch.randn(2, 4000), torch.tensor([0, 2])
    loss, logits = model(audio, labels=labels, return_dict=False)
    output = model(audio, labels=labels)
    branches = sum(torch.nn.functional.cross_entropy(part, labels) for part in output.branch_logits)
    assert torch.isclose(loss, branches + output.penalty) and torch.equal(logits, output.logits)


def test_forward_is_traceable_with_dynamic_batch_and_length():
    """torch.export traces the real forward (no data-dependent Python), and the program it records gives the
    eager logits at another batch size and length."""
    torch.manual_seed(0)
    config = tiny_config(norm_type="batch", functionals_head=True, energy_peaks_head=True)
    model = CNNForAudioClassification(config).eval()
    for head in (model.functionals_head, model.energy_peaks_head):
        torch.nn.init.normal_(head.weight, std=0.05)
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    example = torch.randn(2, 8037)
    mask = torch.ones(2, 8037, dtype=torch.long)
    mask[1, 6000:] = 0
    with torch.no_grad():
        program = torch.export.export(
            model,
            (example,),
            {"attention_mask": mask},
            dynamic_shapes={"input_values": dims, "attention_mask": dims},
            strict=False,
        )
        audio = torch.randn(3, 12345)
        mask = (torch.arange(12345)[None] < torch.tensor([12345, 9000, 3000])[:, None]).long()
        traced = program.module()(audio, attention_mask=mask).logits
        torch.testing.assert_close(traced, model(audio, attention_mask=mask).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("norm_type", "group", "norm_type"),
        ("feature_normalization", "global", "feature_normalization"),
        ("pooling", "max", "pooling"),
        ("f0_max", 10.0, "f0_min"),
        ("conv_kernel_size", 4, "odd"),
        ("conv_channels", [], "conv_channels"),
        ("n_mels", 20, "n_mels"),
        ("functionals", "all", "functionals"),
        ("functionals_mfcc", -1, "functionals_mfcc"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        CNNConfig(**{field: value})


def test_defaults_are_the_documented_architecture():
    config = CNNConfig()
    model = CNNForAudioClassification(config)
    assert config.num_features == 44 and config.win_length == 400 and config.hop_length == 160
    assert config.pitch_features and config.functionals_head and config.functionals == "extended"
    # The head: the 44 front-end channels, 16 grouped log-mel bands and 8 spectral-shape descriptors.
    assert config.functionals_mel_group == 4 and config.spectral_shape_functionals
    assert not config.spectrum_functionals
    assert model.functionals_head.weight.shape == (config.num_labels, 38 * (44 + 16 + 8))
    assert [block.conv.out_channels for block in model.conv_blocks] == config.conv_channels
    assert all(block.conv.kernel_size == (5,) for block in model.conv_blocks)
    assert model.lstm is None and model.classifier[-1].out_features == config.num_labels
