"""`tune_fusion`: the fusion choice written into an index dir is the one its retrievers open."""

from __future__ import annotations

import pytest


def test_tune_writes_the_choice_that_hybrid_and_auto_retrievers_open(
    tmp_path, tiny_corpus_jsonl, tiny_vocab
):
    from conftest import make_retriever

    from vertjax import errors, io_utils
    from vertjax.retrieval import bm25, dense, encode, evaluate, fusion, index_dir

    index = tmp_path / "index"
    encode.build_index(
        passages=tiny_corpus_jsonl,
        out=index,
        retriever=make_retriever(tmp_path / "gtr"),
        vocab=tiny_vocab,
        method="brute",
        bm25=True,
        passage_length=32,
        question_length=32,
        progress=False,
    )
    assert isinstance(dense.open_retriever(index, "auto"), bm25.BM25Index)  # untuned
    records = list(io_utils.read_jsonl(tiny_corpus_jsonl))[:12]
    questions = tmp_path / "validation.jsonl"
    io_utils.write_jsonl(
        questions,
        [{"id": r["id"], "question": r["text"], "positive_ids": [r["id"]]} for r in records],
    )
    record = evaluate.tune_fusion(index, questions=questions, metric="recall@1")
    assert record == fusion.read_choice(index)
    assert {row["method"] for row in record["sweep"]} == set(fusion.FUSION_METHODS)
    assert record["method"] == record["chosen"]["method"]
    best = max(row["recall@1"] for row in record["sweep"])
    assert record["chosen"]["recall@1"] == best
    assert record["weights"] == [
        1.0 - record["chosen"]["dense_weight"],
        record["chosen"]["dense_weight"],
    ]
    hybrid = dense.open_retriever(index, "hybrid")
    assert isinstance(hybrid, fusion.HybridRetriever) and hybrid.weights == record["weights"]
    assert hybrid.method == record["method"]
    auto = dense.open_retriever(index, "auto")
    expected = {"bm25": bm25.BM25Index, "dense": dense.DenseRetriever}
    assert isinstance(auto, expected.get(record["kind"], fusion.HybridRetriever))
    (index / index_dir.FUSION_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(errors.RetrievalIndexError, match="corrupted"):
        dense.open_retriever(index, "hybrid")
