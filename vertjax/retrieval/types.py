"""The two shapes every retriever shares: a `Hit` (one ranked passage) and the `Retriever` protocol.

BM25, dense and hybrid retrievers all return `list[list[Hit]]` (one ranked list per question), so
fusion, knowledge selection, evaluation and the CLI work on any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class Hit:
    """One retrieved passage: 1-based `rank` within its list, passage `id`, and its `score`;
    `doc_id`, `source` (the file, relative to the pack's source folder) and `url` say where it
    comes from, when the index records it (None for older indexes)."""

    rank: int
    id: str
    title: str
    score: float
    text: str
    doc_id: str | None = None
    source: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, passage: Mapping[str, Any], *, rank: int, score: float) -> Hit:
        """The hit for a stored passage record (`store.passage_record`)."""
        return cls(
            rank=rank,
            id=passage["id"],
            title=passage["title"],
            score=score,
            text=passage["text"],
            doc_id=passage.get("doc_id"),
            source=passage.get("source"),
            url=passage.get("url"),
        )

    def to_json(self) -> dict[str, Any]:
        """The `{rank, id, title, score, text, doc_id, source, url}` object that
        `vertjax retrieve --json` prints."""
        return dataclasses.asdict(self)


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks passages for a batch of questions."""

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        """Returns, for each question, up to `k` hits ranked by decreasing score."""
        ...


def rerank(hits: list[Hit]) -> list[Hit]:
    """Sorts hits by decreasing score (stable) and renumbers their ranks from 1."""
    ordered = sorted(hits, key=lambda h: -h.score)
    return [dataclasses.replace(h, rank=i) for i, h in enumerate(ordered, start=1)]
