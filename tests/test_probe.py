"""The probe: cached layers equal a direct forward, the cache is reused, the saved probe equals the head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from encoder_checkpoints import SR, tiny_encoder_checkpoint, tone
from transformers.models.whisper.modeling_whisper import WhisperEncoder

import run_probe
from loaders.audio import decode_clip
from loaders.fixtures import build_download
from training import encoder_features
from training.encoder_features import build_probe, extract_layer_features, train_probe_head
from training.run_config import UsageError

LABELS = ["low", "high"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_corpus")
    files, labels = [], []
    for i in range(8):
        path = root / f"clip{i}.wav"
        sf.write(path, tone(i % 2, 0.4 + 0.1 * i, seed=i), SR)
        files.append(str(path))
        labels.append(i % 2)
    return datasets.Dataset.from_dict(
        {
            "audio": files,
            "label": labels,
            "corpus": ["synthetic"] * 8,
            "speaker": [f"synthetic/s{i % 3}" for i in range(8)],
            "file": [f"clip{i}.wav" for i in range(8)],
        }
    ).cast_column("audio", datasets.Audio(sampling_rate=SR))


def clip_of(corpus, i):
    return decode_clip(corpus.cast_column("audio", datasets.Audio(decode=False))[i]["audio"])


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper"])
def test_cache_equals_direct_forward_is_reused_and_the_saved_probe_equals_the_head(
    kind, corpus, tmp_path, monkeypatch
):
    encoder_dir = tiny_encoder_checkpoint(kind, tmp_path / kind)
    encoder_class = WhisperEncoder if kind == "whisper" else transformers.Wav2Vec2Model
    calls = []
    original = encoder_class.forward
    monkeypatch.setattr(
        encoder_class, "forward", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    cache = tmp_path / "cache"
    features = extract_layer_features(
        corpus, encoder_dir, cache_dir=cache, batch_size=3, max_duration_seconds=2
    )
    assert features.column_names == ["label", "corpus", "speaker", "file", "features"]
    assert features["file"] == corpus["file"] and calls
    stored = np.asarray(features.with_format("numpy")["features"])
    assert stored.shape == (8, 3, 64) and stored.dtype == np.float32

    # A direct forward of one clip, pooled by hand: mean and std of every layer over all (real) frames.
    encoder, extractor = encoder_features.load_frozen_encoder(encoder_dir, max_duration_seconds=2)
    clip = clip_of(corpus, 5)
    inputs = extractor(clip, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        if kind == "whisper":
            hidden = encoder(inputs["input_features"], output_hidden_states=True).hidden_states
            real = (int(inputs["attention_mask"].sum()) - 1) // 2 + 1
        else:
            hidden = encoder(inputs["input_values"], output_hidden_states=True).hidden_states
            real = hidden[0].shape[1]
    direct = torch.stack(
        [torch.cat([h[0, :real].mean(0), h[0, :real].std(0, unbiased=False)]) for h in hidden]
    )
    np.testing.assert_allclose(stored[5], direct.numpy(), atol=1e-5)

    # Second run, same data and settings: no encoder forward at all.
    calls.clear()
    again = extract_layer_features(corpus, encoder_dir, cache_dir=cache, batch_size=3, max_duration_seconds=2)
    assert not calls and np.array_equal(np.asarray(again.with_format("numpy")["features"]), stored)
    # Other settings are another cache entry.
    extract_layer_features(corpus.select(range(2)), encoder_dir, cache_dir=cache, max_duration_seconds=2)
    assert calls

    head = train_probe_head(features, features, LABELS, epochs=40, hidden_size=32)
    assert head.history[-1]["val_uar"] == 1.0
    model, feature_extractor = build_probe(encoder_dir, head, LABELS, max_duration_seconds=2)
    model.save_pretrained(tmp_path / "probe")
    feature_extractor.save_pretrained(tmp_path / "probe")
    assert (tmp_path / "probe" / "modeling_probe.py").is_file()  # exported like the CNN and S4
    loaded = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "probe").eval()
    with torch.no_grad():
        cached_logits = head(torch.from_numpy(stored))
        for i in range(len(corpus)):
            inputs = feature_extractor(clip_of(corpus, i), sampling_rate=SR, return_tensors="pt")
            logits = loaded(**inputs).logits[0]
            assert torch.allclose(logits, cached_logits[i], atol=1e-5), (i, logits, cached_logits[i])
    classifier = transformers.pipeline("audio-classification", model=str(tmp_path / "probe"))
    result = classifier(clip_of(corpus, 3), top_k=None)
    assert result[0]["label"] == LABELS[int(cached_logits[3].argmax())]


# ---------------------------------------------------------------------------------------------------------
# run_probe.py end to end: corpora as training loads them, the cache across runs, the saved probe everywhere
# ---------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory):
    """An EMO-DB-shaped fixture corpus (24 clips of 0.6 s), a tiny wav2vec2 body and the caches."""
    root = tmp_path_factory.mktemp("probe_run")
    build_download("emodb", root / "data", per_emotion=6, seconds=0.6, quirks=False)
    encoder = tiny_encoder_checkpoint("wav2vec2", root / "encoder")
    wav = root / "clip.wav"
    sf.write(wav, tone(1, 0.8, seed=3), SR)
    return {"root": root, "encoder": encoder, "wav": wav}


def probe_args(data, output_dir, *extra):
    root = data["root"]
    return [
        "--encoder_name_or_path", str(data["encoder"]),
        "--corpora", "emodb",
        "--split_strategy", "random",  # the fixture's first files per emotion are one speaker's
        "--data_root", str(root / "data"),
        "--dataset_cache_dir", str(root / "dataset_cache"),
        "--feature_cache_dir", str(root / "feature_cache"),
        "--preprocessing_num_workers", "1",
        "--output_dir", str(output_dir),
        "--epochs", "20",
        "--hidden_size", "16",
        "--max_duration_seconds", "2",
        "--no_progress",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def first_probe(probe_data):
    """The first run_probe.py run on the fixture data: it extracts (encoder forward passes counted)."""
    calls = []
    original = transformers.Wav2Vec2Model.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            transformers.Wav2Vec2Model,
            "forward",
            lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
        )
        result = run_probe.main(probe_args(probe_data, probe_data["root"] / "probe"))
    return result, len(calls)


def test_run_probe_saves_the_probe_and_a_second_run_extracts_nothing(
    probe_data, first_probe, tmp_path, monkeypatch
):
    result, forwards = first_probe
    out = Path(result.output_dir)
    total = sum(sum(sum(c.values()) for c in split.values()) for split in result.counts.values())
    assert forwards > 0 and sum(result.extracted.values()) == total == 24
    for name in ("config.json", "model.safetensors", "modeling_probe.py", "configuration_probe.py",
                 "preprocessor_config.json", "probe_results.json", "test_results.json", "test_details.json",
                 "probe_args.json", "README.md", "confusion_matrix.png"):  # fmt: skip
        assert (out / name).is_file(), name
    stored = json.loads((out / "probe_results.json").read_text())
    assert stored["test"]["test_uar"] == result.test_metrics["test_uar"]
    assert len(stored["layer_weights"]) == 3 and abs(sum(stored["layer_weights"]) - 1) < 1e-4
    assert "test_corpus_emodb_uar" in result.test_metrics  # the project's per-corpus metrics
    assert "a probe of a frozen self-supervised speech encoder" in (out / "README.md").read_text()

    # Another seed and head on the same data: all three splits come from the cache, no encoder forward.
    calls = []
    original = transformers.Wav2Vec2Model.forward
    monkeypatch.setattr(
        transformers.Wav2Vec2Model,
        "forward",
        lambda self, *a, **k: calls.append(1) or original(self, *a, **k),
    )
    again = run_probe.main(probe_args(probe_data, tmp_path / "again", "--seed", "42", "--hidden_size", "8"))
    assert again.extracted == {"train": 0, "validation": 0, "test": 0} and not calls
    assert again.counts == result.counts

    # A finished probe folder is not written over; bad options fail before anything is prepared.
    with pytest.raises(UsageError, match="already holds a finished probe"):
        run_probe.main(probe_args(probe_data, out))
    with pytest.raises(UsageError, match="--dropout"):
        run_probe.main(probe_args(probe_data, tmp_path / "x", "--dropout", "1.5"))
    with pytest.raises(UsageError, match="--encoder_name_or_path .*no config.json"):
        run_probe.main([*probe_args(probe_data, tmp_path / "x"), "--encoder_name_or_path", str(tmp_path)])
    assert not (tmp_path / "x").exists()


def test_the_saved_probe_classifies_with_predict(probe_data, first_probe, tmp_path):
    result, _ = first_probe
    model = transformers.AutoModelForAudioClassification.from_pretrained(result.output_dir).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(result.output_dir)
    clip, _ = sf.read(probe_data["wav"], dtype="float32")
    with torch.no_grad():
        probabilities = model(**extractor(clip, sampling_rate=SR, return_tensors="pt")).logits.softmax(-1)[0]
    report = tmp_path / "predictions.json"
    completed = subprocess.run(
        [sys.executable, "-m", "inference.predict", result.output_dir, str(probe_data["wav"]), "--top_k", "4",
         "--no_progress", "--output", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    (row,) = json.loads(report.read_text())
    assert row["status"] == "ok"
    expected = dict(zip(result.label_names, probabilities.tolist(), strict=True))
    for label, value in row["probabilities"].items():
        assert abs(value - expected[label]) < 1e-4, (label, value, expected)


REMOTE_PROBE_SCRIPT = """
import importlib.abc, json, sys

class BlockProject(importlib.abc.MetaPathFinder):
    # Even the editable install of the project must not be importable here.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling", "loaders", "training", "inference", "evaluation"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, BlockProject())
try:
    import modeling  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the project is importable: the test would prove nothing")

import soundfile as sf
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

model = AutoModelForAudioClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
extractor = AutoFeatureExtractor.from_pretrained(sys.argv[1], trust_remote_code=True)
clip, rate = sf.read(sys.argv[2], dtype="float32")
with torch.no_grad():
    logits = model(**extractor(clip, sampling_rate=rate, return_tensors="pt")).logits[0]
print("RESULT" + json.dumps({"module": type(model).__module__, "logits": logits.tolist()}))
"""


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: 10-25 s
def test_the_saved_probe_loads_where_the_project_is_not_installed(probe_data, first_probe, tmp_path):
    result, _ = first_probe
    model = transformers.AutoModelForAudioClassification.from_pretrained(result.output_dir).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(result.output_dir)
    clip, _ = sf.read(probe_data["wav"], dtype="float32")
    with torch.no_grad():
        expected = model(**extractor(clip, sampling_rate=SR, return_tensors="pt")).logits[0]
    script = tmp_path / "load_probe.py"
    script.write_text(REMOTE_PROBE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
    # -I: no PYTHONPATH, no user site, no script or working directory on sys.path; cwd is outside the repo.
    completed = subprocess.run(
        [sys.executable, "-I", str(script), result.output_dir, str(probe_data["wav"])],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT"))
    got = json.loads(line[len("RESULT") :])
    assert got["module"].startswith("transformers_modules.")
    assert np.allclose(got["logits"], expected.numpy(), atol=1e-5)


@pytest.mark.slow  # two fresh interpreters under accelerate launch: 20-40 s
def test_two_processes_share_the_extraction_and_write_the_same_cache(probe_data, first_probe, tmp_path):
    result, _ = first_probe
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch",
        "--config_file", str(ROOT / "accelerate_config_cpu.yaml"),
        "--multi_gpu", "--num_processes", "2", "--main_process_port", "29541",
        str(ROOT / "run_probe.py"),
        *probe_args(probe_data, tmp_path / "probe"),
        "--feature_cache_dir", str(tmp_path / "features"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # The train split's 16 clips, one per batch of 8 longest first: each process encoded one batch.
    assert "process 0 of 2 encoded 8 clips" in run.stdout and "process 1 of 2 encoded 8 clips" in run.stdout
    assert run.stdout.count("Probe (encoder + head), results and model card") == 1  # rank 0 writes, once
    shared = sorted((tmp_path / "features").glob("layer-features-*"))
    alone = {p.name: p for p in (probe_data["root"] / "feature_cache").glob("layer-features-*")}
    assert len(shared) == 3 and all(p.name in alone for p in shared)  # same fingerprints as one process
    for path in shared:
        a = datasets.load_from_disk(str(path))
        b = datasets.load_from_disk(str(alone[path.name]))
        assert a["file"] == b["file"]
        # torchrun gives each process one thread, this pytest process has more: float sums in another order.
        np.testing.assert_allclose(
            np.asarray(a.with_format("numpy")["features"]),
            np.asarray(b.with_format("numpy")["features"]),
            atol=1e-5,
        )
    stored = json.loads((tmp_path / "probe" / "probe_results.json").read_text())
    assert stored["test"]["test_samples"] == result.test_metrics["test_samples"]


def test_bad_arguments_are_one_line_rc_2_before_any_work(probe_data, tmp_path):
    out = tmp_path / "never"
    completed = subprocess.run(
        [sys.executable, "run_probe.py", *probe_args(probe_data, out, "--epochs", "0")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "run_probe.py: error: --epochs 0: must be greater than 0; give e.g. 100"
    ]
    assert not out.exists()


def test_train_probe_on_splits_gives_what_the_evaluation_suite_expects(corpus, tmp_path):
    from evaluation.runner import METRIC_KEYS
    from training.probe import HeadOptions, train_probe_on_splits

    encoder_dir = tiny_encoder_checkpoint("wav2vec2", tmp_path / "encoder")
    splits = datasets.DatasetDict(
        {"train": corpus.select(range(4)), "validation": corpus.select([4, 5]), "test": corpus.select([6, 7])}
    )
    metrics = train_probe_on_splits(
        splits,
        encoder_dir,
        tmp_path / "run",
        label_names=LABELS,
        cache_dir=tmp_path / "cache",
        max_duration_seconds=2,
        head_options=HeadOptions(hidden_size=8, epochs=5),
        progress=False,
    )
    assert all(0 <= metrics[key] <= 1 for key in METRIC_KEYS) and "eval_uar" in metrics
    assert np.asarray(metrics["confusion_matrix"]).sum() == 2
    assert (tmp_path / "run" / "model.safetensors").is_file()
    loaded = transformers.AutoModelForAudioClassification.from_pretrained(tmp_path / "run")
    assert loaded.config.id2label == {0: "low", 1: "high"}
    assert loaded.min_input_samples == 40  # the tiny conv stack's receptive field: 10 + 2 * 5 + 2 * 10
