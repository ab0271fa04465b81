"""Search over a sharded index: every shard answers top-k, the lists are merged by score.

`vertjax index build --num_shards N --shard_id I` writes shard I of N as an index directory of
its own (`index_dir.IndexDir.shard_dirs`), over a contiguous slice of the passages. Merging the
shards' top-k lists by score gives exactly the top-k of one index over all passages when the
scores are comparable across shards: dense dot products are (one encoder, one question vector);
BM25 scores use each shard's own document frequencies, as sharded search engines do by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from vertjax.retrieval import index
from vertjax.retrieval.types import Hit, Retriever, rerank


def merge(per_shard: Sequence[Sequence[list[Hit]]], k: int) -> list[list[Hit]]:
    """Merges per-shard ranked lists (shard order, one list per question) into the top `k` per
    question, ranks renumbered; ties keep shard order, i.e. fall to the lower global row."""
    questions = len(per_shard[0]) if per_shard else 0
    return [rerank([h for shard in per_shard for h in shard[q]])[:k] for q in range(questions)]


class ShardedRetriever:
    """A `Retriever` over one retriever per shard (e.g. BM25 indexes)."""

    def __init__(self, shards: Sequence[Retriever]):
        self.shards = list(shards)

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        if not questions:
            return []
        return merge([shard.search(questions, k) for shard in self.shards], k)


class ShardedDenseRetriever:
    """Dense search over `DenseIndex` shards: questions are encoded once, each shard searched."""

    def __init__(
        self, shards: Sequence[index.DenseIndex], encode: Callable[[list[str]], np.ndarray]
    ):
        self.shards = list(shards)
        self.encode = encode

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        if not questions:
            return []
        vectors = self.encode(list(questions))
        return merge([shard.hits(*shard.search(vectors, k)) for shard in self.shards], k)
