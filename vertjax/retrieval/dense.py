"""Dense retrieval with a trained GTR/DPR dual encoder, and opening any retriever of an index dir.

`DenseRetriever` is `index.DenseRetriever` with its question encoder built from a checkpoint: the
questions are tokenized with the retriever's vocab and embedded by its question tower (the shared
tower for GTR). `open_retriever(index_dir, kind)` gives the `Retriever` that `vertjax retrieve`
and `vertjax eval retrieval` use: "bm25", "dense", "hybrid" (fusion of both, weighted as tuned on
validation questions) or "auto" (whichever of those the tuning measured best).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vertjax import errors
from vertjax.retrieval import encode, index
from vertjax.retrieval.index_dir import IndexDir
from vertjax.retrieval.types import Retriever

PathLike = str | os.PathLike
KINDS = ("bm25", "dense", "hybrid")


class QuestionEncoder:
    """questions -> `[q, dim]` normalised embeddings from a dual encoder's question tower."""

    def __init__(
        self, model: Any, params: Any, vocab: Any, *, length: int = 64, batch_size: int = 32
    ):
        self.vocab, self.length = vocab, length
        self.dimension = model.projection_dim
        self._encoder = encode.BatchEncoder(model, params, kind="question", batch_size=batch_size)

    @classmethod
    def from_checkpoint(
        cls, retriever: PathLike, vocab: PathLike, *, length: int = 64, dimension: int
    ) -> QuestionEncoder:
        """The question tower of the dual encoder at `retriever` with its `vocab`; checks that it
        embeds into the index's `dimension`."""
        from vertjax.data import vocab as vocab_lib
        from vertjax.train import restore

        model, params = restore.load_dual_encoder(str(retriever))
        if model.projection_dim != dimension:
            raise errors.RetrievalIndexError(
                f"the retriever {retriever} embeds into {model.projection_dim} dimensions but the"
                f" index has {dimension} (built with another encoder?)"
            )
        vocabulary = vocab_lib.load_vocab(vocab)
        vocab_lib.check_fits_model(
            vocabulary, model.config.vocab_size, vocab_path=vocab, model="the retriever"
        )
        return cls(model, params, vocabulary, length=length)

    def __call__(self, questions: list[str]) -> np.ndarray:
        if not questions:
            return np.zeros((0, self.dimension), np.float32)
        return self._encoder(encode.tokenize(self.vocab, questions, length=self.length))


class DenseRetriever(index.DenseRetriever):
    """A `Retriever` over a `DenseIndex` whose questions a dual-encoder checkpoint embeds."""

    @classmethod
    def from_checkpoint(
        cls,
        dense_index: index.DenseIndex,
        *,
        retriever: PathLike,
        vocab: PathLike,
        question_length: int = 64,
    ) -> DenseRetriever:
        """Loads the dual encoder at `retriever` (run dir or `checkpoint_<step>`) and `vocab`."""
        encoder = QuestionEncoder.from_checkpoint(
            retriever, vocab, length=question_length, dimension=dense_index.dimension
        )
        return cls(dense_index, encoder)

    @classmethod
    def load(
        cls,
        index_dir: PathLike,
        *,
        retriever: PathLike | None = None,
        vocab: PathLike | None = None,
        verify: bool = True,
    ) -> DenseRetriever:
        """Opens `index_dir`; the encoder and vocab default to those recorded at build time."""
        recorded = IndexDir(index_dir).read_retriever()
        return cls.from_checkpoint(
            index.DenseIndex.load(index_dir, verify=verify),
            retriever=retriever or recorded["retriever"],
            vocab=vocab or recorded["vocab"],
            question_length=int(recorded.get("question_length", 64)),
        )


def open_retriever(
    index_dir: PathLike, kind: str, *, verify: bool = True, depth: int = 100
) -> Retriever:
    """The "bm25", "dense", "hybrid" or "auto" retriever of an index.

    "hybrid" fuses BM25 and dense (each `depth` deep) with the method and weights that
    `evaluate.tune_fusion` chose on validation questions (`fusion.json`), or equal-weight RRF if the index
    was never tuned. "auto" opens the kind that tuning measured best; untuned, BM25 when the index
    has one (it beat every untuned dense/hybrid we measured), else dense.
    """
    from vertjax.retrieval import fusion

    if kind not in (*KINDS, "auto"):
        raise errors.ConfigError(f"unknown retriever {kind!r}; use one of {(*KINDS, 'auto')}")
    choice = fusion.read_choice(index_dir)
    if kind == "auto":
        if choice is not None:
            kind = choice["kind"]
        else:
            kind = "bm25" if IndexDir(index_dir).has_bm25() else "dense"
    if kind == "bm25":
        return _open_bm25(index_dir, verify=verify)
    dense = _open_dense(index_dir, verify=verify)
    if kind == "dense":
        return dense
    lexical = _open_bm25(index_dir, verify=verify)
    if choice is None:
        return fusion.HybridRetriever([lexical, dense], depth=depth)
    return fusion.HybridRetriever(
        [lexical, dense],
        method=choice["method"],
        weights=choice["weights"],
        rrf_k=float(choice.get("rrf_k", 60.0)),
        depth=depth,
    )


def _open_bm25(index_dir: PathLike, *, verify: bool) -> Retriever:
    """The BM25 index of an index dir, or of each shard of a sharded one, merged."""
    from vertjax.retrieval import bm25, sharded

    layout = IndexDir(index_dir)
    if not layout.is_sharded():
        return bm25.BM25Index.load(index_dir, verify=verify)
    shards = layout.shard_dirs()
    return sharded.ShardedRetriever([bm25.BM25Index.load(s.root, verify=verify) for s in shards])


def _open_dense(index_dir: PathLike, *, verify: bool) -> Retriever:
    """The dense retriever of an index dir; for a sharded one the question encoder is loaded
    once (from shard 0's record, which every shard shares) and each shard's index searched."""
    from vertjax.retrieval import sharded

    layout = IndexDir(index_dir)
    if not layout.is_sharded():
        return DenseRetriever.load(index_dir, verify=verify)
    shards = layout.shard_dirs()
    recorded = shards[0].read_retriever()
    indexes = [index.DenseIndex.load(s.root, verify=verify) for s in shards]
    encoder = QuestionEncoder.from_checkpoint(
        recorded["retriever"],
        recorded["vocab"],
        length=int(recorded.get("question_length", 64)),
        dimension=indexes[0].dimension,
    )
    return sharded.ShardedDenseRetriever(indexes, encoder)
