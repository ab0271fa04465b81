"""Knowledge selection: which retrieved passages go into the prompt, and in what order.

More passages raise answer recall but lower precision; the seed (Mozi) finds 3-4 the best trade-off,
so k defaults to 4. Passages may be rescored by a `Reranker` (a cross-encoder T5, or an LLM filter
through a generator backend), filtered by a score threshold, cut to k, and ordered so that the most
relevant passage sits closest to the question: last when the question follows the passages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from vertjax import errors
from vertjax.retrieval.types import Hit, rerank

DEFAULT_K = 4
PLACEMENTS = ("last", "first")


@runtime_checkable
class Reranker(Protocol):
    """Scores how well each passage answers the question (higher is better)."""

    def scores(self, question: str, passages: Sequence[Hit]) -> list[float]:
        """One score per passage, in the order given."""
        ...


def check_settings(*, k: int, most_relevant: str, owner: str) -> None:
    """`ConfigError` naming `owner.k` / `owner.most_relevant` (gin bindings) when either is invalid."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise errors.ConfigError(f"{owner}.k = {k!r}: k must be an integer >= 1")
    if most_relevant not in PLACEMENTS:
        raise errors.ConfigError(
            f"{owner}.most_relevant = {most_relevant!r}: choose one of {', '.join(PLACEMENTS)}"
        )


def select(
    question: str,
    hits: Sequence[Hit],
    *,
    k: int = DEFAULT_K,
    min_score: float | None = None,
    reranker: Reranker | None = None,
    most_relevant: str = "last",
) -> list[Hit]:
    """Selects up to `k` passages for the prompt, in prompt order.

    Args:
      hits: retrieved passages (any order).
      min_score: drop passages scoring below this (the reranker's score when one is given).
      reranker: rescores the passages; its scores replace the retriever's.
      most_relevant: "last" (default: the question comes after the passages, so the best one is
        nearest to it) or "first" (for prompts that put the question before the passages).

    Returns:
      The selected hits in prompt order; `Hit.rank` is each one's relevance rank (1 = best) and
      `Hit.score` the score used for selection.
    """
    check_settings(k=k, most_relevant=most_relevant, owner="selection.select")
    hits = list(hits)
    if reranker is not None and hits:
        new_scores = list(reranker.scores(question, hits))
        if len(new_scores) != len(hits):
            raise ValueError(f"reranker returned {len(new_scores)} scores for {len(hits)} passages")
        hits = [
            dataclasses.replace(h, score=float(s)) for h, s in zip(hits, new_scores, strict=True)
        ]
    if min_score is not None:
        hits = [h for h in hits if h.score >= min_score]
    chosen = rerank(hits)[:k]
    return chosen[::-1] if most_relevant == "last" else chosen


@dataclasses.dataclass(frozen=True, kw_only=True)
class KnowledgeSelector:
    """`select` with its settings bound (a gin-configurable step of the answer pipeline)."""

    k: int = DEFAULT_K
    min_score: float | None = None
    reranker: Reranker | None = None
    most_relevant: str = "last"

    def __post_init__(
        self,
    ) -> None:  # a bad binding fails when the pipeline is built, not per answer
        check_settings(
            k=self.k, most_relevant=self.most_relevant, owner="selection.KnowledgeSelector"
        )

    def __call__(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        return select(
            question,
            hits,
            k=self.k,
            min_score=self.min_score,
            reranker=self.reranker,
            most_relevant=self.most_relevant,
        )
