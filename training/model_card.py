"""The model card (README.md) written next to a trained model; `push_to_hub` uploads it with the weights."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from huggingface_hub import EvalResult, ModelCardData

_MODEL_DESCRIPTIONS = {
    "cnn": "the attention CNN after Alsabhan (Sensors 2023): ZCR, RMS and MFCC frames (by default with F0 "
    "and voicing) computed inside the model, a 1-D CNN and additive attention pooling (by default beside a "
    "linear classifier on the clip's functionals), trained from scratch",
    "s4": "an S4/S4D state-space classifier (log-mel front-end, prenorm residual S4 blocks, additive "
    "attention pooling), trained from scratch",
    "ensemble": "an ensemble of this project's classifiers (by default the attention CNN and the S4), each "
    "trained from scratch as a run of its own; it averages their class probabilities",
    "wav2vec2": "Wav2Vec2ForSequenceClassification fine-tuned from a self-supervised speech encoder",
    "probe": "a probe of a frozen self-supervised speech encoder (EmoBox / SUPERB protocol): every layer's "
    "hidden states pooled over the clip (mean and standard deviation), summed with learned softmax weights "
    "and classified by a small MLP; only that head was trained",
}

_CORPUS_TITLES = {
    "cremad": "CREMA-D",
    "emodb": "EMO-DB (Berlin)",
    "ravdess": "RAVDESS (speech)",
    "savee": "SAVEE",
    "shemo": "ShEMO",
    "tess": "TESS",
    "synthetic": "synthetic (this project's generated demo corpus)",
}


@dataclass
class CorpusInfo:
    """What the card says about one corpus."""

    name: str
    license: str = ""
    language: str = ""
    homepage: str = ""
    redistributable: bool = True


@dataclass
class TrainingSummary:
    """Everything the card reports about one run."""

    model_kind: str
    base_model: str | None
    emotions: Sequence[str]
    merge: Mapping[str, str]
    corpora: Sequence[CorpusInfo]
    split_strategy: str
    test_corpora: Sequence[str] | None
    counts: Mapping[str, Mapping[str, Mapping[str, int]]]  # split -> corpus -> emotion -> files
    test_metrics: Mapping[str, float]  # flat: accuracy, uar, macro_f1, recall_<class>, corpus_<c>_uar, ...
    validation_metrics: Mapping[str, float] = field(default_factory=dict)
    confusion_matrix_file: str | None = None
    command: str = ""
    hyperparameters: Mapping[str, object] = field(default_factory=dict)
    num_parameters: int | None = None
    seed: int | None = None
    # The run's resolved arguments that differ from the argument classes' defaults (all of them, defaults
    # included, are in `arguments_file` next to the model).
    arguments: Mapping[str, object] = field(default_factory=dict)
    arguments_file: str | None = None
    # Why the model did not learn (training.run.learning_check), or None: shown at the top of the card.
    did_not_learn: str | None = None
    # Why the network of a two-branch model did not learn though the model did
    # (training.run.network_learning_check), or None.
    network_did_not_learn: str | None = None


def corpus_info(name: str) -> CorpusInfo:
    """Licence, language and homepage of a corpus, from its builder class."""
    from loaders.registry import get_builder_class

    builder = get_builder_class(name)
    return CorpusInfo(
        name=name,
        license=getattr(builder, "LICENSE", "") or "",
        language=getattr(builder, "LANGUAGE", "") or "",
        homepage=getattr(builder, "HOMEPAGE", "") or "",
        redistributable=bool(getattr(builder, "REDISTRIBUTABLE", True)),
    )


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _show_argument(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`".replace("|", "\\|")


def card_metadata(summary: TrainingSummary) -> ModelCardData:
    """The Hub metadata (YAML front matter): task, languages, base model, and the test results as a
    model-index, so the Hub shows them and can rank the model."""
    corpora = [c.name for c in summary.corpora]
    model_name = f"ser-{summary.model_kind}-{'-'.join(corpora)}"
    metric_names = {"uar": "UAR (unweighted average recall)", "accuracy": "accuracy", "macro_f1": "macro-F1"}
    eval_results = [
        EvalResult(
            task_type="audio-classification",
            task_name="Speech emotion recognition",
            dataset_type="-".join(corpora),
            dataset_name=", ".join(_CORPUS_TITLES.get(c, c) for c in corpora),
            dataset_split=f"test ({summary.split_strategy} split)",
            metric_type=key if key != "uar" else "recall",
            metric_name=label,
            metric_value=float(summary.test_metrics[key]),
        )
        for key, label in metric_names.items()
        if key in summary.test_metrics
    ]
    return ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="audio-classification",
        language=sorted({c.language for c in summary.corpora if c.language}) or None,
        license="other",
        license_name="see-training-corpora",
        tags=["audio-classification", "speech-emotion-recognition", summary.model_kind],
        base_model=summary.base_model or None,
        metrics=["accuracy", "recall", "f1"],
        eval_results=eval_results or None,
    )


def render_model_card(summary: TrainingSummary) -> str:
    """The card as Markdown with Hub metadata (YAML front matter)."""
    emotions = list(summary.emotions)
    corpora = [c.name for c in summary.corpora]
    lines = ["---", card_metadata(summary).to_yaml(), "---", ""]

    title = f"Speech emotion recognition: {summary.model_kind.upper()} on {', '.join(corpora)}"
    lines += [f"# {title}", ""]
    if summary.did_not_learn:
        lines += [
            f"> **Warning: this model did not learn**: {summary.did_not_learn}. Its predictions are no "
            "better than chance; do not use it. The results below are reported as measured.",
            "",
        ]
    elif summary.network_did_not_learn:
        lines += [
            f"> **Warning: the network of this model did not learn**: {summary.network_did_not_learn}. Its "
            "predictions are, in effect, those of its functionals head, a linear classifier on the clip's "
            "functionals. The results below are reported as measured.",
            "",
        ]
    lines.append(
        f"This model is {_MODEL_DESCRIPTIONS.get(summary.model_kind, summary.model_kind)}. It classifies a "
        f"mono "
        f"16 kHz speech clip into one of {len(emotions)} emotions: {', '.join(emotions)}."
    )
    if summary.base_model:
        lines.append(f"Initialised from `{summary.base_model}`.")
    if summary.num_parameters:
        lines.append(f"Parameters: {summary.num_parameters:,}.")
    lines += ["", "## Results (test set)", ""]
    split_note = {
        "speaker": "speaker-independent: no test speaker was heard in training",
        "corpus": f"leave-corpus-out: test corpora {', '.join(summary.test_corpora or [])} not seen in "
        "training",
        "random": "random utterance split: test speakers were also heard in training, so these figures are "
        "optimistic and not comparable with speaker-independent results",
    }.get(summary.split_strategy, summary.split_strategy)
    lines += [f"Split: **{summary.split_strategy}** ({split_note}).", ""]
    metrics = summary.test_metrics
    lines += ["| metric | value |", "|---|---|"]
    for key, label in (
        ("uar", "UAR (unweighted average recall)"),
        ("accuracy", "accuracy"),
        ("macro_f1", "macro-F1"),
    ):
        if key in metrics:
            lines.append(f"| {label} | {_fmt(metrics[key])} |")
    lines.append("")
    recalls = [(e, metrics.get(f"recall_{e}")) for e in emotions]
    if any(r is not None for _, r in recalls):
        lines += ["| emotion | recall | F1 |", "|---|---|---|"]
        for emotion, recall in recalls:
            f1 = metrics.get(f"f1_{emotion}")
            lines.append(
                f"| {emotion} | {_fmt(recall) if recall is not None else 'n/a'} | "
                f"{_fmt(f1) if f1 is not None else 'n/a'} |"
            )
        lines.append("")
    per_corpus = [c for c in corpora if f"corpus_{c}_uar" in metrics]
    if per_corpus:
        lines += ["Per corpus:", "", "| corpus | UAR | accuracy | macro-F1 |", "|---|---|---|---|"]
        for c in per_corpus:
            lines.append(
                f"| {c} | {_fmt(metrics[f'corpus_{c}_uar'])} | {_fmt(metrics[f'corpus_{c}_accuracy'])} | "
                f"{_fmt(metrics[f'corpus_{c}_macro_f1'])} |"
            )
        lines.append("")
    if summary.validation_metrics.get("uar") is not None:
        lines += [f"Validation UAR of the kept checkpoint: {_fmt(summary.validation_metrics['uar'])}.", ""]
    if summary.confusion_matrix_file:
        lines += [f"![Confusion matrix on the test set]({summary.confusion_matrix_file})", ""]

    lines += ["## Training data", ""]
    lines += ["| corpus | language | licence | homepage |", "|---|---|---|---|"]
    for c in summary.corpora:
        lines.append(
            f"| {_CORPUS_TITLES.get(c.name, c.name)} | {c.language or '?'} | {c.license or '?'} | "
            f"{c.homepage or ''} |"
        )
    lines.append("")
    lines.append(f"Emotions: {', '.join(emotions)}.")
    if summary.merge:
        merged = ", ".join(f"{s} → {t}" for s, t in summary.merge.items() if s != t)
        if merged:
            lines.append(f"Merged: {merged}.")
    lines += ["", "Files per split:", ""]
    lines += [
        "| split | corpus | " + " | ".join(emotions) + " | total |",
        "|---|---|" + "---|" * (len(emotions) + 1),
    ]
    for split, by_corpus in summary.counts.items():
        for corpus, by_emotion in by_corpus.items():
            cells = [str(by_emotion.get(e, 0)) for e in emotions]
            lines.append(f"| {split} | {corpus} | " + " | ".join(cells) + f" | {sum(by_emotion.values())} |")
    lines.append("")

    lines += ["## Training procedure", ""]
    if summary.command:
        lines += ["Command:", "", "```bash", summary.command, "```", ""]
    if summary.arguments:
        where = f" (all of them in `{summary.arguments_file}`)" if summary.arguments_file else ""
        lines += [f"Arguments that differ from the defaults{where}:", "", "| argument | value |", "|---|---|"]
        lines += [f"| {k} | {_show_argument(v)} |" for k, v in summary.arguments.items()]
        lines.append("")
    if summary.hyperparameters:
        lines += ["| hyperparameter | value |", "|---|---|"]
        lines += [
            f"| {k} | {v:g} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in summary.hyperparameters.items()
        ]
        lines.append("")

    lines += ["## Intended use and limitations", ""]
    lines += [
        "- Research on speech emotion recognition and comparison of models on the listed corpora.",
        "- The corpora hold **acted** emotions, read by actors (sentences or single words) in studio "
        "conditions. Spontaneous emotion in everyday speech is subtler and mixed; expect much lower accuracy "
        "there, and on other languages, microphones, noise and age groups than the training speakers'.",
        "- Emotion is not observable fact: labels are the emotion the actor was asked to portray. Do not use "
        "the model to make decisions about people (hiring, policing, health, education, surveillance).",
        "- Few speakers per corpus: results vary strongly with which speakers are in the test set.",
    ]
    restricted = [
        c
        for c in summary.corpora
        if not c.redistributable or "nc" in c.license.lower() or "other" in c.license.lower()
    ]
    if restricted:
        lines.append(
            "- Licences: the model was trained on corpora with restrictions ("
            + ", ".join(f"{c.name}: {c.license}" for c in restricted)
            + "). Check that your use of the model is compatible with them."
        )
    if any(c.name == "synthetic" for c in summary.corpora):
        lines.append(
            "- Trained on the generated demo corpus: it shows the pipeline works, it is not a model of "
            "human emotional speech."
        )
    lines.append("")
    return "\n".join(lines)


def write_model_card(summary: TrainingSummary, output_dir: str | os.PathLike) -> str:
    """Write README.md into `output_dir` and return its path."""
    path = os.path.join(output_dir, "README.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_model_card(summary))
    return path
