"""Heuristic filters for synthesized instruction data (Self-Instruct §2.3, Self-QA, Self-KG).

Every filter returns the name of the rule a candidate breaks (a `reason`, counted in the job's
report) or None. Similarity uses ROUGE-L F1 from the `rouge-score` package, as the Self-Instruct
paper does (its default tokenizer lowercases and keeps ASCII letters and digits only).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

# The Self-Instruct paper's keywords for tasks a text-only model cannot do.
DEFAULT_BANNED_KEYWORDS = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)
# Phrases that make a question or answer depend on a context the reader will not see.
CONTEXT_REFERENCES = (
    "the passage",
    "the document",
    "the text above",
    "the given text",
    "the above text",
    "the article",
    "the excerpt",
    "according to the text",
    "this passage",
    "this document",
    "the provided text",
)
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by does do for from how in is it its of on or that the this to what "
    "when where which who why with can you your yes no true false def".split()
)


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the instruction and instance filters (the paper's values by default)."""

    rouge_threshold: float = 0.7
    min_words: int = 3
    max_words: int = 150
    max_output_words: int = 400
    banned_keywords: tuple[str, ...] = DEFAULT_BANNED_KEYWORDS


def normalize(text: str) -> str:
    """Lowercase, whitespace-collapsed text: the key of exact-duplicate checks."""
    return " ".join(text.lower().split())


def content_words(text: str) -> list[str]:
    """Lowercase ASCII words that are not stopwords (for overlap checks)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def overlap(text: str, reference: str) -> float:
    """The fraction of `text`'s content words that occur in `reference` (1.0 if it has none)."""
    words = content_words(text)
    if not words:
        return 1.0
    vocabulary = set(_WORD.findall(reference.lower()))
    return sum(w in vocabulary for w in words) / len(words)


class _CachedTokenizer:
    """rouge-score's default tokenizer, memoized: the pool is tokenized once, not per pair."""

    def __init__(self) -> None:
        from rouge_score import tokenizers

        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self._cache: dict[str, list[str]] = {}

    def tokenize(self, text: str) -> list[str]:
        tokens = self._cache.get(text)
        if tokens is None:
            tokens = self._cache[text] = self._tokenizer.tokenize(text)
        return tokens


class RougePool:
    """A growing set of texts with the max ROUGE-L F1 of a new text against all of them."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CachedTokenizer())
        self.texts: list[str] = []
        for text in texts:
            self.add(text)

    def add(self, text: str) -> None:
        self.texts.append(text)

    def score(self, a: str, b: str) -> float:
        return self._scorer.score(a, b)["rougeL"].fmeasure

    def nearest(self, text: str, *, stop_at: float = 1.1) -> tuple[float, str | None]:
        """(best ROUGE-L F1, that text) over the pool; stops early once `stop_at` is reached."""
        best, best_text = 0.0, None
        for other in self.texts:
            score = self.score(other, text)
            if score > best:
                best, best_text = score, other
                if best >= stop_at:
                    break
        return best, best_text


def _has_keyword(text: str, keywords: Sequence[str]) -> str | None:
    lowered = text.lower()
    for keyword in keywords:
        if re.search(rf"\b{re.escape(keyword)}\b", lowered):
            return keyword
    return None


def text_reason(
    text: str,
    *,
    min_words: int,
    max_words: int,
    seen: set[str],
    prefix: str = "",
    key: str | None = None,
) -> str | None:
    """Empty / length / punctuation / non-English / duplicate checks shared by every job; the
    duplicate check looks up `normalize(key or text)` in `seen`."""
    stripped = text.strip()
    if not stripped:
        return f"{prefix}empty"
    words = len(stripped.split())
    if words < min_words:
        return f"{prefix}too_short"
    if words > max_words:
        return f"{prefix}too_long"
    first = stripped[0]
    if not first.isascii():
        return f"{prefix}not_english"
    if not first.isalnum():
        return f"{prefix}starts_with_punctuation"
    if normalize(key or stripped) in seen:
        return f"{prefix}duplicate"
    return None


def instruction_reason(
    instruction: str, *, config: FilterConfig, pool: RougePool, seen: set[str]
) -> tuple[str | None, float]:
    """Self-Instruct's instruction filters; returns (reason or None, max ROUGE-L vs the pool)."""
    reason = text_reason(
        instruction, min_words=config.min_words, max_words=config.max_words, seen=seen
    )
    if reason:
        return reason, 0.0
    if _has_keyword(instruction, config.banned_keywords):
        return "banned_keyword", 0.0
    score, _ = pool.nearest(instruction, stop_at=config.rouge_threshold)
    if score >= config.rouge_threshold:
        return "rouge_similar", score
    return None, score


def instance_reason(input_: str, output: str, *, config: FilterConfig) -> str | None:
    """Instance filters: an output must exist, differ from the input and not be too long."""
    if not output.strip():
        return "empty_output"
    if normalize(output) == normalize(input_):
        return "output_equals_input"
    if len(output.split()) > config.max_output_words:
        return "output_too_long"
    return None


def context_reference(text: str) -> str | None:
    """The first "the passage says"-style phrase in `text`, if any."""
    return _has_keyword(text, CONTEXT_REFERENCES)


def grounding_reason(output: str, *, reference: str, min_overlap: float, reason: str) -> str | None:
    """`reason` if fewer than `min_overlap` of the output's content words occur in `reference`."""
    return reason if overlap(output, reference) < min_overlap else None


def rouge_nearest_neighbours(texts: Sequence[str], *, sample: int, seed: int) -> list[float]:
    """ROUGE-L F1 of (up to `sample`, seeded) texts to their nearest other text (paper Fig. 3)."""
    import random

    if len(texts) < 2:
        return []
    indices = list(range(len(texts)))
    if len(indices) > sample:
        indices = sorted(random.Random(seed).sample(indices, sample))
    pool = RougePool()
    scores = []
    for i in indices:
        pool.texts = [t for j, t in enumerate(texts) if j != i]
        scores.append(pool.nearest(texts[i])[0])
    return scores


def count_reasons(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """reason -> how many rejected records name it, most frequent first."""
    counts: dict[str, int] = {}
    for record in records:
        reason = record.get("meta", {}).get("reason", "unknown")
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
