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

    from vertjax.eval import retrieval_metrics as rm
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
