"""BM25 via bm25s: hand-computed Lucene scores, stemming, no-match queries, save/load, errors."""

from __future__ import annotations

import json
import math

import pytest

from vertjax import errors
from vertjax.retrieval import store
from vertjax.retrieval.bm25 import BM25Index
from vertjax.retrieval.index import DenseIndex

PASSAGES = [
    {"id": "a", "title": "Cats", "text": "The cat sat on the mat."},
    {"id": "b", "title": "Dogs", "text": "Dogs chase cats and run quickly."},
    {"id": "c", "title": "SQL", "text": "SELECT statements read rows from a table."},
]


def lucene(tf: int, df: int, dl: int, *, n: int, avgdl: float, k1=1.5, b=0.75) -> float:
    """Lucene BM25: idf = ln(1 + (N - df + .5) / (df + .5)), tf / (tf + k1 (1 - b + b dl / avgdl))."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_scores_match_hand_computed_lucene_bm25():
    index = BM25Index.build(PASSAGES)
    # Tokens after English stopwords: a = cats cat sat mat (4), b = dogs dogs chase cats run
    # quickly (6), c = sql select statements read rows from table (7); avgdl = 17/3.
    avgdl = 17 / 3
    [[hit]] = index.search(["cat mat"], 3)
    expected = 2 * lucene(1, 1, 4, n=3, avgdl=avgdl)
    assert hit.id == "a" and hit.score == pytest.approx(expected, rel=1e-5)
    hits = index.search(["dogs cats"], 3)[0]
    assert [h.id for h in hits] == ["b", "a"]
    assert hits[0].score == pytest.approx(
        lucene(2, 1, 6, n=3, avgdl=avgdl) + lucene(1, 2, 6, n=3, avgdl=avgdl), rel=1e-5
    )
    assert hits[1].score == pytest.approx(lucene(1, 2, 4, n=3, avgdl=avgdl), rel=1e-5)
    assert [h.rank for h in hits] == [1, 2]


def test_queries_without_known_terms_return_no_hits():
    index = BM25Index.build(PASSAGES)
    assert index.search(["zebra", "the", "", "table"], 10)[:3] == [[], [], []]
    assert index.search([], 5) == []
    with pytest.raises(ValueError):
        index.search(["cat"], 0)


def test_stemming_is_optional_and_changes_matching():
    plain = BM25Index.build(PASSAGES)
    stemmed = BM25Index.build(PASSAGES, stemmer="english")
    assert plain.search(["running"], 3) == [[]]
    assert [h.id for h in stemmed.search(["running"], 3)[0]] == ["b"]
    with pytest.raises(errors.ConfigError, match="klingon"):
        BM25Index.build(PASSAGES, stemmer="klingon")


def test_save_load_round_trip_shares_passages_with_a_dense_index(tmp_path):
    import numpy as np

    DenseIndex.build(np.eye(3, dtype=np.float32), metadata=PASSAGES, method="brute").save(tmp_path)
    dense = DenseIndex.load(tmp_path)
    bm25 = BM25Index.build(dense.passages, stemmer="english")
    bm25.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    assert loaded.params["stemmer"] == "english"
    questions = ["running dogs", "table rows", "cat"]
    assert loaded.search(questions, 2) == bm25.search(questions, 2)
    DenseIndex.load(tmp_path)  # the dense index is still intact beside it

    manifest = json.loads((tmp_path / "bm25" / "manifest.json").read_text())
    name = next(n for n in manifest["files"] if n.endswith("vocab.index.json"))
    (tmp_path / name).write_text((tmp_path / name).read_text().replace('"sql"', '"sqm"'))
    with pytest.raises(errors.RetrievalIndexError, match="checksum"):
        BM25Index.load(tmp_path)
    with pytest.raises(errors.RetrievalIndexError, match="missing"):
        BM25Index.load(tmp_path / "elsewhere")


def test_builds_from_a_corpus_jsonl_and_rejects_duplicates(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(p) + "\n" for p in PASSAGES), encoding="utf-8")
    index = BM25Index.build(corpus)
    assert isinstance(index.passages, store.PassageStore)
    assert index.search(["select"], 1)[0][0].id == "c"
    with pytest.raises(errors.DataError, match="duplicate"):
        BM25Index.build(PASSAGES + PASSAGES[:1])
