"""Knowledge selection: threshold, top-k (default 4), reranking, most relevant nearest the question."""

from __future__ import annotations

import pytest

from vertjax import errors
from vertjax.retrieval.selection import DEFAULT_K, KnowledgeSelector, Reranker, select
from vertjax.retrieval.types import Hit


def hits(scores: list[float]) -> list[Hit]:
    return [
        Hit(rank=i, id=f"p{i}", title="", score=s, text=f"passage {i}")
        for i, s in enumerate(scores, start=1)
    ]


RETRIEVED = hits([0.9, 0.2, 0.7, 0.8, 0.5, 0.6])


def test_default_k_is_4_and_the_best_passage_comes_last():
    chosen = select("q", RETRIEVED)
    assert DEFAULT_K == 4
    assert [h.id for h in chosen] == ["p6", "p3", "p4", "p1"]  # 0.6, 0.7, 0.8, 0.9
    assert [h.rank for h in chosen] == [4, 3, 2, 1]
    first = select("q", RETRIEVED, most_relevant="first")
    assert [h.id for h in first] == ["p1", "p4", "p3", "p6"]


def test_threshold_and_k():
    assert [h.id for h in select("q", RETRIEVED, k=3, min_score=0.75)] == ["p4", "p1"]
    assert select("q", RETRIEVED, min_score=0.95) == []
    assert [h.id for h in select("q", RETRIEVED, k=1)] == ["p1"]
    with pytest.raises(errors.ConfigError, match=r"selection\.select\.k = 0: "):
        select("q", RETRIEVED, k=0)
    with pytest.raises(errors.ConfigError, match=r"selection\.select\.most_relevant = 'middle'"):
        select("q", RETRIEVED, most_relevant="middle")


@pytest.mark.parametrize(
    "settings, binding",
    [({"k": 0}, "k = 0"), ({"k": "4"}, "k = '4'"), ({"most_relevant": "mid"}, "most_relevant")],
)
def test_bad_selector_bindings_fail_when_it_is_built(settings, binding):
    with pytest.raises(errors.ConfigError, match=f"selection.KnowledgeSelector.{binding}"):
        KnowledgeSelector(**settings)


class KeywordReranker:
    """Scores a passage by how many question words it contains."""

    def scores(self, question, passages):
        words = question.split()
        return [sum(w in p.text for w in words) for p in passages]


def test_reranker_scores_replace_retriever_scores():
    docs = [
        Hit(rank=1, id="x", title="", score=0.9, text="nothing relevant"),
        Hit(rank=2, id="y", title="", score=0.5, text="vacuum settings"),
        Hit(rank=3, id="z", title="", score=0.1, text="autovacuum vacuum settings"),
    ]
    reranker = KeywordReranker()
    assert isinstance(reranker, Reranker)
    chosen = select("autovacuum settings", docs, k=2, reranker=reranker, min_score=1)
    assert [(h.id, h.score, h.rank) for h in chosen] == [("y", 1.0, 2), ("z", 2.0, 1)]
    # a tie keeps retrieval order: y was retrieved first, so it ranks first and comes last
    tied = select("vacuum settings", docs, k=2, reranker=reranker)
    assert [(h.id, h.rank) for h in tied] == [("z", 2), ("y", 1)]


def test_reranker_must_score_every_passage():
    class Broken:
        def scores(self, question, passages):
            return [1.0]

    with pytest.raises(ValueError, match="1 scores for 6"):
        select("q", RETRIEVED, reranker=Broken())


def test_selector_binds_settings():
    selector = KnowledgeSelector(k=2, min_score=0.65)
    assert [h.id for h in selector("q", RETRIEVED)] == ["p4", "p1"]
