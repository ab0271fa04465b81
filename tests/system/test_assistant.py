"""The Assistant's structured result: sub-questions, citations, verdicts, refusals, timings."""

from __future__ import annotations

import dataclasses
import io
import json
import types

import pytest
from conftest import save_tiny_t5
from system_helpers import build_index, domain_pack, make_assistant, passage_question

from vertjax import cli, errors
from vertjax.retrieval.types import Hit
from vertjax.system import assistant

STAGES = {"rewrite", "decompose", "ood", "retrieve", "select", "generate", "consistency", "total"}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return build_index(tmp_path_factory.mktemp("index"))


def test_result_has_every_field_and_grounded_citations(index_dir):
    result = make_assistant(index_dir).answer(passage_question(17))
    assert not result.refused and result.refusal_reason is None
    assert [s.text for s in result.sub_questions] == [passage_question(17)]
    assert result.retrieved and 1 <= len(result.selected) <= 4
    assert result.selected[-1].id == result.retrieved[0].id  # most relevant nearest the question
    assert result.sentences
    for s in result.sentences:
        assert s.citations and s.passage_ids == [result.selected[c - 1].id for c in s.citations]
        assert any(s.text in result.selected[c - 1].text for c in s.citations)
        assert s.status == "supported" and s.supported and s.p_entailment == pytest.approx(1.0)
        assert f"[{s.citations[0]}]" in result.answer
    assert set(result.timings_ms) == STAGES
    assert result.generator == "extractive" and result.consistency_policy == "flag"
    json.dumps(dataclasses.asdict(result))  # --json / the HTTP API serialise it as is


def test_sub_questions_are_retrieved_separately_and_merged(index_dir):
    result = make_assistant(index_dir).answer(f"{passage_question(3)} {passage_question(150)}")
    assert len(result.sub_questions) == 2
    assert {p.sub_question for p in result.retrieved} == {0, 1}
    assert {s.sub_question for s in result.sentences} == {0, 1}
    ids = [p.id for p in result.selected]
    assert len(ids) == len(set(ids))  # one number per passage across sub-questions


def test_follow_up_is_rewritten_with_the_history(index_dir):
    result = make_assistant(index_dir).answer(
        "How does it behave under heavy load?", history=["Tell me about the `bloom filter`."]
    )
    assert result.rewritten_question == "How does bloom filter behave under heavy load?"


class _Classifier:
    threshold = 0.5

    def probabilities(self, questions):
        return [0.9 if "database" in q.lower() else 0.1 for q in questions]


def test_out_of_domain_questions_are_refused_with_a_reason(index_dir):
    bot = make_assistant(index_dir, ood_classifier=_Classifier())
    result = bot.answer("How long should I boil an egg?")
    assert result.refused and "P(in-domain) = 0.10" in result.refusal_reason
    assert result.sentences == [] and result.selected == []
    assert result.answer.startswith("I can only answer questions about databases.")
    mixed = bot.answer("What does the database read? How long should I boil an egg?")
    assert not mixed.refused and [s.refused for s in mixed.sub_questions] == [False, True]
    assert "Not answered: outside databases" in mixed.answer
    strict = make_assistant(index_dir, min_top_score=1e6)
    assert strict.answer(passage_question(5)).refused


def test_refusals_say_which_reason_applies(index_dir):
    """Outside the domain (the classifier) and nothing in the documents answering (retrieval
    below the threshold) are told apart in the text, the reason and `refusal_kind`, which the
    HTTP API carries."""
    from vertjax.system import http_api, parsing

    outside = make_assistant(index_dir, ood_classifier=_Classifier()).answer("Who won the cup?")
    no_match = make_assistant(index_dir, min_top_score=1e6).answer(passage_question(5))
    assert (outside.refusal_kind, no_match.refusal_kind) == (
        parsing.OUTSIDE_DOMAIN,
        parsing.NO_MATCH,
    )
    assert outside.refusal_reason.startswith("outside databases: the domain classifier")
    assert no_match.refusal_reason.startswith("nothing in the documents answers this")
    assert "a raw bm25 score" in no_match.refusal_reason
    assert outside.answer != no_match.answer
    assert no_match.answer.startswith("Nothing in the documents about databases answers this")
    body = http_api.chat_response(no_match, model="m")["vertjax"]
    assert (body["refused"], body["refusal_kind"]) == (True, parsing.NO_MATCH)
    assert body["sub_questions"][0]["refusal_kind"] == parsing.NO_MATCH


class _Rejecting:
    def predict(self, premises, hypotheses):
        return [types.SimpleNamespace(p_entailment=0.1, label="contradiction") for _ in hypotheses]


def test_consistency_policies_drop_and_flag(index_dir):
    flagged = make_assistant(index_dir, consistency_scorer=_Rejecting()).answer(passage_question(9))
    assert flagged.sentences and all(s.status == "contradicted" for s in flagged.sentences)
    assert all(s.supported is False and s.p_entailment == 0.1 for s in flagged.sentences)
    assert "[unsupported]" in flagged.answer
    dropped = make_assistant(
        index_dir, consistency_scorer=_Rejecting(), postprocess_policy="drop"
    ).answer(passage_question(9))
    assert dropped.sentences == [] and dropped.removed_sentences == len(flagged.sentences)
    assert dropped.refused and dropped.refusal_kind == assistant.ALL_DROPPED_KIND
    n = len(flagged.sentences)
    assert dropped.refusal_reason == f"all {n} answer sentences were dropped as unsupported" + (
        " by the passages they cite"
    )
    assert dropped.answer.startswith(f"I could not answer: all {n} answer sentences were dropped")
    assert flagged.trust == assistant.TRUST_UNSUPPORTED
    assert "Trust: not supported by the cited passages" in flagged.answer
    unchecked = make_assistant(index_dir, consistency_scorer=None).answer(passage_question(9))
    assert {(s.status, s.supported, s.p_entailment) for s in unchecked.sentences} == {
        ("unchecked", None, None)
    }


class _Fixed:
    """A retriever that returns the same passages for every question."""

    def __init__(self, hits):
        self.hits = hits

    def search(self, questions, k):
        return [self.hits[:k] for _ in questions]


# A software manual's passages that share one word ("world") with a sports question.
_MANUAL = [
    Hit(i, f"m{i}", title, 10.0 - i, text)
    for i, (title, text) in enumerate(
        [
            ("Clocks", "The world clock module prints the time in every world city at once."),
            ("Greetings", "The hello world program prints a greeting and then exits cleanly."),
            ("Locales", "Locale settings differ across the world for dates and numbers."),
            ("Files", "The open call returns a file object for reading bytes from disk."),
        ],
        start=1,
    )
]


def test_an_answer_from_unrelated_passages_is_marked_as_not_addressing_thepassage_question():
    """No classifier, no score threshold: an out-of-domain question still gets extracted,
    supported sentences (they entail themselves), but its trust label says they do not answer
    it; a question the passages do answer is labelled so. Both travel in the JSON / HTTP body."""
    from vertjax.system import http_api

    bot = make_assistant(None, retriever=_Fixed(_MANUAL), retrieve_k=4)
    cup = bot.answer("Who won the 2018 football World Cup final?")
    assert not cup.refused and cup.sentences
    assert all(
        s.status == "supported" and s.p_entailment == pytest.approx(1.0) for s in cup.sentences
    )
    assert all(s.relevance < 0.5 and s.relevant is False for s in cup.sentences)
    assert cup.trust == assistant.TRUST_MAY_NOT_ADDRESS
    assert "Trust: supported but may not address the question" in cup.answer
    clock = bot.answer("Which module prints the time in every world city?")
    assert clock.trust == assistant.TRUST_ANSWERS and clock.sentences[0].relevant
    assert clock.sentences[0].relevance > 0.8
    assert "Trust: answers the question" in clock.answer
    body = http_api.chat_response(cup, model="m")["vertjax"]
    assert body["trust"] == assistant.TRUST_MAY_NOT_ADDRESS
    assert body["trust_label"] == "supported but may not address the question"
    assert {"relevance", "relevant", "status", "p_entailment"} <= set(body["sentences"][0])
    lenient = make_assistant(None, retriever=_Fixed(_MANUAL), retrieve_k=4, min_relevance=0.0)
    assert lenient.answer("Who won the 2018 football World Cup final?").trust == (
        assistant.TRUST_ANSWERS
    )
    unchecked = make_assistant(
        None, retriever=_Fixed(_MANUAL), retrieve_k=4, consistency_scorer=None
    ).answer("Who won the 2018 football World Cup final?")
    assert unchecked.trust_label == "may not address the question (support not checked)"


def test_bad_arguments_are_config_errors(index_dir):
    with pytest.raises(errors.ConfigError, match="min_relevance"):
        make_assistant(index_dir, min_relevance=1.5)
    with pytest.raises(errors.ConfigError):
        make_assistant(index_dir).answer("   ")
    with pytest.raises(errors.ConfigError):
        make_assistant(index_dir, k=5, retrieve_k=3)


def test_vertjax_answer_json_over_the_default_gin(index_dir, capsys):
    code = cli.main(
        [
            "answer",
            "--config",
            "system/default.gin",
            f"--gin.INDEX_DIR={index_dir}",
            "--json",
            passage_question(17),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sentences"] and out["selected"] and out["refused"] is False
    assert set(out["timings_ms"]) == STAGES
    assert out["trust"] == assistant.TRUST_ANSWERS and out["sentences"][0]["relevant"]
    assert cli.main(["answer", "--config", "system/default.gin", "q"]) == 2
    assert "INDEX_DIR" in capsys.readouterr().err
    strict = [
        "--config",
        "system/default.gin",
        f"--gin.INDEX_DIR={index_dir}",
        passage_question(17),
    ]
    assert cli.main(["answer", *strict, "--gin.MIN_RELEVANCE=2.0"]) == 2  # gin reaches it
    assert "min_relevance" in capsys.readouterr().err


def test_default_gin_binds_a_t5_answer_generator_and_nli_scorer_by_run_dir(
    index_dir, tmp_path, tiny_vocab, capsys
):
    """The bindings README and system/default.gin document for trained models (`from_run_dir`)."""
    save_tiny_t5(tmp_path / "t5", vocab_size=400)  # the tiny vocab: 300 pieces + 100 extra ids
    generator, scorer = "generation.T5AnswerGenerator.from_run_dir", "nli.Scorer.from_run_dir"
    code = cli.main(
        [
            "answer",
            "--config",
            "system/default.gin",
            f"--gin.INDEX_DIR={index_dir}",
            f"--gin.assistant.Assistant.generator=@{generator}()",
            f"--gin.{generator}.checkpoint='{tmp_path / 't5'}'",
            f"--gin.{generator}.vocab='{tiny_vocab}'",
            f"--gin.{generator}.max_decode_length=4",
            f"--gin.assistant.Assistant.consistency_scorer=@{scorer}()",
            f"--gin.{scorer}.checkpoint_dir='{tmp_path / 't5'}'",
            f"--gin.{scorer}.vocab_path='{tiny_vocab}'",
            "--json",
            passage_question(17),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["selected"] and set(out["timings_ms"]) == STAGES


def test_prompting_generators_get_the_domain_unless_told_one(index_dir):
    from vertjax.system import generation

    told = generation.BackendAnswerGenerator(object(), domain="given")
    untold = generation.BackendAnswerGenerator(object())
    make_assistant(index_dir, generator=told, domain="databases")
    make_assistant(index_dir, generator=untold, domain="databases")
    assert (told.domain, untold.domain) == ("given", "databases")


def test_answers_cite_files_a_user_can_open(tmp_path, capsys, monkeypatch):
    """`vertjax answer` over the default gin: the refusal names the pack's domain, citations
    name the page's relative path and URL, in the text and in --json."""
    pack = domain_pack(tmp_path, base_url="https://sqlite.example/doc/")
    index = tmp_path / "index"
    assert cli.main(["index", "build", "--passages", str(pack), "--out", str(index), "--bm25"]) == 0
    capsys.readouterr()
    argv = ["answer", "--config", "system/default.gin", f"--gin.INDEX_DIR={index}"]
    question = "Which page mentions topic3word7 and topic3word8?"
    assert cli.main([*argv, question]) == 0
    printed = capsys.readouterr().out
    assert "Page 3, https://sqlite.example/doc/lang/page3.html (" in printed
    assert cli.main([*argv, "--json", question]) == 0
    out = json.loads(capsys.readouterr().out)
    cited = out["selected"][out["sentences"][0]["citations"][0] - 1]
    assert (cited["doc_id"], cited["source"]) == ("lang/page3.html", "lang/page3.html")
    assert str(tmp_path) not in json.dumps(out["selected"])
    assert cli.main([*argv, "--gin.MIN_TOP_SCORE=1e6", question]) == 0
    assert "documents about sqlite_docs answers" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(question + "\n"))
    assert cli.main(["chat", *argv[1:], "--quiet"]) == 0
    assert "https://sqlite.example/doc/lang/page3.html" in capsys.readouterr().out


class _Silent:
    """A streaming generator (as `BackendAnswerGenerator`) whose LLM wrote no sentence."""

    name = "silent"

    def generate(self, question, passages):
        return []

    def stream(self, question, passages):
        yield from ()


def test_a_streamed_answer_without_sentences_times_every_stage(index_dir):
    bot = make_assistant(index_dir, generator=_Silent())
    *pieces, result = bot.answer_stream(passage_question(17))
    assert result.refusal_kind == assistant.NO_ANSWER_KIND and "".join(pieces) == result.answer
    assert set(result.timings_ms) == STAGES
