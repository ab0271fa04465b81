"""Question parsing: context rewriting, multi-question decomposition, out-of-domain gating.

- `contextualize`: the context-rewriting hook. A follow-up turn ("Is it thread-safe?") becomes a
  standalone question with any `vertjax.retrieval.rewrite.Rewriter` (`RuleRewriter` offline, a
  fine-tuned `T5Rewriter` when trained), given the earlier user turns.
- `decompose`: a rule-based splitter for questions holding several sub-questions (the seed's "What
  are the symptoms of autism? Is it hereditary? Can it be cured?"): splits on '?', ';',
  ' and also ' and numbered lists; later parts are then rewritten with the earlier ones as their
  history, so "Is it hereditary?" is retrieved as "Is autism hereditary?".
- `DomainGate`: refuses out-of-domain questions, by a classifier's P(in-domain) when one is given
  (`vertjax.system.ood`: "outside <domain>"), and questions whose top retrieval score is below a
  threshold (raw, or calibrated per retriever by `vertjax.system.calibration`: "nothing in the
  documents answers this").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from vertjax import errors
from vertjax.retrieval.rewrite import Rewriter
from vertjax.retrieval.types import Hit

_NUMBERED = re.compile(r"(?:^|\s)\(?(\d{1,2})[.)]\s+(?=\S)")
_BULLET = re.compile(r"(?m)^[ \t]*[-*\u2022][ \t]+(?=\S)")
_CLAUSE_BREAK = re.compile(r";|\s+and also\s+", re.IGNORECASE)
_QUOTED = re.compile(r"`[^`]*`|\"[^\"]*\"")
_LEADING_CONJUNCTION = re.compile(r"^(?:and|also|then|but|or)\b[\s,]*", re.IGNORECASE)
_INTERROGATIVE = re.compile(
    r"(?:what|how|why|when|where|which|who|whom|whose|is|are|was|were|can|could|does|do|did|"
    r"should|would|will|may|might|must|has|have)\b",
    re.IGNORECASE,
)
_MIN_WORDS = 2


class DomainClassifier(Protocol):
    """P(in-domain) per question (`vertjax.system.ood.HashedLogisticClassifier`)."""

    threshold: float

    def probabilities(self, questions: Sequence[str]) -> list[float]: ...


def user_turns(history: Sequence[Any]) -> list[str]:
    """The user's earlier turns: plain strings, or OpenAI-style `{role, content}` messages."""
    turns = []
    for i, turn in enumerate(history):
        if isinstance(turn, str):
            turns.append(turn)
        elif isinstance(turn, Mapping) and isinstance(turn.get("content"), str):
            if turn.get("role", "user") == "user":
                turns.append(turn["content"])
        else:
            raise errors.ConfigError(
                f"history[{i}] must be a string or a {{role, content}} message, got {turn!r}"
            )
    return [t for t in turns if t.strip()]


def contextualize(question: str, history: Sequence[str], rewriter: Rewriter | None) -> str:
    """The standalone form of `question` after the user turns `history` (unchanged if none)."""
    if rewriter is None or not history:
        return question
    [rewritten] = rewriter([list(history)], [question])
    return rewritten.strip() or question


def _protect(text: str) -> tuple[str, list[str]]:
    """Replaces quoted/backticked spans by placeholders so their '?' or ';' never split."""
    kept: list[str] = []

    def hide(m: re.Match) -> str:
        kept.append(m.group())
        return f"\x00{len(kept) - 1}\x00"

    return _QUOTED.sub(hide, text), kept


def _restore(text: str, kept: Sequence[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)


def _list_items(text: str) -> list[str] | None:
    """The items of a numbered ("1. A 2. B", inline or one per line, numbered 1, 2, ...) or
    bulleted (one per line) list, else None; a leading statement that is not an
    introduction ("...:") counts as an item too."""
    marks = list(_NUMBERED.finditer(text))
    if [int(m.group(1)) for m in marks] != list(range(1, len(marks) + 1)):
        marks = []
    if len(marks) < 2:
        marks = list(_BULLET.finditer(text))
    if len(marks) < 2:
        return None
    head = text[: marks[0].start()].strip()
    items = [
        text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip()
        for i, m in enumerate(marks)
    ]
    if head and not head.endswith(":"):
        items.insert(0, head)
    return [i for i in items if i] or None


def decompose(question: str) -> list[str]:
    """Sub-questions of a question, in order; a single question comes back as `[question]`.

    Splits after every '?', at ';' and ' and also ', and into the items of a numbered list. Pieces
    of fewer than two words (e.g. "Why?") stay attached to the previous piece.
    """
    text, kept = _protect(question.strip())
    items = [" ".join(i.split()) for i in _list_items(text) or [text]]
    pieces: list[str] = []
    for item in items:
        for sentence in re.split(r"(?<=\?)\s*", item):
            pieces.extend(p.strip(" ,") for p in _CLAUSE_BREAK.split(sentence))
    merged: list[str] = []
    for piece in filter(None, pieces):
        if merged and len(piece.split()) < _MIN_WORDS:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    subs = [_finish(_restore(p, kept)) for p in merged]
    return subs or [question.strip()]


def _finish(piece: str) -> str:
    """Drops a leading conjunction and ends an interrogative piece with '?'."""
    piece = _LEADING_CONJUNCTION.sub("", piece).strip()
    piece = piece[:1].upper() + piece[1:]
    if piece and piece[-1] not in ".?!:" and _INTERROGATIVE.match(piece):
        piece += "?"
    return piece


def resolve_sub_questions(sub_questions: Sequence[str], rewriter: Rewriter | None) -> list[str]:
    """Rewrites each sub-question after the first with the first one as its history.

    The first sub-question sets the topic ("... symptoms of autism?"); the later ones refer back
    to it ("Is it hereditary?"), rarely to each other.
    """
    if rewriter is None or len(sub_questions) < 2:
        return list(sub_questions)
    first = sub_questions[0]
    return [first] + [contextualize(q, [first], rewriter) for q in sub_questions[1:]]


# `DomainVerdict.kind` of a refusal: the classifier says the question is not about the domain, or
# retrieval found no passage that matches it well enough to answer from.
OUTSIDE_DOMAIN = "outside_domain"
NO_MATCH = "no_match"


@dataclasses.dataclass(frozen=True)
class ScoreThreshold:
    """A top-retrieval-score threshold and, for refusal reasons, the scale it is stated on
    ("a raw bm25 score", "percentile 5 of in-domain questions' top bm25 scores")."""

    value: float
    scale: str


@dataclasses.dataclass(frozen=True)
class DomainVerdict:
    """Whether a (sub-)question is refused, why (`kind`: OUTSIDE_DOMAIN or NO_MATCH, and the
    `reason` in words), and the evidence used."""

    refused: bool
    reason: str | None
    p_in_domain: float | None
    top_score: float | None
    kind: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DomainGate:
    """Out-of-domain detection: the classifier decides when given; the retrieval score otherwise.

    Args:
      classifier: P(in-domain) model with its `threshold`; None to rely on retrieval scores.
      min_top_score: refuse when the best retrieved passage scores below this (None: never); a
        plain number is a raw score of the retriever in use, a `ScoreThreshold` also says its
        scale (`calibration.gate_threshold`). It is a fallback for systems without a classifier
        and a last check with one: a question the classifier accepts but for which retrieval
        finds nothing close is still refused, as "nothing in the documents answers this".
      domain: what the documents are about, named in the classifier's refusal reason.
    """

    classifier: DomainClassifier | None = None
    min_top_score: float | ScoreThreshold | None = None
    domain: str = "the domain"

    def __post_init__(self) -> None:
        if self.min_top_score is not None and not isinstance(self.min_top_score, ScoreThreshold):
            threshold = ScoreThreshold(float(self.min_top_score), "a raw retrieval score")
            object.__setattr__(self, "min_top_score", threshold)

    def classify(self, questions: Sequence[str]) -> list[float | None]:
        """P(in-domain) per question (None without a classifier); one batched call."""
        if self.classifier is None or not questions:
            return [None] * len(questions)
        return [float(p) for p in self.classifier.probabilities(list(questions))]

    def verdict(self, p_in_domain: float | None, hits: Sequence[Hit]) -> DomainVerdict:
        top = max((h.score for h in hits), default=None)
        if p_in_domain is not None and p_in_domain < self.classifier.threshold:
            reason = (
                f"outside {self.domain}: the domain classifier gives P(in-domain) ="
                f" {p_in_domain:.2f} < {self.classifier.threshold:.2f}"
            )
            return DomainVerdict(True, reason, p_in_domain, top, OUTSIDE_DOMAIN)
        threshold = self.min_top_score
        if threshold is not None and (top is None or top < threshold.value):
            shown = "no passage" if top is None else f"a top score of {top:.3g}"
            reason = (
                f"nothing in the documents answers this: retrieval found {shown}, below"
                f" {threshold.value:.3g} ({threshold.scale})"
            )
            return DomainVerdict(True, reason, p_in_domain, top, NO_MATCH)
        return DomainVerdict(False, None, p_in_domain, top)
