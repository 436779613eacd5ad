"""The model card's Hub metadata parses as the Hub reads it, with the test results as a model-index."""

from __future__ import annotations

from huggingface_hub import ModelCard

from training.model_card import CorpusInfo, TrainingSummary, render_model_card


def summary(**changes) -> TrainingSummary:
    fields = dict(
        model_kind="cnn",
        base_model=None,
        emotions=["anger", "happy"],
        merge={},
        corpora=[CorpusInfo("emodb", license="cc-by-4.0", language="de")],
        split_strategy="speaker",
        test_corpora=None,
        counts={"test": {"emodb": {"anger": 3, "happy": 2}}},
        test_metrics={"uar": 0.75, "accuracy": 0.8, "macro_f1": 0.7, "recall_anger": 1.0},
    )
    return TrainingSummary(**{**fields, **changes})


def test_card_metadata_holds_task_language_and_results():
    card = ModelCard(render_model_card(summary()))
    assert card.data.pipeline_tag == "audio-classification"
    assert card.data.language == ["de"]
    assert "base_model" not in card.data.to_dict()
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"UAR (unweighted average recall)": 0.75, "accuracy": 0.8, "macro-F1": 0.7}
    assert {r.dataset_split for r in card.data.eval_results} == {"test (speaker split)"}
    assert "| UAR (unweighted average recall) | 0.7500 |" in card.text


def test_card_names_the_base_model_of_a_fine_tuned_encoder():
    card = ModelCard(render_model_card(summary(model_kind="wav2vec2", base_model="facebook/wav2vec2-base")))
    assert card.data.base_model == "facebook/wav2vec2-base"
    assert "wav2vec2" in card.data.tags
