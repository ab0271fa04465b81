"""Post-processing policies (drop / flag / regenerate) with a fake NLI predictor."""

from __future__ import annotations

import dataclasses

import pytest

from vertjax import errors
from vertjax.consistency import postprocess


@dataclasses.dataclass
class Verdict:
    p_entailment: float
    label: str


def fake_predict(premises, hypotheses):
    """Entailed when the hypothesis text is in the premise; 'not' in it means contradiction."""
    out = []
    for premise, hypothesis in zip(premises, hypotheses, strict=True):
        if hypothesis.rstrip(".") in premise:
            out.append(Verdict(0.9, "entailment"))
        elif " not " in hypothesis:
            out.append(Verdict(0.1, "contradiction"))
        else:
            out.append(Verdict(0.2, "neutral"))
    return out


PASSAGES = [{"text": "Lists are mutable."}, {"text": "Tuples are immutable."}]
SENTENCES = [
    {"text": "Lists are mutable.", "citations": [1]},
    {"text": "Tuples are not immutable.", "citations": [2]},
    {"text": "Sets are unordered.", "citations": []},
    {"text": "Tuples are immutable.", "citations": [1]},  # true, but not in its cited passage
]


def test_check_sentences_uses_cited_passages_and_labels_failures():
    checked = postprocess.check_sentences(SENTENCES, PASSAGES, predict=fake_predict)
    assert [c["status"] for c in checked] == [
        "supported",
        "contradicted",
        "unsupported",
        "unsupported",
    ]
    everything = postprocess.PostprocessConfig(use_citations=False)
    checked = postprocess.check_sentences(
        SENTENCES, PASSAGES, predict=fake_predict, config=everything
    )
    assert checked[3]["status"] == "supported"


def test_drop_and_flag():
    drop = postprocess.postprocess_answer(
        SENTENCES,
        PASSAGES,
        predict=fake_predict,
        config=postprocess.PostprocessConfig(policy="drop"),
    )
    assert drop["text"] == "Lists are mutable [1]."
    assert drop["removed"] == 3 and len(drop["checked"]) == 4
    flag = postprocess.postprocess_answer(SENTENCES, PASSAGES, predict=fake_predict)
    assert flag["removed"] == 0
    assert flag["text"] == (
        "Lists are mutable [1]. Tuples are not immutable [2]. [unsupported] "
        "Sets are unordered. [unsupported] Tuples are immutable [1]. [unsupported]"
    )


def test_regenerate_replaces_with_a_checked_sentence_else_falls_back():
    calls = []

    def regenerate(sentence, passages, verdict):
        calls.append(verdict["status"])
        if sentence["text"].startswith("Tuples"):
            return {"text": "Tuples are immutable.", "citations": [2]}
        return None

    config = postprocess.PostprocessConfig(policy="regenerate", fallback="flag")
    result = postprocess.postprocess_answer(
        SENTENCES, PASSAGES, predict=fake_predict, config=config, regenerate=regenerate
    )
    texts = [s["text"] for s in result["sentences"]]
    assert texts == [
        "Lists are mutable.",
        "Tuples are immutable.",
        "Sets are unordered.",
        "Tuples are immutable.",
    ]
    assert [s.get("regenerated", False) for s in result["sentences"]] == [False, True, False, True]
    assert result["sentences"][2]["status"] == "unsupported"  # flagged by the fallback
    assert calls == ["contradicted", "unsupported", "unsupported"]


def test_config_validation():
    with pytest.raises(errors.ConfigError, match="policy"):
        postprocess.PostprocessConfig(policy="ignore")
    with pytest.raises(errors.ConfigError, match="regenerate callable"):
        postprocess.postprocess_answer(
            SENTENCES,
            PASSAGES,
            predict=fake_predict,
            config=postprocess.PostprocessConfig(policy="regenerate"),
        )
    with pytest.raises(TypeError):
        postprocess.PostprocessConfig("drop")  # keyword-only
