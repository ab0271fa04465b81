"""Retrieval metrics: recall@k, precision@k, MRR@10 and nDCG@10 over labelled questions.

Questions JSONL, one of two labellings per record:
- `{id, question, positive_ids}`: a hit is relevant when its passage id is listed;
  recall@k = |relevant ids in the top k| / |positive_ids|.
- `{id, question, answers}`: a hit is relevant when its passage text contains an answer string
  after DPR/SQuAD normalisation (Unicode NFD, lowercase, punctuation and articles removed,
  whitespace collapsed; matched on word boundaries), so labels survive re-chunking. The set of
  relevant passages is unknown, so recall@k is DPR's top-k accuracy (1 if any of the top k
  holds an answer), and nDCG's ideal ranking is built from the relevant passages retrieved.

precision@k = relevant in the top k / k; MRR@10 = 1 / rank of the first relevant hit in the top
10 (0 if none); nDCG@10 uses binary gains, DCG = sum rel_i / log2(i + 1). A passage id repeated
in one ranked list counts once (its first position). Scores are means over questions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from vertjax import errors
from vertjax.retrieval.types import Hit, Retriever

RECALL_KS = (1, 3, 5, 10, 20, 100)
CUTOFF = 10
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclasses.dataclass(frozen=True)
class Question:
    """A labelled question: `positive_ids` or `answers` (one of them is set)."""

    id: str
    question: str
    positive_ids: frozenset[str] | None = None
    answers: tuple[str, ...] | None = None


def normalize_answer(text: str) -> str:
    """DPR/SQuAD normalisation: NFD, lowercase, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", text).split())


def has_answer(text: str, answers: Iterable[str]) -> bool:
    """True if a normalised answer occurs in the normalised text as whole words."""
    padded = f" {normalize_answer(text)} "
    return any(f" {a} " in padded for a in map(normalize_answer, answers) if a)


def _string_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
        return None
    return [str(v) for v in value]


def parse_question(record: dict[str, Any], *, path: str | os.PathLike, line: int) -> Question:
    """Validates one questions-JSONL record; `DataError` names the file and line."""
    qid, text = record.get("id"), record.get("question")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid) == "":
        raise errors.DataError("'id' must be a non-empty string or integer", path=path, line=line)
    if not isinstance(text, str) or not text.strip():
        raise errors.DataError("'question' must be a non-empty string", path=path, line=line)
    if "positive_ids" in record:
        positives = _string_list(record["positive_ids"])
        if positives is None:
            raise errors.DataError(
                "'positive_ids' must be a non-empty list of ids", path=path, line=line
            )
        return Question(id=str(qid), question=text, positive_ids=frozenset(positives))
    if "answers" in record:
        answers = record["answers"]
        if (
            _string_list(answers) is None
            or not all(isinstance(a, str) for a in answers)
            or not any(normalize_answer(a) for a in answers)
        ):
            raise errors.DataError(
                "'answers' must be a non-empty list of non-empty strings", path=path, line=line
            )
        return Question(id=str(qid), question=text, answers=tuple(answers))
    raise errors.DataError("a question needs 'positive_ids' or 'answers'", path=path, line=line)


def load_questions(path: str | os.PathLike) -> list[Question]:
    """Reads a questions JSONL (`{id, question, positive_ids}` or `{id, question, answers}`)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.DataError("questions file not found", path=path)
    questions, seen = [], set()
    with path.open("rb") as f:
        lines = [(n, raw) for n, raw in enumerate(f, start=1) if raw.strip()]
    for line, raw in lines:
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise errors.DataError(f"invalid JSON ({e})", path=path, line=line) from None
        if not isinstance(record, dict):
            raise errors.DataError("expected a JSON object", path=path, line=line)
        question = parse_question(record, path=path, line=line)
        if question.id in seen:
            raise errors.DataError(f"duplicate question id {question.id!r}", path=path, line=line)
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise errors.DataError("no questions (empty file)", path=path)
    return questions


def relevance(question: Question, hits: Sequence[Hit]) -> list[bool]:
    """Relevance of each distinct hit, in rank order (repeated ids are dropped)."""
    seen: set[str] = set()
    flags = []
    for hit in hits:
        if hit.id in seen:
            continue
        seen.add(hit.id)
        if question.positive_ids is not None:
            flags.append(hit.id in question.positive_ids)
        else:
            flags.append(has_answer(hit.text, question.answers or ()))
    return flags


def question_metrics(
    question: Question, hits: Sequence[Hit], *, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """recall@k and precision@k for each k, MRR@10 and nDCG@10 of one ranked list."""
    rel = relevance(question, hits)
    by_answers = question.positive_ids is None
    n_relevant = sum(rel) if by_answers else len(question.positive_ids)
    metrics = {}
    for k in ks:
        found = sum(rel[:k])
        if by_answers:
            metrics[f"recall@{k}"] = float(found > 0)
        else:
            metrics[f"recall@{k}"] = found / n_relevant
        metrics[f"precision@{k}"] = found / k
    first = next((i for i, r in enumerate(rel[:CUTOFF], start=1) if r), None)
    metrics[f"mrr@{CUTOFF}"] = 1.0 / first if first else 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(rel[:CUTOFF], start=1) if r)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(n_relevant, CUTOFF) + 1))
    metrics[f"ndcg@{CUTOFF}"] = dcg / ideal if ideal else 0.0
    return metrics


def evaluate(
    questions: Sequence[Question],
    results: Sequence[Sequence[Hit]],
    *,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Mean metrics over questions; `results[i]` is the ranked list for `questions[i]`."""
    if len(questions) != len(results):
        raise ValueError(f"{len(results)} result lists for {len(questions)} questions")
    if not questions:
        raise ValueError("no questions to evaluate")
    per_question = [question_metrics(q, r, ks=ks) for q, r in zip(questions, results, strict=True)]
    return {
        name: sum(m[name] for m in per_question) / len(per_question) for name in per_question[0]
    }


def curves(
    questions: Sequence[Question], results: Sequence[Sequence[Hit]], *, max_k: int
) -> dict[str, list[float]]:
    """Mean precision@k and recall@k for k = 1..max_k (for precision/recall-vs-k plots)."""
    metrics = evaluate(questions, results, ks=range(1, max_k + 1))
    return {
        name: [metrics[f"{name}@{k}"] for k in range(1, max_k + 1)]
        for name in ("precision", "recall")
    }


def run_retriever(
    retriever: Retriever, questions: Sequence[Question], *, depth: int = 100, batch_size: int = 64
) -> list[list[Hit]]:
    """Ranked lists of `depth` hits for every question, searched in batches."""
    results: list[list[Hit]] = []
    for start in range(0, len(questions), batch_size):
        batch = [q.question for q in questions[start : start + batch_size]]
        results.extend(retriever.search(batch, depth))
    if len(results) != len(questions):
        raise ValueError(f"retriever returned {len(results)} lists for {len(questions)} questions")
    return results
