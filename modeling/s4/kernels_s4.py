"""S4 and S4D convolution kernels and the FFT convolution, written as the equations of the papers.

An SSM with H channels and state size N maps an input u (one scalar per step and channel) to y:

    x'(t) = A x(t) + B u(t),   y(t) = C x(t)          (continuous)
    x_k = dA x_{k-1} + dB u_k,  y_k = C x_k            (discrete, step dt)
    y = K * u,  K[l] = C dA^l dB                       (the same map as a causal convolution)

A kernel module turns its parameters into K (H x L taps, float32) and also offers the recurrent view
(`setup_step`, `default_state`, `step`) for streaming. `fft_convolution` applies K to u in O(L log L).

* S4D (`S4DKernel`): A diagonal. K[h, l] = 2 Re sum_n C[h, n] dB[h, n] dA[h, n]^l is a Vandermonde
  product (`vandermonde_kernel`).
* S4 (`DPLRKernel`): A = Lambda - P P* (diagonal plus low rank, HiPPO-LegS). The truncated generating
  function of K at the roots of unity is four Cauchy sums over Lambda joined by the Woodbury identity; an
  inverse FFT gives K.

States come in complex-conjugate pairs: only N/2 are kept and every sum over states is 2 Re(sum over the kept
ones). Complex parameters are stored as real tensors with a trailing dimension of 2 (safetensors has no
complex type). SSM parameters (A, B, P, dt) are named `ssm_*` (`SSM_PARAMETER_PREFIX`): the optimiser gives
them their own learning rate and no weight decay. The kernels and the convolution run in float32, also under
autocast.

Papers: Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces" (ICLR 2022);
Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State Space Models"
(NeurIPS 2022). The layout follows the S4 repository's minimal `s4d.py`.

This file imports only torch: `modeling_s4.py` imports it, and `save_pretrained` copies both next to a
saved model (loaded with `trust_remote_code=True` where this project is not installed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SSM_PARAMETER_PREFIX = "ssm_"
"""Parameters whose own name (last dotted component) starts with this are SSM parameters (A, B, P, dt)."""


# ---------------------------------------------------------------------------------------------------------
# Parameter storage and initialisation
# ---------------------------------------------------------------------------------------------------------


def is_loaded(tensor: torch.Tensor) -> bool:
    # transformers flags parameters it has loaded or initialised; they must not be initialised again.
    return getattr(tensor, "_is_hf_initialized", False)


@torch.no_grad()
def set_unless_initialised(param: torch.Tensor, value: torch.Tensor, mark: bool = True) -> None:
    """Write `value` unless transformers has loaded/initialised `param`; `mark` flags it as initialised.
    Modules' own __init__ must not mark (transformers would then skip the parameter when it is missing from a
    checkpoint); `_init_weights` marks, so that a second initialisation pass changes nothing."""
    if not is_loaded(param):
        param.copy_(value.to(device=param.device, dtype=param.dtype))
        if mark:
            param._is_hf_initialized = True


def as_complex(pair: torch.Tensor) -> torch.Tensor:
    """(..., 2) real storage -> (...) complex64."""
    return torch.view_as_complex(pair.float().contiguous())


def as_pair(z: torch.Tensor) -> torch.Tensor:
    """(...) complex -> (..., 2) real storage."""
    return torch.view_as_real(z.to(torch.complex64)).clone()


def log_uniform_dt(channels: int, dt_min: float, dt_max: float) -> torch.Tensor:
    """log dt ~ U(log dt_min, log dt_max), one per channel."""
    return torch.rand(channels, device="cpu") * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def complex_normal(*shape: int) -> torch.Tensor:
    """CN(0, 1): real and imaginary parts each N(0, 1/2)."""
    return torch.complex(torch.randn(*shape, device="cpu"), torch.randn(*shape, device="cpu")) / math.sqrt(2)


# ---------------------------------------------------------------------------------------------------------
# Vandermonde products: K[h, l] = 2 Re sum_n coeffs[h, n] * exp(log_dA[h, n] * l)
# ---------------------------------------------------------------------------------------------------------


def complex_exp(z: torch.Tensor) -> torch.Tensor:
    """exp(z) = exp(Re z) (cos Im z + i sin Im z) through real exp/cos/sin, which are vectorised on CPU
    (complex exp is several times slower)."""
    magnitude, angle = torch.exp(z.real), z.imag
    return torch.complex(magnitude * torch.cos(angle), magnitude * torch.sin(angle))


def vandermonde_kernel_naive(coeffs: torch.Tensor, log_dA: torch.Tensor, length: int) -> torch.Tensor:
    """Reference: materialises the whole H x N/2 x L complex Vandermonde matrix (memory O(H N L))."""
    positions = torch.arange(length, device=coeffs.device, dtype=torch.float32)  # L
    vandermonde = complex_exp(log_dA.unsqueeze(-1) * positions)  # H, N/2, L: dA^l
    return 2 * torch.einsum("hn,hnl->hl", coeffs, vandermonde).real  # H, L


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
        # A traced (symbolic) length has no isqrt: a fixed block (memory still O(H N (64 + L / 64))).
        block = 64 if torch.compiler.is_compiling() else max(1, math.isqrt(max(length - 1, 0)) + 1)
    n_blocks = (length + block - 1) // block
    offsets = torch.arange(block, device=coeffs.device, dtype=torch.float32)  # j
    starts = torch.arange(n_blocks, device=coeffs.device, dtype=torch.float32) * block  # b * block
    inner = complex_exp(log_dA.unsqueeze(-1) * offsets)  # H, N/2, block
    outer = coeffs.unsqueeze(-1) * complex_exp(log_dA.unsqueeze(-1) * starts)  # H, N/2, n_blocks
    left = torch.cat([outer.real, -outer.imag], dim=1).transpose(1, 2)  # H, n_blocks, N
    right = torch.cat([inner.real, inner.imag], dim=1)  # H, N, block
    blocks = torch.bmm(left, right)  # H, n_blocks, block
    return 2 * blocks.reshape(coeffs.shape[0], n_blocks * block)[:, :length]  # H, L


# ---------------------------------------------------------------------------------------------------------
# S4D: diagonal state matrix
# ---------------------------------------------------------------------------------------------------------


class SSMKernel(nn.Module):
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
            set_unless_initialised(param, value, mark=mark)

    def state_matrix(self) -> torch.Tensor:
        """A (channels x N/2 complex); its real part is negative by construction: the SSM is stable."""
        return -torch.exp(self.ssm_A_log_real.float()) + 1j * self.ssm_A_imag.float()


class S4DKernel(SSMKernel):
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
        self.ssm_log_dt = nn.Parameter(torch.empty(channels))  # H
        self.ssm_A_log_real = nn.Parameter(torch.empty(channels, half))  # H, N/2
        self.ssm_A_imag = nn.Parameter(torch.empty(channels, half))  # H, N/2
        self.ssm_B = nn.Parameter(torch.empty(channels, half, 2))  # H, N/2 complex
        self.C = nn.Parameter(torch.empty(channels, half, 2))  # H, N/2 complex
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
            "ssm_log_dt": log_uniform_dt(self.channels, self.dt_min, self.dt_max),
            "ssm_A_log_real": torch.full((self.channels, half), math.log(0.5)),
            "ssm_A_imag": imag.expand(self.channels, half),
            "ssm_B": as_pair(torch.ones(self.channels, half, dtype=torch.complex64)),
            "C": as_pair(complex_normal(self.channels, half)),
        }

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (log dA, dA, dB, C), each channels x N/2 complex64."""
        dt = torch.exp(self.ssm_log_dt.float()).unsqueeze(-1)  # H, 1
        A, B, C = self.state_matrix(), as_complex(self.ssm_B), as_complex(self.C)  # H, N/2
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
        state = dA * state + dB * u.float().unsqueeze(-1)  # batch, H, N/2
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


class DPLRKernel(SSMKernel):
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
        self.ssm_log_dt = nn.Parameter(torch.empty(channels))  # H
        self.ssm_A_log_real = nn.Parameter(torch.empty(channels, half))  # H, N/2 (Lambda)
        self.ssm_A_imag = nn.Parameter(torch.empty(channels, half))  # H, N/2 (Lambda)
        self.ssm_P = nn.Parameter(torch.empty(channels, half, 2))  # H, N/2 complex
        self.ssm_B = nn.Parameter(torch.empty(channels, half, 2))  # H, N/2 complex
        self.C = nn.Parameter(torch.empty(channels, half, 2))  # H, N/2 complex: C~, see the class docstring
        self.initialize_ssm(mark=False)
        self._step_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def initial_values(self) -> dict[str, torch.Tensor]:
        Lambda, P, B = hippo_legs_dplr(self.d_state)
        half = self.d_state // 2

        def per_channel(z: torch.Tensor) -> torch.Tensor:
            return z.to(torch.complex64).expand(self.channels, half)

        return {
            "ssm_log_dt": log_uniform_dt(self.channels, self.dt_min, self.dt_max),
            "ssm_A_log_real": torch.log(-per_channel(Lambda).real),
            "ssm_A_imag": per_channel(Lambda).imag,
            "ssm_P": as_pair(per_channel(P)),
            "ssm_B": as_pair(per_channel(B)),
            "C": as_pair(complex_normal(self.channels, half)),
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
        dt = torch.exp(self.ssm_log_dt.float()).unsqueeze(-1)  # H, 1
        Lambda = self.state_matrix()  # H, N/2
        P, B, C = as_complex(self.ssm_P), as_complex(self.ssm_B), as_complex(self.C)  # H, N/2
        # F = ell/2 + 1 roots of unity (an rfft's worth)
        omega = torch.exp(-2j * math.pi * torch.arange(ell // 2 + 1, device=dt.device) / ell)
        scale = (dt / 2) * (1 + omega)  # H, F
        denom = (1 - omega) - scale.unsqueeze(1) * Lambda.unsqueeze(-1)  # H, N/2, F
        denom_conj = (1 - omega) - scale.unsqueeze(1) * Lambda.conj().unsqueeze(-1)
        numerators = torch.stack([C * B, C * P, P.conj() * B, P.conj() * P], dim=1)  # H, 4, N/2
        # each Cauchy sum runs over the kept states and their conjugate partners
        r = torch.bmm(numerators, 1 / denom) + torch.bmm(numerators.conj(), 1 / denom_conj)  # H, 4, F
        r00, r01, r10, r11 = r.unbind(1)
        spectrum = dt * (r00 - scale * r01 * r10 / (1 + scale * r11))  # Woodbury: H, F
        return torch.fft.irfft(spectrum, n=ell)[:, :length]  # H, L

    # Recurrent view on the full N-dimensional complex state (the low-rank term couples conjugate pairs)

    def setup_step(self) -> None:
        """Dense bilinear dA, dB and the output vector C = C~ (I - dA^l)^-1, computed in complex128."""
        with torch.no_grad():
            dt = torch.exp(self.ssm_log_dt.double())[:, None, None]
            Lambda = self.state_matrix().to(torch.complex128)
            P, B, C_tilde = (as_complex(p).to(torch.complex128) for p in (self.ssm_P, self.ssm_B, self.C))
            Lambda, P, B, C_tilde = (torch.cat([z, z.conj()], dim=-1) for z in (Lambda, P, B, C_tilde))
            eye = torch.eye(self.d_state, dtype=torch.complex128, device=P.device)
            A = torch.diag_embed(Lambda) - P.unsqueeze(-1) * P.conj().unsqueeze(-2)  # H, N, N
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
        state = torch.einsum("hmn,bhn->bhm", dA, state) + dB * u.float().unsqueeze(-1)  # batch, H, N
        return (C * state).sum(-1).real, state


# ---------------------------------------------------------------------------------------------------------
# FFT convolution: y = K * u in O(L log L)
# ---------------------------------------------------------------------------------------------------------


def fast_fft_size(n: int) -> int:
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


def kernel_spectrum(k: torch.Tensor, n_fft: int, bidirectional: bool = False) -> torch.Tensor:
    """rfft (size n_fft >= 2 L) of the kernel taps `k` (H x L, or 2H x L when `bidirectional`).

    Causal: tap l is the weight of lag l. Bidirectional: the first H rows are the forward kernels (lags
    0..L-1) and the last H the backward ones; backward tap m is lag -(m + 1), which the circular convolution
    reads from position n_fft - 1 - m, at the end of the same buffer.
    """
    if bidirectional:
        length = k.shape[-1]
        k_forward, k_backward = k.split(k.shape[0] // 2, dim=0)  # H, L each
        k = torch.cat([F.pad(k_forward, (0, n_fft - 2 * length)), k_backward.flip(-1)], dim=-1)  # H, n_fft
    return torch.fft.rfft(k, n=n_fft)  # H, n_fft // 2 + 1


def fft_convolution(u: torch.Tensor, k_spectrum: torch.Tensor, n_fft: int) -> torch.Tensor:
    """y[..., t] = sum_l K[..., l] u[..., t - l] for u: batch x H x L and K given by `kernel_spectrum`.

    With n_fft >= 2 L the circular convolution never wraps around: y equals the linear convolution.
    """
    length = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=n_fft) * k_spectrum, n=n_fft)[..., :length]  # batch, H, L


__all__ = [
    "SSM_PARAMETER_PREFIX",
    "DPLRKernel",
    "S4DKernel",
    "SSMKernel",
    "fast_fft_size",
    "fft_convolution",
    "hippo_legs_dplr",
    "kernel_spectrum",
    "vandermonde_kernel",
    "vandermonde_kernel_naive",
]
