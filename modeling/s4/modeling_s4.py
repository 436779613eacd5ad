"""S4 / S4D speech emotion classifier, in pure PyTorch.

Read top to bottom:

1. the convolution kernels of a diagonal SSM (S4D: Vandermonde product) and of a diagonal-plus-low-rank SSM
   (S4: Cauchy sums at the roots of unity with the Woodbury correction), each with its recurrent view;
2. the S4 layer (FFT convolution with the kernel, skip term D, optional backward kernel);
3. the front-ends that turn 16 kHz audio into 100 Hz frames (log-mel or a learned strided conv);
4. the classifier (`S4ForAudioClassification`) and its streaming interface.

Papers: Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces" (ICLR 2022)
and Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State Space Models"
(NeurIPS 2022).

Conventions. A layer has H channels (2H kernels when bidirectional) and a state of size N kept as N/2
complex-conjugate pairs, so every sum over states is `2 * Re(sum over the N/2 kept states)`. SSM parameters
(A, B, P, dt) are named `ssm_*`: `modeling.optimization` gives every parameter whose name starts with that
token its own learning rate and no weight decay. The whole SSM (kernel + FFT convolution) runs in float32,
also under autocast. Complex parameters are stored as real tensors with a trailing dimension of 2
(safetensors-friendly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_s4 import S4Config

SSM_PARAMETER_PREFIX = "ssm_"
"""Parameters whose own name (last dotted component) starts with this are SSM parameters (A, B, P, dt)."""


def _is_loaded(tensor: torch.Tensor) -> bool:
    # transformers flags parameters it has loaded or initialised; they must not be initialised again.
    return getattr(tensor, "_is_hf_initialized", False)


@torch.no_grad()
def _set_unless_initialised(param: torch.Tensor, value: torch.Tensor, mark: bool = True) -> None:
    """Write `value` unless transformers has loaded/initialised `param`; `mark` flags it as initialised.
    Modules' own __init__ must not mark (transformers would then skip the parameter when it is missing from a
    checkpoint); `_init_weights` marks, so that a second initialisation pass changes nothing."""
    if not _is_loaded(param):
        param.copy_(value.to(device=param.device, dtype=param.dtype))
        if mark:
            param._is_hf_initialized = True


def _as_complex(pair: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(pair.float().contiguous())


def _as_pair(z: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(z.to(torch.complex64)).clone()


def _log_uniform_dt(channels: int, dt_min: float, dt_max: float) -> torch.Tensor:
    return torch.rand(channels, device="cpu") * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def _complex_normal(*shape: int) -> torch.Tensor:
    # unit variance: real and imaginary parts each N(0, 1/2)
    return torch.complex(torch.randn(*shape, device="cpu"), torch.randn(*shape, device="cpu")) / math.sqrt(2)


# ---------------------------------------------------------------------------------------------------------
# Vandermonde products: K[h, l] = 2 Re sum_n coeffs[h, n] * exp(log_dA[h, n] * l)
# ---------------------------------------------------------------------------------------------------------


def complex_exp(z: torch.Tensor) -> torch.Tensor:
    """exp(z) through real exp/cos/sin, which are vectorised on CPU (complex exp is several times slower)."""
    magnitude, angle = torch.exp(z.real), z.imag
    return torch.complex(magnitude * torch.cos(angle), magnitude * torch.sin(angle))


def vandermonde_kernel_naive(coeffs: torch.Tensor, log_dA: torch.Tensor, length: int) -> torch.Tensor:
    """Reference: materialises the whole H x N/2 x L complex Vandermonde matrix (memory O(H N L))."""
    positions = torch.arange(length, device=coeffs.device, dtype=torch.float32)
    vandermonde = complex_exp(log_dA.unsqueeze(-1) * positions)
    return 2 * torch.einsum("hn,hnl->hl", coeffs, vandermonde).real


def vandermonde_kernel(
    coeffs: torch.Tensor, log_dA: torch.Tensor, length: int, block: int | None = None
) -> torch.Tensor:
    """The same kernel with bounded memory: positions are split as l = b * block + j, so that

        exp(log_dA * l) = exp(log_dA * b * block) * exp(log_dA * j)

    and K = 2 Re[(coeffs * outer)^T @ inner] is one batched matmul of an H x (L/block) x N/2 matrix with an
    H x N/2 x block matrix. With block ~ sqrt(L) the largest tensor is O(H N sqrt(L) + H L) instead of
    O(H N L), and only O(H N sqrt(L)) exponentials are taken. Only the real part is needed, so the complex
    product is one real matmul: Re(W V) = [Re W, -Im W] @ [Re V; Im V].
    """
    if block is None:
        block = max(1, math.isqrt(max(length - 1, 0)) + 1)
    n_blocks = -(-length // block)
    offsets = torch.arange(block, device=coeffs.device, dtype=torch.float32)
    starts = torch.arange(n_blocks, device=coeffs.device, dtype=torch.float32) * block
    inner = complex_exp(log_dA.unsqueeze(-1) * offsets)  # H, N/2, block
    outer = coeffs.unsqueeze(-1) * complex_exp(log_dA.unsqueeze(-1) * starts)  # H, N/2, n_blocks
    left = torch.cat([outer.real, -outer.imag], dim=1).transpose(1, 2)  # H, n_blocks, N
    right = torch.cat([inner.real, inner.imag], dim=1)  # H, N, block
    blocks = torch.bmm(left, right)  # H, n_blocks, block
    return 2 * blocks.reshape(coeffs.shape[0], n_blocks * block)[:, :length]


# ---------------------------------------------------------------------------------------------------------
# S4D: diagonal state matrix
# ---------------------------------------------------------------------------------------------------------


class _SSMKernel(nn.Module):
    """Shared by both kernels: A = -exp(ssm_A_log_real) + i ssm_A_imag, structured (re-)initialisation."""

    def initial_values(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def initialize_ssm(self, force: bool = False, mark: bool = True) -> None:
        """Set the structured initialisation on every parameter that transformers has not loaded or
        initialised yet (on all of them with `force`), and flag them as initialised if `mark`."""
        with torch.device("cpu"):  # real values even when transformers builds the model on the meta device
            values = self.initial_values()
        for name, value in values.items():
            param = getattr(self, name)
            if force:
                param._is_hf_initialized = False
            _set_unless_initialised(param, value, mark=mark)

    def state_matrix(self) -> torch.Tensor:
        return -torch.exp(self.ssm_A_log_real.float()) + 1j * self.ssm_A_imag.float()


class S4DKernel(_SSMKernel):
    """Convolution kernel of `channels` independent diagonal SSMs x' = A x + B u, y = C x.

    A = -exp(ssm_A_log_real) + i * ssm_A_imag (real part kept negative), dt = exp(ssm_log_dt).
    Discretisation (zero-order hold): dA = exp(dt A), dB = (exp(dt A) - 1) / A * B; or bilinear:
    dA = (1 + dt A / 2) / (1 - dt A / 2), dB = dt B / (1 - dt A / 2). The kernel is
    K[h, l] = 2 Re sum_n C[h, n] dB[h, n] dA[h, n]^l, computed by `vandermonde_kernel`.
    """

    def __init__(
        self,
        channels: int,
        d_state: int,
        init: str = "lin",
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        self.channels, self.d_state, self.init = channels, d_state, init
        self.discretization, self.dt_min, self.dt_max = discretization, dt_min, dt_max
        half = d_state // 2
        self.ssm_log_dt = nn.Parameter(torch.empty(channels))
        self.ssm_A_log_real = nn.Parameter(torch.empty(channels, half))
        self.ssm_A_imag = nn.Parameter(torch.empty(channels, half))
        self.ssm_B = nn.Parameter(torch.empty(channels, half, 2))
        self.C = nn.Parameter(torch.empty(channels, half, 2))
        self.initialize_ssm(mark=False)
        self._step_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def initial_values(self) -> dict[str, torch.Tensor]:
        """S4D-Lin: A_n = -1/2 + i pi n; S4D-Inv: A_n = -1/2 + i N/pi (N/(2n+1) - 1); B = 1; C ~ CN(0, 1)."""
        half, n = self.d_state // 2, torch.arange(self.d_state // 2, device="cpu", dtype=torch.float32)
        if self.init == "lin":
            imag = math.pi * n
        else:
            imag = self.d_state / math.pi * (self.d_state / (2 * n + 1) - 1)
        return {
            "ssm_log_dt": _log_uniform_dt(self.channels, self.dt_min, self.dt_max),
            "ssm_A_log_real": torch.full((self.channels, half), math.log(0.5)),
            "ssm_A_imag": imag.expand(self.channels, half),
            "ssm_B": _as_pair(torch.ones(self.channels, half, dtype=torch.complex64)),
            "C": _as_pair(_complex_normal(self.channels, half)),
        }

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (log dA, dA, dB, C), each channels x N/2 complex64."""
        dt = torch.exp(self.ssm_log_dt.float()).unsqueeze(-1)
        A, B, C = self.state_matrix(), _as_complex(self.ssm_B), _as_complex(self.C)
        dtA = dt * A
        if self.discretization == "zoh":
            log_dA = dtA
            dB = torch.expm1(dtA) / A * B
        else:
            dA = (1 + dtA / 2) / (1 - dtA / 2)
            log_dA = torch.log(dA)  # principal branch is fine: only integer powers are taken
            dB = dt * B / (1 - dtA / 2)
        return log_dA, torch.exp(log_dA), dB, C

    def forward(self, length: int, naive: bool = False) -> torch.Tensor:
        """Kernel of shape channels x length, float32 (also under autocast)."""
        with torch.autocast(device_type=self.C.device.type, enabled=False):
            log_dA, _, dB, C = self.discretize()
            if naive:
                return vandermonde_kernel_naive(C * dB, log_dA, length)
            return vandermonde_kernel(C * dB, log_dA, length)

    # Recurrent view: x_k = dA x_{k-1} + dB u_k, y_k = 2 Re(C x_k)

    def setup_step(self) -> None:
        """Cache the discretised (dA, dB, C); call again whenever the parameters change."""
        with torch.no_grad():
            _, dA, dB, C = self.discretize()
        self._step_cache = (dA, dB, C)

    def default_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(
            batch_size, self.channels, self.d_state // 2, dtype=torch.complex64, device=self.C.device
        )

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u: batch x channels (one time step) -> (y: batch x channels, new state)."""
        if self._step_cache is None:
            raise RuntimeError("call setup_step() before step()")
        dA, dB, C = self._step_cache
        state = dA * state + dB * u.float().unsqueeze(-1)
        return 2 * (C * state).sum(-1).real, state


# ---------------------------------------------------------------------------------------------------------
# S4: diagonal plus low rank (DPLR) state matrix A = Lambda - P P*
# ---------------------------------------------------------------------------------------------------------


def hippo_legs_dplr(d_state: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiPPO-LegS in normal-plus-low-rank form, diagonalised: returns (Lambda, P, B) for the N/2 eigenvalues
    with positive imaginary part (the other half are their conjugates).

    A[n, k] = -sqrt(2n+1) sqrt(2k+1) (n > k), -(n+1) (n = k), 0 (n < k); B[n] = sqrt(2n+1).
    With P[n] = sqrt(n + 1/2), A + P P^T = -I/2 + S with S skew-symmetric, so S = V diag(i w) V* with V
    unitary and A = V (Lambda - (V* P)(V* P)*) V*, Lambda = -1/2 + i w.
    """
    n = torch.arange(d_state, dtype=torch.float64, device="cpu")
    root = torch.sqrt(2 * n + 1)
    A = -torch.tril(torch.outer(root, root), diagonal=-1) - torch.diag(n + 1)
    P = torch.sqrt(n + 0.5)
    skew = A + torch.outer(P, P) + 0.5 * torch.eye(d_state, dtype=torch.float64)
    w, V = torch.linalg.eigh(-1j * skew.to(torch.complex128))  # -i S is Hermitian with real eigenvalues w
    keep = torch.argsort(w, descending=True)[: d_state // 2]
    V = V[:, keep]
    Lambda = -0.5 + 1j * w[keep]
    return Lambda, V.conj().T @ P.to(torch.complex128), V.conj().T @ root.to(torch.complex128)


class DPLRKernel(_SSMKernel):
    """Convolution kernel of `channels` SSMs with A = Lambda - P P* (bilinear discretisation).

    As in the S4 paper the trained output vector is C~ = C (I - dA^l) for a fixed length l
    (`kernel_length`): then the truncated generating function sum_{k<l} C dA^k dB z^k evaluated at the l-th
    roots of unity is C~ (I - dA z)^-1 dB, which the Woodbury identity reduces to four Cauchy sums over the
    diagonal Lambda. We write the resolvent in the form ((1 - w) - dt/2 (1 + w) A)^-1, which has no pole at
    w = -1, instead of dividing by (1 + w). Kernels for shorter inputs are the first L taps (exact).
    Memory is O(channels x N/2 x l/2) complex, as in the reference's pure-PyTorch path: use it on frames.
    """

    def __init__(
        self, channels: int, d_state: int, kernel_length: int, dt_min: float = 1e-3, dt_max: float = 1e-1
    ):
        super().__init__()
        self.channels, self.d_state, self.kernel_length = channels, d_state, kernel_length
        self.dt_min, self.dt_max = dt_min, dt_max
        half = d_state // 2
        self.ssm_log_dt = nn.Parameter(torch.empty(channels))
        self.ssm_A_log_real = nn.Parameter(torch.empty(channels, half))
        self.ssm_A_imag = nn.Parameter(torch.empty(channels, half))
        self.ssm_P = nn.Parameter(torch.empty(channels, half, 2))
        self.ssm_B = nn.Parameter(torch.empty(channels, half, 2))
        self.C = nn.Parameter(torch.empty(channels, half, 2))  # C~, see the class docstring
        self.initialize_ssm(mark=False)
        self._step_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def initial_values(self) -> dict[str, torch.Tensor]:
        Lambda, P, B = hippo_legs_dplr(self.d_state)
        half = self.d_state // 2

        def per_channel(z: torch.Tensor) -> torch.Tensor:
            return z.to(torch.complex64).expand(self.channels, half)

        return {
            "ssm_log_dt": _log_uniform_dt(self.channels, self.dt_min, self.dt_max),
            "ssm_A_log_real": torch.log(-per_channel(Lambda).real),
            "ssm_A_imag": per_channel(Lambda).imag,
            "ssm_P": _as_pair(per_channel(P)),
            "ssm_B": _as_pair(per_channel(B)),
            "C": _as_pair(_complex_normal(self.channels, half)),
        }

    def forward(self, length: int, naive: bool = False) -> torch.Tensor:
        """Kernel of shape channels x length, float32 (also under autocast)."""
        del naive  # one algorithm only
        with torch.autocast(device_type=self.C.device.type, enabled=False):
            return self._kernel(length)

    def _kernel(self, length: int) -> torch.Tensor:
        if length > self.kernel_length:
            raise ValueError(
                f"kernel='s4' was set up for at most dplr_kernel_length={self.kernel_length} frames but the "
                f"input has {length}; raise S4Config.dplr_kernel_length or use kernel='s4d'"
            )
        ell = self.kernel_length
        dt = torch.exp(self.ssm_log_dt.float()).unsqueeze(-1)
        Lambda = self.state_matrix()
        P, B, C = _as_complex(self.ssm_P), _as_complex(self.ssm_B), _as_complex(self.C)
        omega = torch.exp(-2j * math.pi * torch.arange(ell // 2 + 1, device=dt.device) / ell)
        scale = (dt / 2) * (1 + omega)  # channels x F
        denom = (1 - omega) - scale.unsqueeze(1) * Lambda.unsqueeze(-1)  # channels x N/2 x F
        denom_conj = (1 - omega) - scale.unsqueeze(1) * Lambda.conj().unsqueeze(-1)
        numerators = torch.stack([C * B, C * P, P.conj() * B, P.conj() * P], dim=1)  # channels x 4 x N/2
        # each Cauchy sum runs over the kept states and their conjugate partners
        r = torch.bmm(numerators, 1 / denom) + torch.bmm(numerators.conj(), 1 / denom_conj)
        r00, r01, r10, r11 = r.unbind(1)
        spectrum = dt * (r00 - scale * r01 * r10 / (1 + scale * r11))
        return torch.fft.irfft(spectrum, n=ell)[:, :length]

    # Recurrent view on the full N-dimensional complex state (the low-rank term couples conjugate pairs)

    def setup_step(self) -> None:
        """Dense bilinear dA, dB and the output vector C = C~ (I - dA^l)^-1, computed in complex128."""
        with torch.no_grad():
            dt = torch.exp(self.ssm_log_dt.double())[:, None, None]
            Lambda = self.state_matrix().to(torch.complex128)
            P, B, C_tilde = (_as_complex(p).to(torch.complex128) for p in (self.ssm_P, self.ssm_B, self.C))
            Lambda, P, B, C_tilde = (torch.cat([z, z.conj()], dim=-1) for z in (Lambda, P, B, C_tilde))
            eye = torch.eye(self.d_state, dtype=torch.complex128, device=P.device)
            A = torch.diag_embed(Lambda) - P.unsqueeze(-1) * P.conj().unsqueeze(-2)
            backward = eye - dt / 2 * A
            dA = torch.linalg.solve(backward, eye + dt / 2 * A)
            dB = torch.linalg.solve(backward, dt[..., 0] * B)
            power = torch.linalg.matrix_power(dA, self.kernel_length)
            C = torch.linalg.solve((eye - power).transpose(-1, -2), C_tilde)
        self._step_cache = (dA.to(torch.complex64), dB.to(torch.complex64), C.to(torch.complex64))

    def default_state(self, batch_size: int) -> torch.Tensor:
        shape = (batch_size, self.channels, self.d_state)
        return torch.zeros(shape, dtype=torch.complex64, device=self.C.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._step_cache is None:
            raise RuntimeError("call setup_step() before step()")
        dA, dB, C = self._step_cache
        state = torch.einsum("hmn,bhn->bhm", dA, state) + dB * u.float().unsqueeze(-1)
        return (C * state).sum(-1).real, state


# ---------------------------------------------------------------------------------------------------------
# The S4 layer: y = K * u + D u (FFT convolution), optionally plus a backward kernel
# ---------------------------------------------------------------------------------------------------------


def _fast_fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (such FFT sizes are several times faster than sizes with large primes)."""
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


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
        _set_unless_initialised(self.D, torch.randn(config.d_model, device="cpu"), mark=False)
        self._spectrum_cache: tuple[tuple, torch.Tensor] | None = None

    def kernel_spectrum(self, length: int, n_fft: int, naive: bool = False) -> torch.Tensor:
        """rfft (size n_fft >= 2 * length) of the H causal kernels of `length` taps, plus the backward ones
        placed at the end (negative lags) when bidirectional."""
        k = self.kernel(length, naive=naive)
        if self.bidirectional:
            k_forward, k_backward = k.split(self.d_model, dim=0)
            # tap m of the backward kernel (lag -(m + 1)) goes to position n_fft - 1 - m
            k = torch.cat([F.pad(k_forward, (0, n_fft - 2 * length)), k_backward.flip(-1)], dim=-1)
        return torch.fft.rfft(k, n=n_fft)

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
            if self.training or torch.is_grad_enabled() or naive_kernel:
                n_fft = _fast_fft_size(2 * length)  # >= 2L: the circular convolution never wraps around
                k_spectrum = self.kernel_spectrum(length, n_fft, naive=naive_kernel)
            else:
                # Inference: one cached kernel per power-of-two length bucket serves every clip up to that
                # length; taps beyond L never reach an output t < L when n_fft >= 2 * bucket.
                bucket = 1 << (length - 1).bit_length()
                if isinstance(self.kernel, DPLRKernel):
                    bucket = min(bucket, self.kernel.kernel_length)
                n_fft = 2 * bucket
                k_spectrum = self._cached_kernel_spectrum(bucket, n_fft)
            y = torch.fft.irfft(torch.fft.rfft(u, n=n_fft) * k_spectrum, n=n_fft)[..., :length]
            y = y + self.D.float().unsqueeze(-1) * u
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


class MelFrontend(nn.Module):
    """Log-mel frames (float32, on the model's device), normalised per band over the clip, causally or not."""

    def __init__(self, config: S4Config):
        super().__init__()
        self.window = round(config.frame_length_ms * config.sampling_rate / 1000)
        self.hop = round(config.frame_shift_ms * config.sampling_rate / 1000)
        self.n_fft = 1 << (self.window - 1).bit_length()
        self.normalization = config.mel_normalization
        self.out_dim = config.mel_bins
        with torch.device("cpu"):  # real values even when transformers builds the model on the meta device
            window = torch.hann_window(self.window, periodic=True)
            filters = torchaudio.functional.melscale_fbanks(
                self.n_fft // 2 + 1, 0.0, config.sampling_rate / 2, config.mel_bins, config.sampling_rate
            )
        self.register_buffer("analysis_window", window)
        self.register_buffer("mel_filters", filters)

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """batch x samples -> batch x frames x mel_bins (frames whose window fits in the given samples)."""
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            frames = waveform.float().unfold(-1, self.window, self.hop) * self.analysis_window.float()
            power = torch.fft.rfft(frames, n=self.n_fft).abs().square()
            return torch.log(power @ self.mel_filters.float() + 1e-6)

    def forward(self, waveform: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        features = self.log_mel(waveform)
        if self.normalization == "utterance":
            weight = frame_mask.unsqueeze(-1).float()
            count = weight.sum(1, keepdim=True)
            mean = (features * weight).sum(1, keepdim=True) / count
            var = ((features - mean).square() * weight).sum(1, keepdim=True) / count
            features = (features - mean) / torch.sqrt(var + 1e-5)
        elif self.normalization == "causal":
            features = self.causal_normalize(features, *self.empty_norm_state(features))[0]
        return features.masked_fill(~frame_mask.unsqueeze(-1), 0.0)

    def empty_norm_state(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zeros = like.new_zeros(like.shape[0], self.out_dim)
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
    pooled_sum: torch.Tensor  # batch x d_model, sum of the final hidden states so far
    n_frames: int = 0
    norm_state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # mel_normalization="causal"


class S4PreTrainedModel(PreTrainedModel):
    config_class = S4Config
    base_model_prefix = "s4"
    main_input_name = "input_values"

    def _init_weights(self, module: nn.Module) -> None:
        # SSM parameters get their structured initialisation (S4D / HiPPO), never a generic normal init,
        # and only when transformers has not loaded or initialised them already.
        if isinstance(module, _SSMKernel):
            module.initialize_ssm()
        elif isinstance(module, S4Layer):
            _set_unless_initialised(module.D, torch.randn(module.D.shape, device="cpu"))
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            if not _is_loaded(module.weight):
                with torch.no_grad():
                    module.weight.normal_(0.0, self.config.initializer_range)
            if module.bias is not None and not _is_loaded(module.bias):
                with torch.no_grad():
                    module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            _set_unless_initialised(module.weight, torch.ones_like(module.weight, device="cpu"))
            _set_unless_initialised(module.bias, torch.zeros_like(module.bias, device="cpu"))


class S4ForAudioClassification(S4PreTrainedModel):
    """Front-end -> Linear(d_model) -> n_layers x S4Block -> LayerNorm -> masked mean pooling -> Linear head.

    Input: `input_values` (batch x samples, mono float at `config.sampling_rate`) and `attention_mask`
    (1 real, 0 padding; padding at the end). A 1-D `input_values` is read as one clip. Padding never changes
    a prediction: frames are computed only inside the real samples, padded steps are zeroed before every S4
    layer and excluded from the pooling. Clips shorter than one front-end window raise a ValueError.

    Streaming (causal configurations: `bidirectional=False` and, for the mel front-end,
    `mel_normalization` "causal" or "none"): `state = model.init_stream_state(batch)`, then
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
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    @property
    def min_input_samples(self) -> int:
        """The shortest clip (in samples) that yields one frame."""
        return self.frontend.window

    def _clip_lengths(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if input_values.dim() == 1:
            input_values = input_values.unsqueeze(0)
            attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
        if input_values.dim() != 2:
            raise ValueError(
                f"input_values must be batch x samples (mono audio at {self.config.sampling_rate} Hz); got "
                f"shape {tuple(input_values.shape)}. Mix multi-channel audio down to mono first."
            )
        batch, n_samples = input_values.shape
        if n_samples == 0:
            raise ValueError("input_values has 0 samples: every clip is empty")
        positions = torch.arange(n_samples, device=input_values.device)
        if attention_mask is None:
            lengths = torch.full((batch,), n_samples, device=input_values.device)
        else:
            if attention_mask.shape != input_values.shape:
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)} but input_values has "
                    f"{tuple(input_values.shape)}"
                )
            mask = attention_mask.bool()
            lengths = mask.sum(-1)
            if not torch.equal(mask, positions < lengths.unsqueeze(-1)):
                raise ValueError(
                    "attention_mask must be ones followed by zeros (padding at the end of each clip)"
                )
        empty = (lengths == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"clip(s) {empty[:10]} of the batch are empty (attention_mask is all zeros)")
        too_short = (lengths < self.min_input_samples).nonzero().flatten().tolist()
        if too_short:
            window, rate = self.min_input_samples, self.config.sampling_rate
            details = ", ".join(f"clip {i}: {int(lengths[i])} samples" for i in too_short[:5])
            raise ValueError(
                f"{len(too_short)} clip(s) too short ({details}): the S4 '{self.config.frontend}' "
                f"front-end needs at least {window} samples ({1000 * window / rate:g} ms at {rate} Hz) for "
                "one frame. Drop such clips or filter the dataset by duration."
            )
        samples = input_values.masked_fill(positions >= lengths.unsqueeze(-1), 0.0)
        return samples, lengths

    def _frame_mask(self, lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
        valid_frames = (lengths - self.frontend.window) // self.frontend.hop + 1
        return torch.arange(n_frames, device=lengths.device) < valid_frames.unsqueeze(-1)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        samples, lengths = self._clip_lengths(input_values, attention_mask)
        n_frames = (samples.shape[-1] - self.frontend.window) // self.frontend.hop + 1
        frame_mask = self._frame_mask(lengths, n_frames)
        hidden = self.input_proj(self.frontend(samples, frame_mask).to(self.input_proj.weight.dtype))
        all_hidden = [hidden] if output_hidden_states else None
        for block in self.blocks:
            hidden = block(hidden, frame_mask)
            if all_hidden is not None:
                all_hidden.append(hidden)
        hidden = self.final_norm(hidden)
        weight = frame_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weight).sum(1) / weight.sum(1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.to(logits.device).long())
        hidden_states = tuple(all_hidden) if all_hidden is not None else None
        if return_dict is False:
            return tuple(v for v in (loss, logits, hidden_states) if v is not None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states)

    # -- streaming ---------------------------------------------------------------------------------------

    def _check_streamable(self) -> None:
        if self.config.bidirectional:
            raise ValueError("streaming needs a causal model: this one has bidirectional=True")
        if self.config.frontend == "mel" and self.config.mel_normalization == "utterance":
            raise ValueError(
                "streaming needs a causal front-end: mel_normalization='utterance' uses the whole clip; "
                "train with 'causal' or 'none'"
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
            if isinstance(self.frontend, MelFrontend):
                features = self.frontend.log_mel(used)
                if state.norm_state is not None:
                    features, state.norm_state = self.frontend.causal_normalize(features, *state.norm_state)
            else:
                all_valid = torch.ones(used.shape[0], n_new, dtype=torch.bool, device=used.device)
                features = self.frontend(used, all_valid)
            hidden = self.input_proj(features.to(self.input_proj.weight.dtype))
            for t in range(n_new):
                x = hidden[:, t]
                for i, block in enumerate(self.blocks):
                    x, state.layer_states[i] = block.step(x, state.layer_states[i])
                state.pooled_sum = state.pooled_sum + self.final_norm(x).float()
            state.n_frames += n_new
            samples = samples[:, n_new * hop :]
        state.samples = samples
        if state.n_frames == 0:
            return None, state
        pooled = (state.pooled_sum / state.n_frames).to(self.classifier.weight.dtype)
        return self.classifier(pooled), state


__all__ = [
    "DPLRKernel",
    "S4Block",
    "S4DKernel",
    "S4ForAudioClassification",
    "S4Layer",
    "S4PreTrainedModel",
    "S4StreamState",
    "hippo_legs_dplr",
    "vandermonde_kernel",
    "vandermonde_kernel_naive",
]
