"""Export a trained classifier to ONNX with a dynamic batch and a dynamic number of samples.

    python -m inference.predict export-onnx MODEL OUT.onnx [--opset 18] [--no_verify]

What the exported graph contains (input ``input_values``: float32 batch x samples of raw 16 kHz mono
audio, ``attention_mask``: int64 batch x samples, 1 real / 0 padding; output ``logits``: batch x labels):

* the feature extractor's per-clip normalisation (zero mean, unit variance over the real samples, as
  ``SERFeatureExtractor`` with ``do_normalize=True`` does it), so the graph takes raw audio;
* the model's front-end: the CNN's ZCR/RMS/MFCC (STFT as an ONNX DFT), the S4 log-mel (DFT) or conv
  front-end, wav2vec2's convolutional feature encoder;
* the whole network, traced through the model's own ``forward`` (which checks nothing, so it traces).
  Only the S4 layers' kernel modules are swapped, because the exporter has no complex-number support
  beyond FFTs and a kernel depends on the parameters alone: the S4D kernel ``2 Re sum_n c_n exp(l log dA_n)``
  is written with exp/cos/sin of real tensors (computed in blocks of 64 taps, so memory grows with
  sqrt(L), not L x N), and the S4 (DPLR) kernel, which depends on no input, is precomputed at
  ``dplr_kernel_length`` and sliced. The layer around them (FFT convolution as an ONNX DFT, skip term,
  backward kernel) is the model's own ``S4Layer.forward``.

Not inside: decoding, resampling and downmixing (do them before the graph; ``inference.audio_io``
does it in Python), the softmax (apply it to ``logits``), segmenting long recordings, and input checks
(``SERFeatureExtractor`` does them in Python; in the graph a clip shorter than the front-end window gives
NaN logits, or an error when the whole batch is that short). The label names, sampling rate and minimum
length are written into the ONNX metadata (``id2label``, ``sampling_rate``, ``min_samples``). The CNN with
``use_lstm=True`` (packed sequences) is not exportable.

The result is compared with the PyTorch model by :func:`verify_onnx`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

EXPORT_BLOCK = 64  # taps per block of the real-arithmetic Vandermonde kernel


class RealVandermondeKernel(nn.Module):
    """S4D kernel K[h, l] = 2 Re sum_n c[h, n] exp(l (a[h, n] + i w[h, n])) in real arithmetic.

    With l = b * block + j, exp(l z) = exp(b block z) exp(j z): two small tables of (real, imaginary)
    parts and two real matmuls give the real part of the complex product.
    """

    def __init__(self, kernel, block: int = EXPORT_BLOCK):
        super().__init__()
        with torch.no_grad():
            log_dA, _, dB, C = kernel.discretize()
            coeffs = C * dB
        self.block = block
        self.register_buffer("decay", log_dA.real.float().contiguous())
        self.register_buffer("frequency", log_dA.imag.float().contiguous())
        self.register_buffer("coeff_real", coeffs.real.float().contiguous())
        self.register_buffer("coeff_imag", coeffs.imag.float().contiguous())

    def _powers(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        envelope = torch.exp(self.decay.unsqueeze(-1) * positions)
        phase = self.frequency.unsqueeze(-1) * positions
        return envelope * torch.cos(phase), envelope * torch.sin(phase)

    def forward(self, length: int, naive: bool = False) -> torch.Tensor:
        n_blocks = (length + self.block - 1) // self.block
        inner_re, inner_im = self._powers(torch.arange(self.block, dtype=torch.float32))
        outer_re, outer_im = self._powers(torch.arange(n_blocks, dtype=torch.float32) * self.block)
        c_re, c_im = self.coeff_real.unsqueeze(-1), self.coeff_imag.unsqueeze(-1)
        outer_re, outer_im = c_re * outer_re - c_im * outer_im, c_re * outer_im + c_im * outer_re
        blocks = torch.bmm(outer_re.transpose(1, 2), inner_re) - torch.bmm(outer_im.transpose(1, 2), inner_im)
        return 2 * blocks.reshape(blocks.shape[0], -1)[:, :length]


class PrecomputedKernel(nn.Module):
    """A kernel that depends on no input (S4-DPLR at its fixed length), stored and sliced."""

    def __init__(self, kernel):
        super().__init__()
        with torch.no_grad():
            self.register_buffer("taps", kernel(kernel.kernel_length).float().contiguous())

    def forward(self, length: int, naive: bool = False) -> torch.Tensor:
        return self.taps[:, :length]


def export_kernel(kernel: nn.Module) -> nn.Module:
    """The export-friendly stand-in of an S4 layer's kernel module (same taps, no complex tensors)."""
    # Duck-typed: a model loaded with trust_remote_code has its own copy of the kernel classes.
    if getattr(kernel, "kernel_length", None) is not None:  # DPLRKernel: fixed length, input-independent
        return PrecomputedKernel(kernel)
    return RealVandermondeKernel(kernel)


class OnnxClassifier(nn.Module):
    """raw audio + mask -> logits: the feature extractor's normalisation followed by the model."""

    def __init__(self, model, normalize: bool):
        super().__init__()
        self.model_type = getattr(model.config, "model_type", "")
        model = copy.deepcopy(model).eval().float()
        # An ensemble (ser-ensemble) exports as its members do.
        for part in model.members if self.model_type == "ser-ensemble" else [model]:
            part_type = getattr(part.config, "model_type", "")
            if part_type == "ser-s4":
                for block in part.blocks:
                    block.s4.kernel = export_kernel(block.s4.kernel)
            elif part_type == "ser-cnn" and getattr(part, "lstm", None) is not None:
                raise ValueError(
                    "ONNX export: the CNN with use_lstm=True (packed sequences) is not exportable"
                )
        self.model = model
        self.normalize = normalize

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(input_values.dtype)
        if self.normalize:
            count = mask.sum(-1, keepdim=True)
            mean = (input_values * mask).sum(-1, keepdim=True) / count
            variance = ((input_values - mean).square() * mask).sum(-1, keepdim=True) / count
            input_values = (input_values - mean) / torch.sqrt(variance + 1e-7) * mask
        return self.model(input_values=input_values, attention_mask=attention_mask).logits


def export_onnx(
    model,
    feature_extractor,
    path: str | os.PathLike,
    *,
    opset: int | None = None,
    example_seconds: float = 2.0,
) -> str:
    """Write ``model`` (with the feature extractor's normalisation) to ``path``; returns the path.

    Batch and sample axes are dynamic. Needs the ``onnx`` and ``onnxscript`` packages (torch's dynamo
    exporter, the default of ``torch.onnx.export`` since torch 2.9).
    """
    import onnx

    path = os.fspath(path)
    normalize = bool(getattr(feature_extractor, "do_normalize", False))
    wrapper = OnnxClassifier(model, normalize).eval()
    rate = int(getattr(feature_extractor, "sampling_rate", 16000))
    from modeling.auto import min_input_samples

    min_samples = max(min_input_samples(model), 2)
    # A length that is no multiple of any hop, so the tracer infers no divisibility constraint.
    n = max(round(example_seconds * rate), 2 * min_samples) + 37
    # Batch 2 with different lengths: a batch or mask of 1 would let the tracer specialise on it.
    example = torch.randn(2, n)
    mask = torch.ones(2, n, dtype=torch.long)
    mask[1, n - n // 4 :] = 0
    batch, samples = torch.export.Dim.DYNAMIC, torch.export.Dim.DYNAMIC
    shapes = {"input_values": {0: batch, 1: samples}, "attention_mask": {0: batch, 1: samples}}
    with torch.no_grad():
        exported = torch.export.export(wrapper, (example, mask), dynamic_shapes=shapes, strict=False)
        program = torch.onnx.export(
            exported,
            (example, mask),
            input_names=["input_values", "attention_mask"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=True,
        )
    onnx_model = program.model_proto
    # The exporter's shape annotations of intermediate values can be wrong for the inverse DFT under a
    # symbolic length (onnxruntime then refuses to run it); onnxruntime infers them itself.
    del onnx_model.graph.value_info[:]
    labels = {str(i): model.config.id2label[i] for i in range(len(model.config.id2label))}
    for key, value in {
        "id2label": json.dumps(labels),
        "sampling_rate": str(rate),
        "min_samples": str(min_samples),
        "normalized_in_graph": str(normalize),
        "model_type": str(getattr(model.config, "model_type", "")),
    }.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    large = onnx_model.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit
    onnx.save_model(
        onnx_model,
        path,
        save_as_external_data=large,
        location=os.path.basename(path) + ".data" if large else None,
    )
    return path


# numpy.allclose's test, |onnxruntime - PyTorch| <= ABSOLUTE + RELATIVE * |PyTorch|, per logit: a graph that
# computes something else is off by far more. The relative part is for the functionals heads, whose float32
# sums over hundreds of frames give logits of 10-25 on the verification noise and differences up to 8.5e-4
# (measured on the development corpora's trained CNNs), too close to a plain 1e-3.
ABSOLUTE_TOLERANCE = 1e-3
RELATIVE_TOLERANCE = 1e-4


def verify_onnx(
    model, feature_extractor, path: str | os.PathLike, lengths: Sequence[float] = (1.0, 2.7), seed: int = 0
) -> tuple[float, bool]:
    """(largest |logit difference|, whether every logit is within tolerance) between onnxruntime and PyTorch
    (feature extractor + model) over a padded batch of two clips at each of ``lengths`` seconds; the
    tolerance is ``ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * |PyTorch logit|``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    rate = int(getattr(feature_extractor, "sampling_rate", 16000))
    rng = np.random.default_rng(seed)
    worst, within = 0.0, True
    for seconds in lengths:
        clips = [
            rng.standard_normal(round(seconds * rate)).astype(np.float32) * 0.1,
            rng.standard_normal(round(seconds * rate * 0.7)).astype(np.float32) * 0.3,
        ]
        inputs = feature_extractor(
            clips, sampling_rate=rate, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        with torch.no_grad():
            reference = model(
                input_values=inputs["input_values"], attention_mask=inputs["attention_mask"]
            ).logits
        raw = np.zeros((2, len(clips[0])), dtype=np.float32)
        raw[1, : len(clips[1])] = clips[1]
        raw[0] = clips[0]
        onnx_logits = session.run(
            ["logits"],
            {"input_values": raw, "attention_mask": inputs["attention_mask"].numpy().astype(np.int64)},
        )[0]
        reference = reference.float().numpy()
        # NaN where PyTorch has a number (or the reverse) is a mismatch; max() and <= would pass it over.
        difference = np.nan_to_num(np.abs(onnx_logits - reference), nan=np.inf)
        worst = max(worst, float(difference.max()))
        within = within and bool(
            (difference <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * np.abs(reference)).all()
        )
    return worst, within


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.predict export-onnx",
        description="Export a trained classifier to ONNX (dynamic batch and length).",
    )
    parser.add_argument("model", help="model directory (save_pretrained) or Hub id")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--no_verify", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--trust_remote_code", action="store_true")
    args = parser.parse_args(argv)
    from inference.classify import load_model

    model, feature_extractor = load_model(args.model, "cpu", args.trust_remote_code)
    export_onnx(model, feature_extractor, args.output, opset=args.opset)
    megabytes = os.path.getsize(args.output) / 1e6
    rate = feature_extractor.sampling_rate
    print(f"wrote {args.output} ({megabytes:.1f} MB): raw {rate} Hz mono audio + attention_mask -> logits")
    if not args.no_verify:
        difference, within = verify_onnx(model, feature_extractor, args.output)
        print(f"onnxruntime vs PyTorch: max |logit difference| {difference:.2e} at two input lengths")
        if not within:
            print(
                f"the exported graph disagrees with PyTorch by more than {ABSOLUTE_TOLERANCE:g} + "
                f"{RELATIVE_TOLERANCE:g} x |logit|; report it with the model's config.json",
                flush=True,
            )
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
