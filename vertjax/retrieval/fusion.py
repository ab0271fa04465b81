"""Hybrid retrieval: fuse ranked lists from several retrievers (e.g. BM25 + dense).

- Reciprocal-rank fusion (Cormack et al., 2009): score(d) = sum_i w_i / (rrf_k + rank_i(d)); only
  ranks matter, so BM25 and cosine scores need no calibration.
- Weighted score fusion: min-max normalise each list's scores to [0, 1], then
  score(d) = sum_i w_i * norm_i(d); a passage absent from a list contributes 0 from it.

Passages are matched by `Hit.id`; ties are broken by first appearance (list order, then rank).

`sweep` and `choose` pick the dense weight of a BM25 + dense hybrid on validation questions (a
sweep that includes BM25 alone and dense alone, so the choice never loses to either on them);
`evaluate.tune_fusion` records the choice in the index dir's `fusion.json`, which
`dense.open_retriever` applies.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from vertjax import errors
from vertjax.retrieval import metrics
from vertjax.retrieval.index_dir import FUSION_FILE, IndexDir
from vertjax.retrieval.types import Hit, Retriever

PathLike = str | os.PathLike

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


# ----------------------------------------------------------------------------------------------
# Choosing the fusion weight on validation questions
# ----------------------------------------------------------------------------------------------

# Dense weights to try: fine near 0, where a weak dense list still breaks BM25's ties usefully
# (demo, 2026-12-01: RRF at 0.02 beat both components on validation; at 0.1 it lost to BM25).
DEFAULT_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def sweep(
    lexical: Sequence[Sequence[Hit]],
    dense: Sequence[Sequence[Hit]],
    questions: Sequence[Any],
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    method: str = "rrf",
    rrf_k: float = 60.0,
    metric: str = "recall@5",
) -> list[dict[str, float]]:
    """`metric` (and MRR@10) of the fusion of two ranked lists per question, for each dense weight.

    Dense weight w fuses with weights `(1 - w, w)`: w = 0 ranks exactly as the lexical list and
    w = 1 as the dense list (RRF and min-max fusion both), so the sweep always contains both
    components and its best point is never below either of them on these questions.
    """
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; use one of {FUSION_METHODS}")
    rows = []
    for w in grid:
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"dense weights must lie in [0, 1], got {w}")
        fused = []
        for lex, den in zip(lexical, dense, strict=True):
            if w == 0.0 or w == 1.0:  # exactly one component (ties would reorder the fusion)
                fused.append(list(den if w == 1.0 else lex))
            elif method == "rrf":
                fused.append(reciprocal_rank_fusion([lex, den], rrf_k=rrf_k, weights=[1 - w, w]))
            else:
                fused.append(weighted_score_fusion([lex, den], weights=[1 - w, w]))
        scores = metrics.evaluate(questions, fused)
        rows.append(
            {
                "method": method,
                "dense_weight": float(w),
                metric: scores[metric],
                "mrr@10": scores["mrr@10"],
            }
        )
    return rows


def choose(rows: Sequence[Mapping[str, float]], *, metric: str = "recall@5") -> dict[str, Any]:
    """The sweep row with the best `metric`, then MRR@10; among equals a single retriever (w = 0
    or 1: cheaper, nothing to mis-weight) wins, then the smaller dense weight. Also returns the
    retriever kind it amounts to ("bm25", "dense" or "hybrid")."""

    def key(row: Mapping[str, float]) -> tuple[float, float, bool, float]:
        w = row["dense_weight"]
        return (row[metric], row["mrr@10"], w in (0.0, 1.0), -w)

    best = max(rows, key=key)
    w = best["dense_weight"]
    kind = "bm25" if w == 0.0 else "dense" if w == 1.0 else "hybrid"
    return {
        "method": best.get("method", "rrf"),
        "dense_weight": w,
        "kind": kind,
        metric: best[metric],
        "mrr@10": best["mrr@10"],
    }


def read_choice(index_dir: PathLike) -> dict[str, Any] | None:
    """The `fusion.json` that `evaluate.tune_fusion` wrote into an index dir, or None when it was
    never tuned."""
    layout = IndexDir(index_dir)
    path = layout.root / FUSION_FILE
    record = layout.read_record(FUSION_FILE)
    if record is None:
        return None
    try:
        weights = [float(w) for w in record["weights"]]
        method, kind = record["method"], record["kind"]
    except (ValueError, KeyError, TypeError) as e:
        raise errors.RetrievalIndexError(
            f"{path}: corrupted ({e}); rerun the fusion tuning"
        ) from None
    if len(weights) != 2 or method not in FUSION_METHODS or kind not in ("bm25", "dense", "hybrid"):
        raise errors.RetrievalIndexError(f"{path}: unexpected weights/method/kind; rerun tuning")
    return {**record, "weights": weights}
