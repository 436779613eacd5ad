"""S4 / S4D: kernels vs recurrence, memory-bounded Vandermonde, float32 SSM, padding invariance, training
stability, initialisation, save/load, optimiser groups, streaming and input errors. CPU, tiny sizes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torchaudio

from modeling.auto import feature_extractor_for
from modeling.optimization import is_ssm_parameter, ssm_parameter_groups
from modeling.s4 import (
    DPLRKernel,
    S4Config,
    S4DKernel,
    S4ForAudioClassification,
    S4Layer,
    vandermonde_kernel,
    vandermonde_kernel_naive,
)
from modeling.s4.modeling_s4 import spectral_shape
from training.trainer import SSMAwareTrainer

RATE = 16000


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine OpenMP threads waiting
    for each other make every op ~30x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(**overrides) -> S4Config:
    values = dict(
        d_model=16,
        n_layers=2,
        d_state=16,
        dropout=0.0,
        mel_bins=16,
        conv_channels=16,
        num_labels=3,
        dplr_kernel_length=256,
    )
    values.update(overrides)
    return S4Config(**values)


def tiny_model(**overrides) -> S4ForAudioClassification:
    torch.manual_seed(0)
    model = S4ForAudioClassification(tiny_config(**overrides))
    if "dataset" in overrides.get("mel_normalization", "") or model.functionals_head is not None:
        with torch.no_grad():  # training-set statistics other than 0 / 1, so that applying them shows
            model.train()(torch.randn(2, 8000) * 3)
    heads = (
        model.functionals_head,
        model.energy_peaks_head,
        model.smoothed_contours_head,
        model.mfcc_head,
        model.spectrum_head,
    )
    for head in heads:
        if head is not None:  # it starts at zero, where nothing it does could show
            torch.nn.init.normal_(head.weight, std=0.05)
    if model.attention is not None:  # at the initialisation's scale its softmax is nearly a plain mean
        torch.nn.init.normal_(model.attention.projection.weight, std=0.3)
        torch.nn.init.normal_(model.attention.score.weight, std=3.0)
    return model.eval()


def run_recurrence(layer: S4Layer, u: torch.Tensor) -> torch.Tensor:
    layer.setup_step()
    state = layer.default_state(u.shape[0])
    outputs = []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, dim=1)


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """Max abs error below tol relative to the signal's scale (max(1, max |expected|))."""
    scale = max(1.0, expected.abs().max().item())
    error = (actual - expected).abs().max().item()
    assert error <= tol * scale, f"max error {error:.3g} > {tol} x scale {scale:.3g}"


# ------------------------------------------------------------------------------------------- front-end


def test_log_mel_is_the_mel_filtered_power_spectrum_of_each_frame():
    frontend = tiny_model().frontend
    clip = torch.randn(2, 4000)
    frames = clip.unfold(-1, frontend.window, frontend.hop) * frontend.analysis_window
    power = torch.fft.rfft(frames, n=frontend.n_fft).abs().square()
    expected = torch.log(power @ frontend.mel_filters + 1e-6)
    torch.testing.assert_close(frontend.log_mel(clip), expected, atol=1e-4, rtol=1e-5)


# ------------------------------------------------------------------------------------------- kernels


@pytest.mark.parametrize(
    "kernel,init,discretization",
    [("s4d", "lin", "zoh"), ("s4d", "inv", "zoh"), ("s4d", "lin", "bilinear"), ("s4", "lin", "bilinear")],
)
def test_convolution_equals_recurrence(kernel, init, discretization):
    torch.manual_seed(0)
    config = tiny_config(
        kernel=kernel,
        init=init,
        discretization=discretization,
        bidirectional=False,
        dt_min=1e-2,
        dt_max=2e-1,
        dplr_kernel_length=128,
    )
    layer = S4Layer(config)
    u = torch.randn(2, 100, config.d_model)
    with torch.no_grad():
        convolution = layer(u)
        recurrence = run_recurrence(layer, u)
    assert_close_scaled(convolution, recurrence)


def test_dplr_with_zero_low_rank_equals_diagonal_kernel():
    torch.manual_seed(0)
    channels, d_state, ell = 8, 16, 128
    dplr = DPLRKernel(channels, d_state, kernel_length=ell, dt_min=1e-2, dt_max=1e-1)
    diagonal = S4DKernel(channels, d_state, discretization="bilinear")
    with torch.no_grad():
        dplr.ssm_P.zero_()
        for name in ("ssm_log_dt", "ssm_A_log_real", "ssm_A_imag", "ssm_B"):
            getattr(diagonal, name).copy_(getattr(dplr, name))
        # the DPLR kernel trains C~ = C (I - dA^l); with diagonal dA: C = C~ / (1 - dA^l)
        _, dA, _, _ = diagonal.discretize()
        C_tilde = torch.view_as_complex(dplr.C.detach().contiguous())
        diagonal.C.copy_(torch.view_as_real(C_tilde / (1 - dA**ell)))
        assert_close_scaled(dplr(100), diagonal(100))


def test_hippo_dplr_is_not_diagonal():
    """With the HiPPO low-rank term the DPLR kernel differs from the diagonal part alone (P matters)."""
    torch.manual_seed(0)
    dplr = DPLRKernel(4, 16, kernel_length=64, dt_min=1e-2, dt_max=1e-1)
    with torch.no_grad():
        with_p = dplr(64)
        dplr.ssm_P.zero_()
        without_p = dplr(64)
    assert (with_p - without_p).abs().max() > 1e-2


@pytest.mark.parametrize("length", [1, 7, 64, 100, 1000])
@pytest.mark.parametrize("block", [None, 1, 13])
def test_chunked_vandermonde_equals_naive(length, block):
    torch.manual_seed(0)
    coeffs = torch.randn(6, 8, dtype=torch.complex64)
    log_dA = torch.complex(-torch.rand(6, 8) * 0.05, torch.randn(6, 8))
    chunked = vandermonde_kernel(coeffs, log_dA, length, block=block)
    naive = vandermonde_kernel_naive(coeffs, log_dA, length)
    assert chunked.shape == naive.shape == (6, length)
    assert_close_scaled(chunked, naive, tol=1e-5)


def test_chunked_vandermonde_gradients_equal_naive():
    torch.manual_seed(0)
    coeffs = torch.randn(4, 8, dtype=torch.complex64, requires_grad=True)
    log_dA = torch.complex(-torch.rand(4, 8) * 0.05, torch.randn(4, 8)).requires_grad_(True)
    weights = torch.randn(4, 300)
    grads = []
    for function in (vandermonde_kernel, vandermonde_kernel_naive):
        (function(coeffs, log_dA, 300) * weights).sum().backward()
        grads.append((coeffs.grad.clone(), log_dA.grad.clone()))
        coeffs.grad = log_dA.grad = None
    for chunked, naive in zip(grads[0], grads[1], strict=True):
        assert_close_scaled(chunked, naive)


@pytest.mark.parametrize("kernel", ["s4d", "s4"])
def test_ssm_stays_float32_under_autocast(kernel):
    torch.manual_seed(0)
    config = tiny_config(kernel=kernel)
    layer = S4Layer(config)
    u = torch.randn(2, 50, config.d_model)
    reference = layer(u)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.kernel(50).dtype == torch.float32
        mixed = layer(u.to(torch.bfloat16))
    assert mixed.dtype == torch.float32
    # bf16 rounding of the input only; the kernel and the FFT convolution stay in float32
    assert_close_scaled(mixed, reference, tol=2e-2)


def test_model_runs_under_autocast():
    model = tiny_model()
    audio = torch.randn(2, RATE // 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(audio).logits
    assert torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------------- padding


PADDING_CASES = [
    dict(frontend="mel", bidirectional=True),
    dict(frontend="mel", bidirectional=False),
    dict(frontend="conv", bidirectional=True),
    dict(frontend="conv", bidirectional=False),
    dict(frontend="mel", bidirectional=True, mel_normalization="causal"),
    dict(frontend="mel", bidirectional=True, kernel="s4"),
    dict(frontend="mel", bidirectional=True, pooling="mean"),
    dict(frontend="mel", mel_normalization="dataset", pitch_features=True, pooling="mean_std"),
    dict(frontend="mel", mel_normalization="utterance+dataset", pitch_features=True, pooling="mean_std"),
    dict(frontend="mel", pitch_features=True, functionals_head=True),
    dict(frontend="mel", normalize_waveform=False, functionals_head=True, spectral_shape_functionals=True),
    dict(frontend="mel", normalize_waveform=False, pitch_features=True, functionals="extended", mfcc_head=6),
    dict(frontend="mel", normalize_waveform=False, functionals="extended", spectrum_head=True),
    dict(frontend="mel", normalize_waveform=False, energy_peaks_head=True),
    dict(frontend="mel", normalize_waveform=False, functionals="extended", functionals_smoothing=True),
]


@pytest.mark.parametrize("overrides", PADDING_CASES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_padding_never_changes_the_prediction(overrides):
    model = tiny_model(**overrides)
    torch.manual_seed(1)
    short, long = torch.randn(5000), torch.randn(9000)
    with torch.no_grad():
        alone = model(short.unsqueeze(0)).logits[0]
        batch = torch.randn(2, 9000)  # padding filled with noise, not zeros: it must be ignored anyway
        batch[0, :5000], batch[1] = short, long
        mask = torch.zeros(2, 9000, dtype=torch.long)
        mask[0, :5000] = 1
        mask[1] = 1
        padded = model(batch, attention_mask=mask).logits
        long_alone = model(long.unsqueeze(0)).logits[0]
    # rtol: float32 rounding of the extended functionals head's logits, which reach |100| in these tiny
    # untrained models (its features standardised with two clips' statistics).
    torch.testing.assert_close(padded[0], alone, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(padded[1], long_alone, atol=1e-4, rtol=1e-5)


def test_frames_only_inside_real_samples():
    """A frame needs its whole window: 400 samples -> 1 mel frame, 559 -> 1, 560 -> 2."""
    model = tiny_model()
    lengths = torch.tensor([400, 559, 560])
    mask = model._frame_mask(lengths, n_frames=3)
    assert mask.sum(-1).tolist() == [1, 1, 2]


# ------------------------------------------------------------------------------------------- training


def random_batch(n: int = 4, samples: int = 4000, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(n, samples, generator=generator)
    labels = torch.arange(n) % 3
    return audio, labels


@pytest.mark.parametrize(
    "overrides", [dict(mfcc_head=6), dict(frontend="conv", kernel="s4", bidirectional=False)]
)
def test_every_parameter_gets_a_gradient(overrides):
    model = tiny_model(**overrides).train()
    audio, labels = random_batch()
    model(audio, labels=labels).loss.backward()
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    # The smoothed contours, MFCC and spectrum heads alone do not train (fitted after training).
    after_training = (
        ("smoothed_contours_head", "mfcc_head", "spectrum_head") if "mfcc_head" in overrides else ()
    )
    expected = {f"{head}.{name}" for head in after_training for name in ("weight", "bias")}
    assert frozen == expected
    for name, param in model.named_parameters():
        if name in frozen:
            continue
        assert param.grad is not None, f"{name} has no gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_no_nan_over_hundreds_of_steps_at_recommended_rates():
    model = tiny_model(dropout=0.1).train()
    optimizer = torch.optim.AdamW(ssm_parameter_groups(model, weight_decay=0.01, ssm_lr=1e-3), lr=1e-3)
    for step in range(300):
        audio, labels = random_batch(n=4, samples=2400, seed=step)
        loss = model(audio, labels=labels).loss
        assert torch.isfinite(loss), f"loss is {loss} at step {step}"
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, param in model.named_parameters():
        assert torch.isfinite(param).all(), f"{name} is not finite"
    # A keeps a negative real part by construction (A = -exp(.))
    for block in model.blocks:
        assert (block.s4.kernel.state_matrix().real < 0).all()


def test_overfits_a_small_batch():
    model = tiny_model(d_model=32, functionals_head=False).train()
    audio, labels = random_batch(n=6, samples=4000, seed=3)
    optimizer = torch.optim.AdamW(ssm_parameter_groups(model, weight_decay=0.0, ssm_lr=1e-3), lr=3e-3)
    first = None
    for _ in range(150):
        loss = model(audio, labels=labels).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = model.eval()(audio, labels=labels).loss.item()
    assert first > 0.5 and final < 0.05, (first, final)


# ------------------------------------------------------------------------------------------- init, save/load


@pytest.mark.parametrize("init", ["lin", "inv"])
def test_construction_keeps_the_structured_ssm_initialisation(init):
    model = tiny_model(init=init, dt_min=1e-3, dt_max=1e-1)
    kernel = model.blocks[0].s4.kernel
    A = kernel.state_matrix()
    half = model.config.d_state // 2
    n = torch.arange(half, dtype=torch.float32)
    expected_imag = math.pi * n if init == "lin" else half * 2 / math.pi * (half * 2 / (2 * n + 1) - 1)
    torch.testing.assert_close(A.real, torch.full_like(A.real, -0.5))
    torch.testing.assert_close(A.imag, expected_imag.expand_as(A.imag))
    torch.testing.assert_close(kernel.ssm_B[..., 0], torch.ones_like(kernel.ssm_B[..., 0]))
    dt = kernel.ssm_log_dt.exp()
    assert (dt >= 1e-3 - 1e-9).all() and (dt <= 1e-1 + 1e-9).all()
    assert kernel.C.std() > 0.3  # complex normal with unit variance, not a 0.02-normal init


def test_init_weights_does_not_overwrite_ssm_parameters():
    model = tiny_model(kernel="s4")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.init_weights()
    for module in model.modules():  # what transformers does on load, called directly
        model._init_weights(module)
    for name, param in model.named_parameters():
        if is_ssm_parameter(name) or name.endswith((".C", ".D")):
            torch.testing.assert_close(param, before[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("overrides", [dict(), dict(kernel="s4", frontend="conv")])
def test_save_and_load_round_trip(tmp_path, overrides):
    model = tiny_model(**overrides)
    model.config.id2label = {0: "angry", 1: "happy", 2: "neutral"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path)
    loaded = S4ForAudioClassification.from_pretrained(tmp_path).eval()
    audio = torch.randn(2, 6000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio).logits, model(audio).logits, atol=0, rtol=0)
    assert loaded.config.id2label[0] == "angry"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)


def test_the_functionals_head_is_the_mel_front_ends_only():
    assert tiny_model().functionals_head is not None  # the default
    assert tiny_model(frontend="conv", functionals_head=True).functionals_head is None


def test_spectral_shape_descriptors_of_known_spectra():
    bands = 8
    flat = torch.zeros(1, 2, bands)  # power 1 in every band, the same in both frames
    spike = torch.full((1, 1, bands), -30.0)
    spike[0, 0, 5] = 0.0  # all the energy in band 5
    energy, centroid, spread, entropy, flatness, rolloff, flux, slope = spectral_shape(flat)[0, 1]
    torch.testing.assert_close(energy, torch.tensor(math.log(bands)))
    torch.testing.assert_close(centroid, torch.tensor((bands - 1) / 2))
    torch.testing.assert_close(spread, torch.tensor(math.sqrt((bands**2 - 1) / 12)))
    torch.testing.assert_close(entropy, torch.tensor(math.log(bands)))
    torch.testing.assert_close(flatness, torch.tensor(0.0), atol=1e-6, rtol=0)
    assert rolloff == 6  # bands 0..5 hold 75% of the energy, 0..6 hold 87.5%
    assert flux == 0 and slope == 0
    energy, centroid, spread, entropy, flatness, rolloff, flux, slope = spectral_shape(spike)[0, 0]
    torch.testing.assert_close(centroid, torch.tensor(5.0), atol=1e-4, rtol=0)
    assert spread < 1e-3 and entropy < 1e-3 and flatness < -20 and rolloff == 5 and flux == 0
    assert slope > 0  # the log spectrum rises towards the spike, which lies above the middle band
    rising = torch.stack([flat[0, 0], spike[0, 0]])[None]
    torch.testing.assert_close(spectral_shape(rising)[0, 1, 6], (spike - flat[:, :1]).norm())


def test_a_checkpoint_saved_before_the_functionals_head_predicts_as_it_did(tmp_path):
    """Its config.json has no `functionals_head` (so the default, True, applies) and its weights no head:
    the head is built at zero and adds nothing."""
    model = tiny_model(functionals_head=False)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for field in ("functionals_head", "functionals_l2"):
        del config[field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = S4ForAudioClassification.from_pretrained(tmp_path).eval()
    assert loaded.functionals_head is not None
    audio = torch.randn(2, 6000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio).logits, model(audio).logits)


def test_a_checkpoint_without_the_mfcc_and_spectrum_heads_loads_with_them_at_zero(tmp_path):
    """Loaded with `mfcc_head` and `spectrum_head` asked for, a checkpoint saved without them gets the heads
    at zero and the MFCC head's DCT matrix computed (not the meta device's empty memory): the predictions
    are the checkpoint's."""
    model = tiny_model(mfcc_head=0, spectrum_head=False)
    model.save_pretrained(tmp_path)
    loaded = S4ForAudioClassification.from_pretrained(tmp_path, mfcc_head=6, spectrum_head=True).eval()
    torch.testing.assert_close(loaded.mfcc_head_dct, torchaudio.functional.create_dct(6, 16, "ortho"))
    assert loaded.spectrum_head is not None and not loaded.spectrum_head.weight.any()
    audio = torch.randn(2, 6000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(audio).logits, model(audio).logits)


def test_the_functionals_head_summarises_groups_of_mel_bands():
    model = tiny_model(pitch_features=True, spectral_shape_functionals=True, functionals="basic")
    raw = torch.randn(2, 7, 16 + 2)
    summarised = model.functionals_input(raw)
    assert summarised.shape == (2, 7, 4 + 2 + 8)
    torch.testing.assert_close(summarised[..., 1], raw[..., 4:8].mean(-1))  # the second group of four bands
    torch.testing.assert_close(summarised[..., 4:6], raw[..., 16:])  # pitch channels as they are
    torch.testing.assert_close(summarised[..., 6:], spectral_shape(raw[..., :16]))  # shape: every band
    assert model.functionals_head.weight.shape[1] == 4 * (4 + 2 + 8)  # the basic functionals: 4 per channel


def standardised_by(functionals: torch.Tensor, head) -> torch.Tensor:
    """The functionals as `head`'s norm standardises them (its training-set statistics)."""
    norm = head.norm
    return (functionals - norm.running_mean) / (norm.running_var + norm.eps).sqrt()


def test_the_smoothed_contours_head_summarises_the_heads_channels_smoothed():
    """With `smoothed_contours_head`, a second linear classifier in the head's branch, on the extended
    functionals of the functionals head's channels smoothed (the head's are as computed); its logits are added
    to the head's, and it is not in the penalty (it does not train)."""
    from modeling.s4.modeling_s4 import extended_functionals

    model = tiny_model(
        pitch_features=True,
        functionals="extended",
        smoothed_contours_head=True,
        mfcc_head=0,
        spectrum_head=False,
    )
    head, smoothed = model.functionals_head, model.smoothed_contours_head
    assert smoothed.smoothing and not head.smoothing and smoothed.weight.shape == head.weight.shape
    # With the head smoothed itself, the second head would repeat it: there is none.
    assert tiny_model(functionals="extended", functionals_smoothing=True).smoothed_contours_head is None
    audio, labels = torch.randn(3, 8000), torch.tensor([0, 1, 2])
    seen = {}
    smoothed.register_forward_pre_hook(lambda module, args: seen.update(args=args))
    with torch.no_grad():
        model.config.branch_weights = [0.5, 2.0]
        out = model(audio, labels=labels)
        channels, frames = seen["args"]
        torch.testing.assert_close(channels, model.functionals_input(model.frontend.frame_features(audio)))
        functionals = extended_functionals(channels, frames, smoothing=True)
        standardised = standardised_by(functionals, smoothed)
        head_alone = head(channels, frames)
    network_logits, heads_logits, peaks_logits = out.branch_logits
    torch.testing.assert_close(
        heads_logits, head_alone + standardised @ smoothed.weight.T + smoothed.bias, atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(heads_logits, head_alone)  # the smoothed head's share is there
    torch.testing.assert_close(out.logits, 0.5 * network_logits + 2.0 * (heads_logits + peaks_logits))
    cross_entropy = sum(torch.nn.functional.cross_entropy(b, labels) for b in out.branch_logits)
    squares = head.weight.pow(2).sum() + model.energy_peaks_head.weight.pow(2).sum()
    torch.testing.assert_close(out.loss, cross_entropy + 0.5 * model.config.functionals_l2 * squares)


def test_the_spectrum_head_summarises_descriptors_of_the_front_end_power_spectrum_smoothed():
    """With `spectrum_head`, a linear classifier in the head's branch on the smoothed extended functionals of
    the 15 `spectrum_descriptors` of the front-end's own power spectrum (Hann frames, its FFT size's bins);
    its logits are added to the head's, and it is not in the penalty (it does not train)."""
    from modeling.s4.modeling_s4 import extended_functionals, spectrum_descriptors

    model = tiny_model(pitch_features=True, smoothed_contours_head=False, mfcc_head=0)
    head, spectrum_head = model.functionals_head, model.spectrum_head
    assert spectrum_head.smoothing and spectrum_head.weight.shape[1] == 38 * 15
    assert tiny_model(spectrum_head=False).spectrum_head is None
    assert tiny_model(functionals_head=False).spectrum_head is None
    audio, labels = torch.randn(3, 8000), torch.tensor([0, 1, 2])
    seen = {}
    spectrum_head.register_forward_pre_hook(lambda module, args: seen.update(args=args))
    with torch.no_grad():
        out = model(audio, labels=labels)
        channels, frames = seen["args"]
        frontend = model.frontend
        power = torch.fft.rfft(audio.unfold(-1, 400, 160) * torch.hann_window(400), n=512).abs().square()
        torch.testing.assert_close(channels, spectrum_descriptors(power, 16000 / 512), atol=1e-4, rtol=1e-4)
        functionals = extended_functionals(channels, frames, smoothing=True)
        standardised = standardised_by(functionals, spectrum_head)
        head_alone = head(model.functionals_input(frontend.frame_features(audio)), frames)
    heads_logits = out.branch_logits[1]
    torch.testing.assert_close(
        heads_logits,
        head_alone + standardised @ spectrum_head.weight.T + spectrum_head.bias,
        atol=1e-4,
        rtol=1e-4,
    )
    assert not torch.allclose(heads_logits, head_alone)
    squares = head.weight.pow(2).sum() + model.energy_peaks_head.weight.pow(2).sum()
    cross_entropy = sum(torch.nn.functional.cross_entropy(b, labels) for b in out.branch_logits)
    torch.testing.assert_close(out.loss, cross_entropy + 0.5 * model.config.functionals_l2 * squares)


def test_the_mfcc_head_summarises_the_first_mfccs_of_the_log_mel_smoothed():
    """With `mfcc_head` K, a linear classifier in the head's branch on the smoothed extended functionals of
    the first K MFCCs (orthonormal DCT-II) of the front-end's log-mel; its logits are added to the head's,
    and it is not in the penalty (it does not train). There are at most `mel_bins` MFCCs."""
    from modeling.s4.modeling_s4 import extended_functionals

    model = tiny_model(pitch_features=True, smoothed_contours_head=False, mfcc_head=6, spectrum_head=False)
    head, mfcc_head = model.functionals_head, model.mfcc_head
    assert mfcc_head.smoothing and mfcc_head.weight.shape[1] == 38 * 6
    assert tiny_model(mfcc_head=40).mfcc_head.weight.shape[1] == 38 * 16  # mel_bins=16
    assert tiny_model(mfcc_head=0).mfcc_head is None
    audio, labels = torch.randn(3, 8000), torch.tensor([0, 1, 2])
    seen = {}
    mfcc_head.register_forward_pre_hook(lambda module, args: seen.update(args=args))
    with torch.no_grad():
        out = model(audio, labels=labels)
        channels, frames = seen["args"]
        log_mel = model.frontend.frame_features(audio)[..., :16]
        torch.testing.assert_close(channels, log_mel @ torchaudio.functional.create_dct(6, 16, "ortho"))
        functionals = extended_functionals(channels, frames, smoothing=True)
        standardised = standardised_by(functionals, mfcc_head)
        head_alone = head(model.functionals_input(model.frontend.frame_features(audio)), frames)
    heads_logits = out.branch_logits[1]
    torch.testing.assert_close(
        heads_logits, head_alone + standardised @ mfcc_head.weight.T + mfcc_head.bias, atol=1e-4, rtol=1e-4
    )
    assert not torch.allclose(heads_logits, head_alone)
    cross_entropy = sum(torch.nn.functional.cross_entropy(b, labels) for b in out.branch_logits)
    squares = head.weight.pow(2).sum() + model.energy_peaks_head.weight.pow(2).sum()
    torch.testing.assert_close(out.loss, cross_entropy + 0.5 * model.config.functionals_l2 * squares)


def test_missing_ssm_weights_get_the_structured_init(tmp_path):
    """A checkpoint without an SSM tensor: transformers re-initialises it through _init_weights."""
    from safetensors.torch import load_file, save_file

    model = tiny_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["blocks.0.s4.kernel.ssm_A_imag"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded = S4ForAudioClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(
        loaded.blocks[0].s4.kernel.ssm_A_imag, model.blocks[0].s4.kernel.ssm_A_imag, atol=0, rtol=0
    )


# ------------------------------------------------------------------------------------------- optimiser


def test_parameter_groups():
    model = tiny_model(kernel="s4")
    groups = {group["name"]: group for group in ssm_parameter_groups(model, weight_decay=0.05, ssm_lr=5e-4)}
    # Every parameter the optimizer trains exactly once: the smoothed contours head is fitted after training.
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    assert len(names) < len(list(model.parameters()))
    grouped = {g: {names[id(p)] for p in group["params"]} for g, group in groups.items()}
    assert sum(len(v) for v in grouped.values()) == len(names)
    assert grouped["ssm"] == {n for n in names.values() if n.rsplit(".", 1)[-1].startswith("ssm_")}
    assert {n.rsplit(".", 1)[-1] for n in grouped["ssm"]} == {
        "ssm_log_dt",
        "ssm_A_log_real",
        "ssm_A_imag",
        "ssm_B",
        "ssm_P",
    }
    assert groups["ssm"]["lr"] == 5e-4 and groups["ssm"]["weight_decay"] == 0.0
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.05
    assert all(n.endswith(("bias", ".D")) or "norm" in n for n in grouped["no_decay"])
    assert "classifier.weight" in grouped["decay"] and "blocks.0.s4.kernel.C" in grouped["decay"]
    assert ssm_parameter_groups(model, 0.0)[0]["lr"] == model.config.ssm_lr


def test_trainer_creates_the_ssm_groups(tmp_path):
    from transformers import TrainingArguments

    model = tiny_model()
    args = TrainingArguments(
        output_dir=str(tmp_path), learning_rate=3e-3, weight_decay=0.1, report_to=[], use_cpu=True
    )
    trainer = SSMAwareTrainer(model=model, args=args, ssm_lr=1e-3)
    optimizer = trainer.create_optimizer()
    by_name = {group["name"]: group for group in optimizer.param_groups}
    assert by_name["ssm"]["lr"] == 1e-3 and by_name["ssm"]["weight_decay"] == 0.0
    assert by_name["decay"]["lr"] == 3e-3 and by_name["decay"]["weight_decay"] == 0.1
    assert by_name["no_decay"]["weight_decay"] == 0.0


# ------------------------------------------------------------------------------------------- streaming


STREAM_CASES = [
    dict(frontend="mel", mel_normalization="causal", functionals_head=False),
    # The pitch window looks back 15 ms before each frame: the stream keeps those samples.
    dict(
        frontend="mel",
        mel_normalization="dataset",
        pitch_features=True,
        pooling="mean_std",
        functionals_head=False,
    ),
    dict(frontend="mel", mel_normalization="none", functionals_head=False),
    dict(frontend="mel", mel_normalization="none", functionals_head=False, pooling="mean"),
    dict(frontend="conv"),
    dict(frontend="conv", kernel="s4"),
]


@pytest.mark.parametrize("overrides", STREAM_CASES, ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_streaming_equals_offline(overrides):
    model = tiny_model(bidirectional=False, **overrides)
    torch.manual_seed(2)
    audio = torch.randn(2, 8000) * torch.linspace(0.1, 3.0, 8000)  # frames unalike, for the attention
    if model.attention is not None:  # a softmax far from uniform, so that the running one is really tested
        weights = []
        hook = model.attention.register_forward_hook(lambda _, __, output: weights.append(output[1]))
        with torch.no_grad():
            model(audio)
        hook.remove()
        assert (weights[0].max(-1).values * weights[0].shape[-1] > 3).all()
    state = model.init_stream_state(batch_size=2)
    chunk = RATE // 50  # 20 ms
    logits = None
    for start in range(0, audio.shape[1], chunk):
        logits, state = model.stream_step(audio[:, start : start + chunk], state)
        heard = start + chunk
        if heard == 2400:  # running logits = offline logits of the audio so far
            with torch.no_grad():
                torch.testing.assert_close(logits, model(audio[:, :heard]).logits, atol=1e-4, rtol=0)
    with torch.no_grad():
        offline = model(audio).logits
    torch.testing.assert_close(logits, offline, atol=1e-4, rtol=0)


def test_streaming_before_first_frame_and_odd_chunks():
    model = tiny_model(bidirectional=False, frontend="conv")
    state = model.init_stream_state(1)
    logits, state = model.stream_step(torch.randn(1, 100), state)
    assert logits is None  # the conv front-end needs 200 samples for a frame
    audio = torch.randn(1, 3000)
    state = model.init_stream_state(1)
    for piece in torch.split(audio, [1, 0, 333, 1000, 1666], dim=1):
        logits, state = model.stream_step(piece, state)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(audio).logits, atol=1e-4, rtol=0)


def test_streaming_refuses_non_causal_models():
    with pytest.raises(ValueError, match="bidirectional"):
        tiny_model(bidirectional=True).init_stream_state()
    with pytest.raises(ValueError, match="utterance"):
        tiny_model(bidirectional=False, mel_normalization="utterance").init_stream_state()
    with pytest.raises(ValueError, match="utterance"):
        tiny_model(bidirectional=False, mel_normalization="utterance+dataset").init_stream_state()
    with pytest.raises(ValueError, match="functionals_head"):
        tiny_model(bidirectional=False, mel_normalization="none", functionals_head=True).init_stream_state()


def test_utterance_and_dataset_normalisation_side_by_side():
    """`mel_normalization="utterance+dataset"` gives each frame both views of the same features:
    standardised over the clip (the shape of its contours) and with the training set's statistics (where
    the clip lies: its level)."""
    both = tiny_model(mel_normalization="utterance+dataset", pitch_features=True)
    per_clip = tiny_model(mel_normalization="utterance", pitch_features=True)
    training_set = tiny_model(mel_normalization="dataset", pitch_features=True)
    training_set.frontend.dataset_norm.load_state_dict(both.frontend.dataset_norm.state_dict())
    torch.manual_seed(2)
    waveform = torch.randn(2, 6000) * torch.tensor([[0.1], [2.0]])
    mask = torch.ones(2, both.num_frames(6000), dtype=torch.bool)
    with torch.no_grad():
        features = both.frontend(waveform, mask)
        width = both.frontend.feature_dim
        assert features.shape[-1] == 2 * width == both.input_proj.in_features
        torch.testing.assert_close(features[..., :width], per_clip.frontend(waveform, mask))
        torch.testing.assert_close(features[..., width:], training_set.frontend(waveform, mask))
    # the level survives only in the training-set view
    assert features[1, :, width:].mean() > features[0, :, width:].mean() + 1.0


# ------------------------------------------------------------------------------------------- bad input


def test_inputs_are_checked_by_the_feature_extractor_not_by_forward():
    """forward polices nothing (so it traces); the feature extractor saved with the model refuses what it
    cannot classify, and a too-short clip that gets past it anyway gives NaN, never a plausible class."""
    for frontend, window in (("mel", 400), ("conv", 200)):  # conv: kernels (80, 4), strides (40, 4)
        model = tiny_model(frontend=frontend)
        assert model.min_input_samples == window
        extractor = feature_extractor_for(model)
        assert extractor.min_samples == window
        with pytest.raises(ValueError, match=f"minimum of {window} samples"):
            extractor(np.zeros(window - 1, dtype=np.float32), sampling_rate=RATE)
        with pytest.raises(ValueError, match="empty"):
            extractor([np.ones(1000, np.float32), np.zeros(0, np.float32)], sampling_rate=RATE)
        clip = np.random.randn(window).astype(np.float32)
        inputs = extractor(clip, sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            assert torch.isfinite(model(**inputs).logits).all()
            mask = torch.ones(2, 1000, dtype=torch.long)
            mask[1, window - 1 :] = 0
            logits = model(torch.randn(2, 1000), attention_mask=mask).logits
        assert torch.isfinite(logits[0]).all() and torch.isnan(logits[1]).all()


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(frontend="conv", bidirectional=False),
        dict(kernel="s4", dplr_kernel_length=512),
        dict(mel_normalization="dataset", pitch_features=True, pooling="mean_std"),
        dict(mel_normalization="utterance+dataset", pitch_features=True, pooling="mean_std"),
        dict(
            pitch_features=False,
            spectral_shape_functionals=False,
            functionals="basic",
            functionals_mel_group=1,
            normalize_waveform=True,
            pooling="mean",
        ),
    ],
    ids=[
        "s4d-mel-defaults",  # pitch channels, spectral shape, the extended functionals of grouped bands
        "s4d-conv-causal",
        "s4-dplr",
        "s4d-mel-pitch-dataset-meanstd",
        "s4d-mel-pitch-utterance+dataset-meanstd",
        "s4d-mel-earlier-defaults",  # no pitch, the basic functionals of every band
    ],
)
def test_forward_is_traceable_with_dynamic_batch_and_length(overrides):
    """torch.export traces the real forward (no data-dependent Python, no kernel cache while tracing), and
    the program it records gives the eager logits at another batch size and length."""
    model = tiny_model(**overrides)
    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    example = torch.randn(2, 16037)
    mask = torch.ones(2, 16037, dtype=torch.long)
    mask[1, 12000:] = 0
    with torch.no_grad():
        program = torch.export.export(
            model,
            (example,),
            {"attention_mask": mask},
            dynamic_shapes={"input_values": dims, "attention_mask": dims},
            strict=False,
        )
        # The S4D kernel is traced in blocks of 64 frames and the program keeps the example's 2+ blocks:
        # lengths from 0.7 s (65 frames) up.
        audio = torch.randn(3, 23456)
        mask = (torch.arange(23456)[None] < torch.tensor([23456, 15000, 11000])[:, None]).long()
        traced = program.module()(audio, attention_mask=mask).logits
        torch.testing.assert_close(traced, model(audio, attention_mask=mask).logits, atol=1e-4, rtol=0)


def test_dplr_refuses_inputs_longer_than_its_kernel():
    model = tiny_model(kernel="s4", dplr_kernel_length=16, functionals_head=False)
    with pytest.raises(ValueError, match="dplr_kernel_length=16"):
        model(torch.randn(1, 400 + 160 * 20))


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(kernel="s5"), "kernel="),
        (dict(d_state=15), "d_state"),
        (dict(dt_min=0.1, dt_max=0.01), "dt_min"),
        (dict(conv_kernel_sizes=[4], conv_strides=[2, 2]), "conv_kernel_sizes"),
        (dict(frontend="stft"), "frontend="),
        (dict(functionals="all"), "functionals="),
        (dict(mel_bins=40, functionals_mel_group=3), "functionals_mel_group=3 must divide mel_bins=40"),
        (dict(mfcc_head=-1), "mfcc_head=-1"),
    ],
)
def test_config_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        S4Config(**overrides)


def test_inference_kernel_cache_matches_and_is_invalidated_by_updates():
    model = tiny_model()
    audio = torch.randn(1, 6000)
    with torch.no_grad():
        cached = model(audio).logits  # power-of-two bucket, cached spectrum
        again = model(audio).logits
    exact = model(audio).logits.detach()  # gradients on: kernel of exactly L taps, no cache
    torch.testing.assert_close(cached, exact, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, cached, atol=0, rtol=0)
    with torch.no_grad():
        model.blocks[0].s4.kernel.ssm_log_dt.add_(1.0)  # what an optimiser step does
        updated = model(audio).logits
    torch.testing.assert_close(updated, model(audio).logits.detach(), atol=1e-5, rtol=0)
    assert (updated - cached).abs().max() > 1e-4
