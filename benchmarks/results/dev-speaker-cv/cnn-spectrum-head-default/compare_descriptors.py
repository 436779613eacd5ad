"""How far the forty-fifth round's faster `spectrum_descriptors` moved the values: the functions of commit REV
(default 227aba0, before the round) against today's, on the first 40 clips of each speech corpus, for the S4's
and the CNN's head spectra (512 points) and the CNN's front-end spectrum (400 points). Prints, per descriptor,
the largest difference over frames divided by that descriptor's standard deviation over the clip's frames.

    python benchmarks/results/dev-speaker-cv/cnn-spectrum-head-default/compare_descriptors.py \
        /work/runs/dev [REV]
"""

import ast
import math
import subprocess
import sys
from pathlib import Path

import soundfile as sf
import torch
import torchaudio
from torch import nn

from modeling import CNNConfig, CNNForAudioClassification
from modeling.cnn.modeling_cnn import spectrum_descriptors

NAMES = "low high roll25 roll50 roll75 roll90 flux centroid entropy spread skew kurt slope sharp harm".split()


def functions_at(rev: str) -> dict:
    source = subprocess.run(
        ["git", "show", f"{rev}:modeling/cnn/modeling_cnn.py"], capture_output=True, text=True, check=True
    ).stdout
    wanted = {"spectrum_descriptors", "spectral_harmonicity"}
    nodes = [node for node in ast.parse(source).body if getattr(node, "name", None) in wanted]
    namespace = {"torch": torch, "nn": nn, "math": math}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), rev, "exec"), namespace)
    return namespace


def main() -> None:
    root = Path(sys.argv[1])
    old = functions_at(sys.argv[2] if len(sys.argv) > 2 else "227aba0")["spectrum_descriptors"]
    model = CNNForAudioClassification(CNNConfig(num_labels=4)).eval()
    clips = sorted((root / "espeak").rglob("*.wav"))[:40] + sorted((root / "festival").rglob("*.wav"))[:40]
    worst = torch.zeros(len(NAMES))
    with torch.inference_mode():
        for path in clips:
            audio, rate = sf.read(path, dtype="float32")
            waveform = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)[None]
            for n_fft in (512, None):
                power = model.features.power_spectrum(waveform, n_fft)
                bin_hz = 16000 / (n_fft or model.config.win_length)
                before, now = old(power, bin_hz), spectrum_descriptors(power, bin_hz)
                spread = before.std(1).clamp_min(1e-12)
                worst = torch.maximum(worst, ((before - now).abs() / spread).amax(1)[0])
    print(f"{len(clips)} clips; largest |before - now| / the descriptor's std over the clip's frames:")
    for name, value in zip(NAMES, worst.tolist(), strict=True):
        print(f"  {name:9s} {value:.1e}")


if __name__ == "__main__":
    main()
