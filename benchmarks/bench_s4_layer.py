"""S4D layer cost as the sequence grows, against the naive all-at-once Vandermonde kernel, and the inference
time of the default S4 classifier. One CPU thread throughout.

    .venv/bin/python benchmarks/bench_s4_layer.py              # full run (a few minutes)
    .venv/bin/python benchmarks/bench_s4_layer.py --quick      # L up to 8k, fewer repetitions

Part 1: one S4Layer (S4D, unidirectional, H=128 channels, N=64 states = 32 complex pairs, batch 1),
forward + backward of sum(y), for L = 1k ... 64k. Each (kernel, L) runs in its own subprocess so that the
peak memory is that case's alone: peak = ru_maxrss after the first forward+backward minus ru_maxrss just
before it (the process high-water mark, which includes allocator slack: an upper bound on what the case
needs). The naive kernel materialises H x N/2 x L complex values several times over (exp, products and
what autograd keeps); it is skipped where that estimate exceeds --naive-budget-gb.

Part 2: S4ForAudioClassification with the default S4Config, batch 1, a 3 s clip: milliseconds per clip
with the kernel spectrum cached (clips of one length, the usual deployment) and recomputed (every clip a
different length), and the real-time factor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling.s4 import S4Config, S4ForAudioClassification, S4Layer  # noqa: E402

H, N = 128, 64
LENGTHS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_case(kernel: str, length: int, repeats: int) -> dict:
    """One (kernel, L) case; runs inside a fresh subprocess."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = S4Config(d_model=H, d_state=N, bidirectional=False)
    layer = S4Layer(config)
    u = torch.randn(1, length, H, requires_grad=True)
    naive = kernel == "naive"

    def step() -> None:
        layer(u, naive_kernel=naive).sum().backward()
        layer.zero_grad(set_to_none=True)
        u.grad = None

    before = rss_peak_mb()
    step()
    peak = rss_peak_mb() - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"ms": 1000 * times[len(times) // 2], "ms_min": 1000 * times[0], "peak_mb": peak}


def naive_estimate_gb(length: int) -> float:
    # complex64 H x N/2 x L: the exponent, its exp (real and imaginary parts, cos, sin), the product with the
    # coefficients, and the saved tensors of autograd: about 8 such tensors
    return 8 * H * (N // 2) * length * 8 / 1e9


def layer_scaling(lengths: list[int], repeats: int, naive_budget_gb: float) -> None:
    print(f"\n== S4D layer, forward+backward, H={H}, N={N} (N/2={N // 2} complex), batch 1, one thread ==")
    print("   peak memory: ru_maxrss delta of a fresh subprocess over the first forward+backward")
    header = (
        f"{'L':>6} | {'chunked ms':>10} {'peak MB':>8} {'ms/(L log2 L)*1e3':>18} | {'naive ms':>9} "
        f"{'peak MB':>8} | {'time ratio':>10} {'memory ratio':>12}"
    )
    print(header)
    print("-" * len(header))
    results = {}
    for length in lengths:
        row = {}
        for kernel in ("chunked", "naive"):
            if kernel == "naive" and naive_estimate_gb(length) > naive_budget_gb:
                row[kernel] = None
                continue
            output = subprocess.run(
                [sys.executable, __file__, "--case", kernel, str(length), "--repeats", str(repeats)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row[kernel] = json.loads(output.strip().splitlines()[-1])
        results[length] = row
        chunked, naive = row["chunked"], row["naive"]
        per_nlogn = chunked["ms"] / (length * math.log2(length)) * 1e3
        if naive is None:
            naive_text = f"{'skipped':>9} {'':>8} | {'':>10} {'':>12}"
        else:
            naive_text = (
                f"{naive['ms']:>9.1f} {naive['peak_mb']:>8.0f} | {naive['ms'] / chunked['ms']:>9.2f}x "
                f"{naive['peak_mb'] / max(chunked['peak_mb'], 1e-9):>11.2f}x"
            )
        chunked_text = f"{chunked['ms']:>10.1f} {chunked['peak_mb']:>8.0f} {per_nlogn:>18.3f}"
        print(f"{length:>6} | {chunked_text} | {naive_text}")
    skipped = [n for n in lengths if results[n]["naive"] is None]
    if skipped:
        print(
            f"naive skipped at L={skipped}: estimated {naive_estimate_gb(skipped[0]):.1f} GB and more "
            f"(> --naive-budget-gb {naive_budget_gb})"
        )

    def exponent(kernel: str) -> float | None:
        points = [(math.log(n), math.log(results[n][kernel]["ms"])) for n in lengths if results[n][kernel]]
        if len(points) < 2:
            return None
        mean_x = sum(x for x, _ in points) / len(points)
        mean_y = sum(y for _, y in points) / len(points)
        return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)

    chunked_exp, naive_exp = exponent("chunked"), exponent("naive")
    print(f"fitted growth time ~ L^p: chunked p = {chunked_exp:.2f}", end="")
    print(f", naive p = {naive_exp:.2f}" if naive_exp is not None else "")
    print("  (L log L over this range fits p ~ 1.07; the Vandermonde product itself is O(H N L))")
    if 16384 in results and results[16384]["naive"]:
        ratio = results[16384]["chunked"]["peak_mb"] / results[16384]["naive"]["peak_mb"]
        verdict = "met" if ratio <= 0.25 else "NOT met"
        print(f"peak memory at L=16k: chunked / naive = {ratio:.3f} (goal <= 0.25: {verdict})")


def model_inference(repeats: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = S4Config(num_labels=6)
    model = S4ForAudioClassification(config).eval()
    seconds, rate = 3.0, config.sampling_rate
    print(
        f"\n== S4ForAudioClassification, default config (frontend={config.frontend}, "
        f"d_model={config.d_model}, n_layers={config.n_layers}, d_state={config.d_state}, "
        f"kernel={config.kernel}, bidirectional={config.bidirectional}), "
        f"{model.num_parameters():,} parameters, batch 1, one thread =="
    )
    clip = torch.randn(1, int(seconds * rate))
    with torch.inference_mode():
        for _ in range(5):
            model(clip)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(clip)
            times.append(time.perf_counter() - start)
        # a fresh model state every call (as after a parameter update): the kernels are recomputed
        cold = []
        for _ in range(repeats):
            for block in model.blocks:
                block.s4._spectrum_cache = None
            start = time.perf_counter()
            model(clip)
            cold.append(time.perf_counter() - start)
    for label, values in (("kernel cached (clips up to 5.1 s)", times), ("kernel recomputed", cold)):
        values.sort()
        median = 1000 * values[len(values) // 2]
        print(
            f"{label:<36}: median {median:6.2f} ms, min {1000 * values[0]:6.2f} ms per {seconds:g} s clip "
            f"-> {1000 * seconds / median:7.0f}x real time (goal <= 10 ms, >= 300x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="L up to 8k and fewer repetitions")
    parser.add_argument("--naive-budget-gb", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--case", nargs=2, metavar=("KERNEL", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.repeats or 3)))
        return
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (1 min)")
    lengths = [n for n in LENGTHS if n <= 8192] if args.quick else LENGTHS
    repeats = args.repeats or (2 if args.quick else 3)
    layer_scaling(lengths, repeats=repeats, naive_budget_gb=args.naive_budget_gb)
    model_inference(repeats=args.repeats or (20 if args.quick else 100))
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes on the machine inflate times)")


if __name__ == "__main__":
    main()
