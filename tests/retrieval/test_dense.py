"""Passage encoding, build_index (resumable, dense + BM25 in one dir) and DenseRetriever."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_retriever

from vertjax import errors
from vertjax.data import vocab as vocab_lib
from vertjax.retrieval import dense, encode, store
from vertjax.train import restore

LENGTH = 96


def test_tokenize_truncates_appends_eos_and_pads(tiny_vocab):
    vocab = vocab_lib.load_vocab(tiny_vocab)
    tokens = encode.tokenize(vocab, ["the database reads every row", ""], length=4)
    assert tokens.shape == (2, 4) and tokens.dtype == np.int32
    assert tokens[0, -1] == encode.EOS_ID and (tokens[0] > 0).all()
    assert tokens[1].tolist() == [encode.EOS_ID, 0, 0, 0]


def test_build_index_finds_each_passage_from_its_own_text(tmp_path, tiny_corpus_jsonl, tiny_vocab):
    options = dict(
        passages=tiny_corpus_jsonl,
        out=tmp_path / "index",
        retriever=make_retriever(tmp_path / "gtr"),
        vocab=tiny_vocab,
        method="brute",
        bm25=True,
        passage_length=LENGTH,
        question_length=LENGTH,
        progress=False,
    )
    summary = encode.build_index(**options, batch_size=24)
    assert summary["status"] == "built" and summary["count"] == 200
    retriever = dense.DenseRetriever.load(tmp_path / "index")
    passages = store.PassageStore.open(tmp_path / "index" / store.PASSAGES_FILE)
    rows = [0, 57, 199]
    queries = [encode.passage_text(passages[r]) for r in rows]
    hits = retriever.search(queries, 3)
    assert [h[0].id for h in hits] == [passages[r]["id"] for r in rows]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    for kind in dense.KINDS:
        assert len(dense.open_retriever(tmp_path / "index", kind).search(["row"], 5)[0]) == 5
    assert encode.build_index(**options)["status"] == "already built"  # any batch size


class _Interrupt(Exception):
    pass


def test_interrupted_encoding_resumes_to_the_same_embeddings(
    tmp_path, tiny_corpus_jsonl, tiny_vocab
):
    model, params = restore.load_dual_encoder(str(make_retriever(tmp_path / "gtr")))
    vocab = vocab_lib.load_vocab(tiny_vocab)
    passages = store.PassageStore.from_jsonl(tiny_corpus_jsonl)
    batch_encoder = encode.BatchEncoder(model, params, kind="passage", batch_size=16)
    kwargs = dict(vocab=vocab, passages=passages, dim=16, passage_length=32, shard_size=64)
    kwargs.update(rows_per_call=64)  # 4 batches per encoder call: the third call is interrupted
    straight = tmp_path / "straight"
    assert (
        encode.encode_passages(encoder=batch_encoder, out_dir=straight, progress=False, **kwargs)
        == 0
    )

    calls = []

    def flaky(tokens):
        calls.append(len(tokens))
        if len(calls) == 3:  # 128 rows written, 2 shards recorded
            raise _Interrupt
        return batch_encoder(tokens)

    flaky.batch_size = batch_encoder.batch_size
    with pytest.raises(_Interrupt):
        encode.encode_passages(
            encoder=flaky, out_dir=tmp_path / "resumed", progress=False, **kwargs
        )
    resumed_from = encode.encode_passages(
        encoder=batch_encoder, out_dir=tmp_path / "resumed", progress=False, **kwargs
    )
    assert resumed_from == 128
    np.testing.assert_allclose(
        store.open_embeddings(tmp_path / "resumed" / store.EMBEDDINGS_FILE),
        store.open_embeddings(straight / store.EMBEDDINGS_FILE),
        atol=1e-6,
    )


def test_mismatched_encoder_and_vocab_are_clear_errors(tmp_path, tiny_corpus_jsonl, tiny_vocab):
    run = make_retriever(tmp_path / "gtr")
    encode.build_index(
        passages=tiny_corpus_jsonl,
        out=tmp_path / "index",
        retriever=run,
        vocab=tiny_vocab,
        method="brute",
        passage_length=16,
        progress=False,
    )
    other = make_retriever(tmp_path / "other", projection_dim=8)
    with pytest.raises(errors.RetrievalIndexError, match="8 dimensions but the index has 16"):
        dense.DenseRetriever.load(tmp_path / "index", retriever=other)
    small = make_retriever(tmp_path / "small", vocab_size=50)
    with pytest.raises(errors.ConfigError, match="wrong vocab"):
        dense.DenseRetriever.load(tmp_path / "index", retriever=small)
    with pytest.raises(errors.RetrievalIndexError, match="no BM25 index"):
        dense.open_retriever(tmp_path / "index", "hybrid")
    with pytest.raises(errors.ConfigError, match="nothing to build"):
        encode.build_index(passages=tiny_corpus_jsonl, out=tmp_path / "x")


def test_batches_are_length_sorted_and_cut_to_buckets_without_changing_embeddings(tmp_path):
    model, params = restore.load_dual_encoder(str(make_retriever(tmp_path / "gtr")))
    rng = np.random.default_rng(0)
    lengths = [3, 70, 33, 64, 1, 65, 5]
    tokens = np.zeros((len(lengths), 96), np.int32)
    for row, n in enumerate(lengths):
        tokens[row, : n - 1] = rng.integers(2, 400, n - 1)
        tokens[row, n - 1] = encode.EOS_ID
    batch_encoder = encode.BatchEncoder(model, params, kind="passage", batch_size=2)
    widths = []
    jitted = batch_encoder._fn
    batch_encoder._fn = lambda p, batch: widths.append(batch.shape[1]) or jitted(p, batch)
    got = batch_encoder(tokens)
    # Longest first, two rows a batch: (70, 65) -> 96, (64, 33) -> 64, (5, 3) -> 32, (1) -> 32.
    assert widths == [96, 64, 32, 32]
    full = np.asarray(model.encode(params, tokens, kind="passage"))  # every row padded to 96
    np.testing.assert_allclose(got, full, atol=1e-5)
    assert batch_encoder(tokens[:0]).shape[0] == 0
