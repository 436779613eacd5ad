"""Fine-tuning any speech encoder through run_train.py: the kind is read from the checkpoint, each family's
own feature extractor is saved, the loss falls, and the saved folder works with transformers' pipeline() in a
Python that has never seen this project.

Tiny random checkpoints of each family (tests/encoder_checkpoints.py, no network) train on a fixture EmoDB
whose anger and sadness clips are tones of two pitches (rendering the synthetic corpus would take most of a
minute), random split, 1 s clips (Whisper's window is cut to 1 s). HuBERT (a checkpoint without a
preprocessor_config.json, so the fallback extractor) and Whisper (log-mel inputs, no attention mask) run
always; the other families are marked slow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from encoder_checkpoints import FAMILIES, SR, tiny_encoder_checkpoint, tone
from test_train_run import run_train

from loaders.fixtures import build_download, read_manifest
from training.run_config import UsageError

FAST = ("hubert", "whisper")
EMOTIONS = ["anger", "sadness"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """EmoDB's layout, 32 clips per emotion; anger and sadness rewritten as two audibly different tones."""
    root = tmp_path_factory.mktemp("data")
    corpus = build_download("emodb", root, per_emotion=32, seconds=1.0, quirks=False)
    rows = [r for r in read_manifest() if r["corpus"] == "emodb" and r["emotion"] in EMOTIONS]
    for i, row in enumerate(rows):
        path = corpus / row["path"]
        if path.exists():
            sf.write(path, tone(EMOTIONS.index(row["emotion"]), 1.0, seed=i), SR)
    return root


@pytest.fixture(scope="module")
def one_thread():
    # Small ops run faster on one thread, and the cores are shared with other test processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fine_tune(checkpoint, out, data_root, cache_dir, *extra: str):
    return run_train.main(
        [
            "--model_name_or_path",
            str(checkpoint),
            "--data_root",
            str(data_root),
            "--corpora",
            "emodb",
            "--split_strategy",
            "random",
            "--emotions",
            *EMOTIONS,
            "--dataset_cache_dir",
            str(cache_dir),
            "--output_dir",
            str(out),
            "--max_duration_seconds",
            "1",
            "--max_train_samples",
            "48",
            "--max_eval_samples",
            "16",
            "--per_device_train_batch_size",
            "8",
            "--num_train_epochs",
            "4",
            "--learning_rate",
            "3e-3",
            "--warmup_steps",
            "0",
            "--logging_steps",
            "1",
            "--save_strategy",
            "no",
            "--eval_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--disable_tqdm",
            "true",
            *extra,
        ]
    )


def losses_of(out) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def check_learned(kind: str, out) -> None:
    losses = losses_of(out)
    assert len(losses) >= 20, losses
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    # Chance is ln 2 = 0.69 for two classes.
    assert last < 0.8 * first and last < 0.8 * math.log(len(EMOTIONS)), (kind, losses)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == kind.replace("-", "_") or config["model_type"] == kind
    assert config["id2label"] == {"0": "anger", "1": "sadness"}
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert "auto_map" not in preprocessor and "auto_map" not in config  # transformers' own classes only
    expected = "WhisperFeatureExtractor" if kind == "whisper" else "Wav2Vec2FeatureExtractor"
    assert preprocessor["feature_extractor_type"] == expected
    if kind == "whisper":
        assert preprocessor["chunk_length"] == 1 and config["max_source_positions"] == 50


PIPELINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from transformers import pipeline
    t = np.arange(16000) / 16000
    clip = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    results = {}
    for folder in sys.argv[1:]:
        classifier = pipeline("audio-classification", model=folder)
        top = classifier({"raw": clip, "sampling_rate": 16000}, top_k=None)
        results[folder] = sorted(r["label"] for r in top)
    # Nothing of this project was loaded (no remote code, no import through a registered Auto class).
    loaded = [name for name in sys.modules if name.split(".")[0] in ("modeling", "training", "loaders")]
    assert not loaded and "transformers_modules" not in sys.modules, loaded
    print(json.dumps(results))
    """
)


def check_pipelines_in_fresh_python(folders, tmp_path) -> None:
    """One `python -I` (no PYTHONPATH, no user site) outside the repository for all saved folders."""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", PIPELINE_SCRIPT, *map(str, folders)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results == {str(folder): sorted(EMOTIONS) for folder in folders}


def coarse_checkpoint(kind: str, path) -> object:
    """The family's tiny checkpoint with 4x coarser frames (80 samples, 5 ms): attention over 1 s clips
    costs a sixteenth, which keeps the runs to seconds. Strides do not change any weight's shape."""
    checkpoint = tiny_encoder_checkpoint(kind, path)
    if kind != "whisper":
        config = json.loads((checkpoint / "config.json").read_text())
        config["conv_stride"] = [5, 4, 4]
        (checkpoint / "config.json").write_text(json.dumps(config))
    return checkpoint


def train_families(kinds, tmp_path, data_root, cache_dir) -> None:
    folders = []
    for kind in kinds:
        checkpoint = coarse_checkpoint(kind, tmp_path / f"pretrained-{kind}")
        out = tmp_path / f"run-{kind}"
        result = fine_tune(checkpoint, out, data_root, cache_dir)
        assert result.model_kind == "encoder"
        check_learned(kind, out)
        check_project_inference_matches_pipeline(out)
        folders.append(out)
    check_pipelines_in_fresh_python(folders, tmp_path)


def check_project_inference_matches_pipeline(folder) -> None:
    """`python -m inference.predict` batches through the same extractor call as training: its
    probabilities for a clip equal transformers' pipeline's (Whisper included: padded to its window)."""
    from transformers import pipeline

    from inference.classify import EmotionClassifier, load_model

    clip = tone(0, 1.0, seed=3)
    classifier = EmotionClassifier(*load_model(str(folder)))
    ours = classifier.probabilities([clip])[0]
    theirs = pipeline("audio-classification", model=str(folder))(
        {"raw": clip, "sampling_rate": SR}, top_k=None
    )
    labels = classifier.labels
    by_label = {row["label"]: row["score"] for row in theirs}
    np.testing.assert_allclose(ours, [by_label[label] for label in labels], atol=1e-5)


def test_hubert_and_whisper_fine_tune_and_work_in_a_fresh_pipeline(
    tmp_path, data_root, cache_dir, one_thread
):
    train_families(FAST, tmp_path, data_root, cache_dir)


@pytest.mark.slow
def test_every_other_family_fine_tunes_and_works_in_a_fresh_pipeline(
    tmp_path, data_root, cache_dir, one_thread
):
    train_families([k for k in FAMILIES if k not in FAST], tmp_path, data_root, cache_dir)


def test_whisper_layers_learn_with_gradient_checkpointing_and_a_frozen_front_end(
    tmp_path, data_root, cache_dir, one_thread
):
    """With the input convolutions frozen, no input of Whisper's checkpointed layers needs a gradient:
    re-entrant checkpointing would leave every encoder layer untrained. The head gets its own rate."""
    checkpoint = tiny_encoder_checkpoint("whisper", tmp_path / "pretrained")
    out = tmp_path / "run"
    fine_tune(
        checkpoint,
        out,
        data_root,
        cache_dir,
        "--gradient_checkpointing",
        "--head_learning_rate",
        "5e-3",
        "--num_train_epochs",
        "1",
        "--max_train_samples",
        "16",
    )
    from safetensors.torch import load_file

    before = load_file(checkpoint / "model.safetensors")
    after = load_file(out / "model.safetensors")
    layer = "encoder.layers.0.fc1.weight"
    assert not torch.equal(before[layer], after[layer]), "encoder layers did not learn"
    conv = "encoder.conv1.weight"
    assert torch.equal(before[conv], after[conv]), "the frozen front-end changed"


def test_head_learning_rate_makes_its_own_optimizer_group(tmp_path):
    from modeling.encoders import build_encoder_classifier, head_parameter_names
    from training.arguments import SERTrainingArguments
    from training.trainer import SERTrainer

    model, _ = build_encoder_classifier(tiny_encoder_checkpoint("hubert", tmp_path / "ckpt"), EMOTIONS)
    args = SERTrainingArguments(
        output_dir=str(tmp_path / "out"),
        learning_rate=1e-4,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
    )
    optimizer = SERTrainer(model=model, args=args, head_learning_rate=1e-2).create_optimizer()
    head = {id(p) for name, p in model.named_parameters() if name in set(head_parameter_names(model))}
    rates = {(id(p) in head): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates == {True: 1e-2, False: 1e-4}
    # Without it, one rate for all (the Trainer's default grouping).
    optimizer = SERTrainer(model=model, args=args).create_optimizer()
    assert {group["lr"] for group in optimizer.param_groups} == {1e-4}


def test_model_kind_is_read_from_the_checkpoint(tmp_path):
    from training import parse_args

    checkpoint = tiny_encoder_checkpoint("hubert", tmp_path / "hubert")
    model_args, _, training_args = parse_args(["--model_name_or_path", str(checkpoint), "--corpora", "emodb"])
    assert model_args.model == "encoder" and training_args.learning_rate == 3e-5  # the encoder recipe
    for alias in ("wav2vec2", "encoder"):  # the old name still works
        model_args, _, _ = parse_args(["--model", alias, "--model_name_or_path", str(checkpoint)])
        assert model_args.model == "encoder"
    with pytest.raises(UsageError, match="is a encoder checkpoint but --model is cnn"):
        parse_args(["--model", "cnn", "--model_name_or_path", str(checkpoint)])
    text_model = tmp_path / "bert"
    text_model.mkdir()
    (text_model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UsageError, match=r"holds a 'bert' model, which is neither .* speech encoder"):
        parse_args(["--model_name_or_path", str(text_model)])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--head_learning_rate", "1e-3"], r"--head_learning_rate: only pre-trained encoders"),
        (["--gradient_checkpointing"], r"--gradient_checkpointing: the cnn does not support it"),
    ],
)
def test_encoder_options_on_other_models_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(UsageError, match=message):
        run_train.main(
            ["--model", "cnn", "--corpora", "synthetic", "--output_dir", str(tmp_path / "out"), *extra]
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config_overrides", '{"not_a_field": 1}'], "WhisperConfig has no field 'not_a_field'"),
        (
            ["--gradient_checkpointing", "--gradient_checkpointing_kwargs", '{"use_reentrant": true}'],
            "re-entrant checkpointing leaves layers behind a frozen front-end untrained",
        ),
    ],
)
def test_bad_encoder_options_are_usage_errors_before_any_data(tmp_path, extra, message):
    checkpoint = tiny_encoder_checkpoint("whisper", tmp_path / "whisper")
    with pytest.raises(UsageError, match=message):
        run_train.main(
            [
                "--model_name_or_path",
                str(checkpoint),
                "--corpora",
                "synthetic",
                "--output_dir",
                str(tmp_path / "out"),
                *extra,
            ]
        )
    assert not (tmp_path / "out").exists()
