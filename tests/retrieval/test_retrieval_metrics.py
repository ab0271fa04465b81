"""Retrieval metrics checked against hand-computed values for both labellings."""

from __future__ import annotations

import json
import math

import pytest

from vertjax import errors
from vertjax.retrieval import metrics as rm
from vertjax.retrieval.types import Hit


def ranked(*items: tuple[str, str]) -> list[Hit]:
    return [
        Hit(rank=i, id=pid, title="", score=1.0 / i, text=text)
        for i, (pid, text) in enumerate(items, start=1)
    ]


BY_IDS = rm.Question(id="q1", question="?", positive_ids=frozenset({"a", "b"}))
IDS_HITS = ranked(("x", ""), ("a", ""), ("y", ""), ("b", ""), ("z", ""))
BY_ANSWERS = rm.Question(id="q2", question="capital of France?", answers=("Paris",))
ANSWER_HITS = ranked(("1", "Lyon is big."), ("2", "The capital is PARIS."), ("3", "Parisian food"))


def test_positive_ids_metrics_by_hand():
    m = rm.question_metrics(BY_IDS, IDS_HITS, ks=(1, 3, 5, 10))
    # relevance = [0, 1, 0, 1, 0]
    assert (m["recall@1"], m["recall@3"], m["recall@5"], m["recall@10"]) == (0, 0.5, 1, 1)
    assert m["precision@1"] == 0 and m["precision@3"] == pytest.approx(1 / 3)
    assert m["precision@5"] == pytest.approx(2 / 5) and m["precision@10"] == pytest.approx(2 / 10)
    assert m["mrr@10"] == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)  # 0.6509
    assert m["ndcg@10"] == pytest.approx(0.650921, abs=1e-6)


def test_answer_metrics_are_dpr_top_k_accuracy():
    m = rm.question_metrics(BY_ANSWERS, ANSWER_HITS, ks=(1, 3))
    # "PARIS." matches after normalisation; "Parisian" is not the word "paris"
    assert (m["recall@1"], m["recall@3"]) == (0.0, 1.0)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["mrr@10"] == 0.5
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(3))  # ideal: the one relevant hit at 1


def test_evaluate_averages_questions_and_ignores_repeated_ids():
    miss = rm.Question(id="q3", question="?", positive_ids=frozenset({"nope"}))
    repeated = ranked(("a", ""), ("a", ""), ("b", ""))  # a counts once: relevance [1, 1]
    metrics = rm.evaluate([BY_IDS, BY_ANSWERS, miss], [repeated, ANSWER_HITS, IDS_HITS], ks=(1, 3))
    assert metrics["recall@1"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert metrics["recall@3"] == pytest.approx((1 + 1 + 0) / 3)
    assert metrics["precision@1"] == pytest.approx(1 / 3)
    assert metrics["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert set(rm.evaluate([BY_IDS], [IDS_HITS])) == {
        *(f"recall@{k}" for k in rm.RECALL_KS),
        *(f"precision@{k}" for k in rm.RECALL_KS),
        "mrr@10",
        "ndcg@10",
    }
    with pytest.raises(ValueError):
        rm.evaluate([BY_IDS], [])


def test_curves():
    c = rm.curves([BY_IDS], [IDS_HITS], max_k=4)
    assert c["precision"] == pytest.approx([0, 1 / 2, 1 / 3, 2 / 4])
    assert c["recall"] == pytest.approx([0, 0.5, 0.5, 1])


def test_normalisation_like_dpr():
    assert rm.normalize_answer("  The Eiffel-Tower, (Paris)! ") == "eiffeltower paris"
    assert rm.normalize_answer("Café") == rm.normalize_answer("Cafe\u0301")
    assert rm.has_answer("Built by an engineer: Gustave Eiffel.", ["gustave eiffel"])
    assert not rm.has_answer("Eiffeltowers", ["Eiffel"])
    assert rm.has_answer("It is in the U.S.", ["US"])
    assert not rm.has_answer("anything", ["the", ""])  # empty after normalisation: no match


def test_load_questions_validates_with_file_and_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        json.dumps({"id": 1, "question": "a?", "positive_ids": ["p1", 2]})
        + "\n"
        + json.dumps({"id": "x", "question": "b?", "answers": ["Paris"]})
        + "\n",
        encoding="utf-8",
    )
    qs = rm.load_questions(path)
    assert qs[0] == rm.Question(id="1", question="a?", positive_ids=frozenset({"p1", "2"}))
    assert qs[1].answers == ("Paris",)
    bad = {
        '{"id": "a", "question": "q"}': "needs 'positive_ids' or 'answers'",
        '{"id": "a", "question": "q", "positive_ids": []}': "positive_ids",
        '{"id": "a", "question": "q", "answers": ["the"]}': "answers",
        '{"question": "q", "answers": ["x"]}': "'id'",
        '{"id": "a", "question": "", "answers": ["x"]}': "'question'",
        "[1, 2]": "JSON object",
        "{oops": "invalid JSON",
    }
    for line, message in bad.items():
        path.write_text('{"id": "ok", "question": "q", "answers": ["x"]}\n' + line + "\n")
        with pytest.raises(errors.DataError, match=f"q.jsonl:2: .*{message}"):
            rm.load_questions(path)
    path.write_text('{"id": "a", "question": "q", "answers": ["x"]}\n\n' * 2)
    with pytest.raises(errors.DataError, match="q.jsonl:3: duplicate"):
        rm.load_questions(path)


def test_run_retriever_batches():
    class Echo:
        def __init__(self):
            self.batches = []

        def search(self, questions, k):
            self.batches.append(len(questions))
            return [ranked((q, q)) for q in questions]

    echo = Echo()
    qs = [
        rm.Question(id=str(i), question=f"q{i}", positive_ids=frozenset({f"q{i}"}))
        for i in range(5)
    ]
    results = rm.run_retriever(echo, qs, depth=3, batch_size=2)
    assert echo.batches == [2, 2, 1]
    assert rm.evaluate(qs, results)["recall@1"] == 1.0
