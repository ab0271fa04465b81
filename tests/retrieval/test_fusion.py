"""Hybrid fusion: hand-computed reciprocal-rank and min-max weighted scores, ties, the retriever."""

from __future__ import annotations

import pytest

from vertjax.retrieval.fusion import (
    HybridRetriever,
    min_max,
    reciprocal_rank_fusion,
    weighted_score_fusion,
)
from vertjax.retrieval.types import Hit, Retriever


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [
        Hit(rank=i, id=pid, title=pid.upper(), score=s, text=f"text {pid}")
        for i, (pid, s) in enumerate(pairs, start=1)
    ]


BM25 = hits(("a", 12.0), ("b", 9.0), ("c", 3.0))
DENSE = hits(("c", 0.9), ("a", 0.8), ("d", 0.5))


def test_rrf_matches_hand_computation():
    fused = reciprocal_rank_fusion([BM25, DENSE], rrf_k=60)
    # a: 1/61 + 1/62, c: 1/63 + 1/61, b: 1/62, d: 1/63
    expected = {"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62, "d": 1 / 63}
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    assert [h.rank for h in fused] == [1, 2, 3, 4]
    for h in fused:
        assert h.score == pytest.approx(expected[h.id])
    assert fused[0].title == "A" and fused[0].text == "text a"
    assert [h.id for h in reciprocal_rank_fusion([BM25, DENSE], k=2)] == ["a", "c"]


def test_rrf_weights_and_ties():
    # weight 2 on dense: c = 2/61 + 1/63 beats a = 1/61 + 2/62
    fused = reciprocal_rank_fusion([BM25, DENSE], rrf_k=60, weights=[1, 2])
    assert [h.id for h in fused][:2] == ["c", "a"]
    # x and y tie exactly: the one seen first (first list) wins
    tie = reciprocal_rank_fusion([hits(("x", 1.0)), hits(("y", 5.0))])
    assert [h.id for h in tie] == ["x", "y"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([BM25, DENSE], weights=[1])


def test_min_max():
    assert min_max([12.0, 9.0, 3.0]) == pytest.approx([1.0, 2 / 3, 0.0])
    assert min_max([5.0, 5.0]) == [1.0, 1.0]
    assert min_max([]) == []


def test_weighted_score_fusion_matches_hand_computation():
    fused = weighted_score_fusion([BM25, DENSE], weights=[0.3, 0.7])
    # bm25 norm: a 1, b 2/3, c 0; dense norm: c 1, a 0.75, d 0
    expected = {"a": 0.3 + 0.7 * 0.75, "c": 0.7, "b": 0.3 * 2 / 3, "d": 0.0}
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    for h in fused:
        assert h.score == pytest.approx(expected[h.id])
    equal = weighted_score_fusion([BM25, DENSE])
    assert [h.id for h in equal] == ["a", "c", "b", "d"]
    assert equal[0].score == pytest.approx(1.75)


class Fixed:
    def __init__(self, ranked: list[Hit]):
        self.ranked = ranked
        self.asked_k: list[int] = []

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        self.asked_k.append(k)
        return [self.ranked[:k] for _ in questions]


def test_hybrid_retriever_fuses_each_question():
    bm25, dense = Fixed(BM25), Fixed(DENSE)
    hybrid = HybridRetriever([bm25, dense], depth=50)
    assert isinstance(hybrid, Retriever)
    out = hybrid.search(["q1", "q2"], 2)
    assert [[h.id for h in q] for q in out] == [["a", "c"], ["a", "c"]]
    assert bm25.asked_k == [50] and dense.asked_k == [50]
    weighted = HybridRetriever([bm25, dense], method="weighted", weights=[0.3, 0.7])
    assert [h.id for h in weighted.search(["q"], 4)[0]] == ["a", "c", "b", "d"]
    with pytest.raises(ValueError):
        HybridRetriever([bm25], method="borda")


def test_hybrid_over_real_bm25_and_dense_indexes(tmp_path):
    import zlib

    import numpy as np

    from vertjax.retrieval import metrics as rm
    from vertjax.retrieval.bm25 import BM25Index
    from vertjax.retrieval.index import DenseIndex, DenseRetriever

    passages = [
        {
            "id": "vacuum",
            "title": "VACUUM",
            "text": "VACUUM reclaims storage occupied by dead tuples.",
        },
        {"id": "wal", "title": "WAL", "text": "Write-ahead logging makes changes durable."},
        {"id": "index", "title": "Indexes", "text": "A B-tree index speeds up equality lookups."},
    ]

    def encode(texts: list[str]) -> np.ndarray:
        """Hashed bag of words: a stand-in for the GTR encoder."""
        out = np.zeros((len(texts), 64), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(".", " ").split():
                out[row, zlib.crc32(word.encode()) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)

    texts = [f"{p['title']} {p['text']}" for p in passages]
    DenseIndex.build(encode(texts), metadata=passages, method="brute").save(tmp_path)
    dense = DenseRetriever(DenseIndex.load(tmp_path), encode)
    bm25 = BM25Index.build(passages)
    hybrid = HybridRetriever([bm25, dense], depth=3)
    questions = [
        rm.Question(id="1", question="what reclaims storage", positive_ids=frozenset({"vacuum"})),
        rm.Question(id="2", question="durable changes", answers=("write-ahead logging",)),
    ]
    for retriever in (bm25, dense, hybrid):
        assert isinstance(retriever, Retriever)
        results = rm.run_retriever(retriever, questions, depth=3)
        assert rm.evaluate(questions, results)["recall@1"] == 1.0


def _question(qid: str, positive: str):
    from vertjax.retrieval import metrics as rm

    return rm.Question(id=qid, question=f"q{qid}", positive_ids=frozenset({positive}))


def _ranked(*ids: str) -> list[Hit]:
    return hits(*((pid, 10.0 - i) for i, pid in enumerate(ids)))


FILLER = [f"x{i}" for i in range(6)]
# Question 0: BM25 has the answer first, dense 7th; question 1: the reverse; question 2: both have
# it 4th and 5th, so only fusion brings it into the top 3.
SWEEP_QUESTIONS = [_question("0", "p0"), _question("1", "p1"), _question("2", "p2")]
SWEEP_LEXICAL = [_ranked("p0", *FILLER), _ranked(*FILLER, "p1"), _ranked(*FILLER[:3], "p2")]
SWEEP_DENSE = [_ranked(*FILLER, "p0"), _ranked("p1", *FILLER), _ranked(*FILLER[3:], "y", "p2")]


def test_sweep_endpoints_are_the_components_and_the_choice_never_loses():
    from vertjax.retrieval import fusion
    from vertjax.retrieval import metrics as rm

    rows = fusion.sweep(SWEEP_LEXICAL, SWEEP_DENSE, SWEEP_QUESTIONS, metric="recall@3")
    by_weight = {r["dense_weight"]: r for r in rows}
    for w, lists in ((0.0, SWEEP_LEXICAL), (1.0, SWEEP_DENSE)):
        alone = rm.evaluate(SWEEP_QUESTIONS, lists)
        assert by_weight[w]["recall@3"] == alone["recall@3"] == pytest.approx(1 / 3)
    chosen = fusion.choose(rows, metric="recall@3")
    assert chosen["kind"] == "hybrid" and 0.0 < chosen["dense_weight"] < 1.0
    assert chosen["recall@3"] > max(by_weight[0.0]["recall@3"], by_weight[1.0]["recall@3"])


def test_a_useless_dense_list_is_weighted_out():
    from vertjax.retrieval import fusion

    useless = [_ranked(*FILLER) for _ in SWEEP_QUESTIONS]
    rows = fusion.sweep(SWEEP_LEXICAL, useless, SWEEP_QUESTIONS, metric="recall@1")
    assert fusion.choose(rows, metric="recall@1") == {
        "method": "rrf",
        "dense_weight": 0.0,
        "kind": "bm25",
        "recall@1": pytest.approx(1 / 3),
        "mrr@10": rows[0]["mrr@10"],
    }
    rows = fusion.sweep(useless, SWEEP_DENSE, SWEEP_QUESTIONS, metric="recall@1", method="weighted")
    assert fusion.choose(rows, metric="recall@1")["kind"] == "dense"
    assert fusion.choose(rows, metric="recall@1")["method"] == "weighted"
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        fusion.sweep(SWEEP_LEXICAL, SWEEP_DENSE, SWEEP_QUESTIONS, grid=[1.5])
