"""Hybrid retrieval: fuse ranked lists from several retrievers (e.g. BM25 + dense).

- Reciprocal-rank fusion (Cormack et al., 2009): score(d) = sum_i w_i / (rrf_k + rank_i(d)); only
  ranks matter, so BM25 and cosine scores need no calibration.
- Weighted score fusion: min-max normalise each list's scores to [0, 1], then
  score(d) = sum_i w_i * norm_i(d); a passage absent from a list contributes 0 from it.

Passages are matched by `Hit.id`; ties are broken by first appearance (list order, then rank).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vertjax.retrieval.types import Hit, Retriever

FUSION_METHODS = ("rrf", "weighted")


def _weights(n: int, weights: Sequence[float] | None) -> list[float]:
    if weights is None:
        return [1.0] * n
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} ranked lists")
    return [float(w) for w in weights]


def _fused(scores: dict[str, float], first: dict[str, Hit], k: int | None) -> list[Hit]:
    order = sorted(scores, key=lambda pid: -scores[pid])  # stable: first appearance wins ties
    return [
        dataclasses.replace(first[pid], rank=rank, score=scores[pid])
        for rank, pid in enumerate(order[:k], start=1)
    ]


def _first_seen(ranked_lists: Sequence[Sequence[Hit]]) -> dict[str, Hit]:
    first: dict[str, Hit] = {}
    for hits in ranked_lists:
        for hit in hits:
            first.setdefault(hit.id, hit)
    return first


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[Hit]],
    *,
    k: int | None = None,
    rrf_k: float = 60.0,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuses ranked lists by reciprocal rank; returns the top `k` (all if None), re-ranked.

    Ranks are positions in each list (1-based), so lists need not be sorted by score already.
    """
    w = _weights(len(ranked_lists), weights)
    scores: dict[str, float] = {}
    for weight, hits in zip(w, ranked_lists, strict=True):
        for position, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight / (rrf_k + position)
    return _fused(scores, _first_seen(ranked_lists), k)


def min_max(values: Sequence[float]) -> list[float]:
    """Scales to [0, 1]; a list whose scores are all equal maps to all 1.0 (each is its best)."""
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi == lo:
        return [1.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def weighted_score_fusion(
    ranked_lists: Sequence[Sequence[Hit]],
    *,
    k: int | None = None,
    weights: Sequence[float] | None = None,
) -> list[Hit]:
    """Fuses lists by the weighted sum of min-max normalised scores; returns the top `k`."""
    w = _weights(len(ranked_lists), weights)
    scores: dict[str, float] = {}
    for weight, hits in zip(w, ranked_lists, strict=True):
        for hit, norm in zip(hits, min_max([h.score for h in hits]), strict=True):
            scores[hit.id] = scores.get(hit.id, 0.0) + weight * norm
    return _fused(scores, _first_seen(ranked_lists), k)


class HybridRetriever:
    """A `Retriever` that asks each retriever for `depth` hits and fuses them (RRF by default)."""

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        *,
        method: str = "rrf",
        weights: Sequence[float] | None = None,
        depth: int = 100,
        rrf_k: float = 60.0,
    ):
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {method!r}; use one of {FUSION_METHODS}")
        if not retrievers:
            raise ValueError("a hybrid retriever needs at least one retriever")
        _weights(len(retrievers), weights)
        self.retrievers = list(retrievers)
        self.method, self.weights, self.depth, self.rrf_k = method, weights, depth, rrf_k

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        per_retriever = [r.search(questions, max(k, self.depth)) for r in self.retrievers]
        fused = []
        for lists in zip(*per_retriever, strict=True):
            if self.method == "rrf":
                fused.append(
                    reciprocal_rank_fusion(lists, k=k, rrf_k=self.rrf_k, weights=self.weights)
                )
            else:
                fused.append(weighted_score_fusion(lists, k=k, weights=self.weights))
        return fused
