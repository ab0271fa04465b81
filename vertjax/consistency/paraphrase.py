"""Rewrites that make synthesised NLI pairs unsolvable by word overlap.

A judge trained on near-verbatim entailments and one-word perturbations learns to count shared
words. These rewrites break that shortcut from both sides:
- entailments that share few words with the premise: synonym substitution, conjunct dropping,
  condition reordering (`paraphrase`, `drop_conjunct`, `reorder_condition`);
- contradictions that keep every word of the premise: swapped argument roles and swapped literal
  values (`swap_roles`, `swap_literal`), beside nli_data's negation / antonym / number swaps;
- neutrals that reuse the premise's words but add an unsupported claim (`splice_unsupported`).
`substitute_synonyms` is also applied to every label's hypotheses alike, so an unseen word is no
evidence for any label.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

_WORD = re.compile(r"[A-Za-z]+")
_CONJUNCT = re.compile(r",? (?:and|but|while|whereas) (?=(?:it|this|the|they|a|an|its) )")
_CONDITION = re.compile(r"^(If|When|Unless) ([^,]{3,120}), (.+)\.$")
_LITERALS = {
    "True": "False",
    "False": "True",
    "None": "0",
    "true": "false",
    "false": "true",
    "zero": "one",
    "empty": "non-empty",
}
# Verbs after which a sentence's predicate starts: `splice_unsupported` joins a premise sentence's
# subject to another sentence's predicate there.
_PREDICATE = re.compile(
    r"\b(is|are|was|were|returns|return|raises|can|will|may|must|should|does|do|has|have|"
    r"takes|accepts|uses|contains|creates|gives)\b"
)


def _is_code(token: str) -> bool:
    """A code name whose case must not change (`os.path`, `snake_case`, `call()`, `CamelCase`)."""
    return bool(re.search(r"[._(`]|[a-z][A-Z]", token))


def _keep_case(original: str, replacement: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() else replacement


def substitute_synonyms(
    sentence: str,
    rng: random.Random,
    synonyms: Mapping[str, Sequence[str]],
    *,
    rate: float = 0.5,
    protect: str = "",
) -> tuple[str, int]:
    """Replaces about `rate` of the replaceable words with a synonym; returns (text, count).

    Words of `protect` (e.g. the token a contradiction changed) are left alone, and code-looking
    tokens (dotted, snake_case, call syntax) never match the word pattern's boundaries.
    """
    protected = {w.lower() for w in _WORD.findall(protect)}
    pieces, last, count = [], 0, 0
    for m in _WORD.finditer(sentence):
        word = m.group(0)
        before, after = sentence[m.start() - 1 : m.start()], sentence[m.end() : m.end() + 1]
        if before in "._`" and before or after in "._(`" and after:
            continue
        options = synonyms.get(word.lower())
        if not options or word.lower() in protected or rng.random() >= rate:
            continue
        pieces += [sentence[last : m.start()], _keep_case(word, rng.choice(list(options)))]
        last, count = m.end(), count + 1
    return "".join(pieces) + sentence[last:], count


def drop_conjunct(sentence: str, rng: random.Random) -> str | None:
    """`A, and it B.` → `A.` or `It B.`: each conjunct of a coordination is entailed by it."""
    parts = _CONJUNCT.split(sentence.rstrip("."))
    if len(parts) < 2 or any(len(p.split()) < 4 for p in parts):
        return None
    part = rng.choice(parts).strip()
    return _keep_case("X", part) + "."


def reorder_condition(sentence: str) -> str | None:
    """`If A, B.` → `B if A.`: the same claim with its words in another order."""
    m = _CONDITION.match(sentence)
    if not m:
        return None
    head = m.group(3)
    head = head if _is_code(head.split()[0]) else head[:1].upper() + head[1:]
    return f"{head} {m.group(1).lower()} {m.group(2)}."


def swap_roles(sentence: str, rng: random.Random) -> str | None:
    """Exchanges two different code names or numbers of the sentence (`a` before `b` → `b` ...).

    Every word stays, so word overlap cannot tell the result from the original.
    """
    candidates = [
        m
        for m in re.finditer(
            r"(?<![\w.])(?:[A-Za-z_]\w*(?:\.\w+)+|\w+_\w+|\w+\(\)|\d+)(?![\w])", sentence
        )
    ]
    distinct = {m.group(0) for m in candidates}
    if len(distinct) < 2:
        return None
    first = rng.choice(candidates)
    others = [m for m in candidates if m.group(0) != first.group(0)]
    second = rng.choice(others)
    a, b = sorted((first, second), key=lambda m: m.start())
    return (
        sentence[: a.start()]
        + b.group(0)
        + sentence[a.end() : b.start()]
        + a.group(0)
        + sentence[b.end() :]
    )


def swap_literal(sentence: str, rng: random.Random) -> str | None:
    """Changes a literal value (`True` → `False`, `None` → `0`, `empty` → `non-empty`)."""
    found = [m for m in re.finditer(r"\b[A-Za-z]+\b", sentence) if m.group(0) in _LITERALS]
    if not found:
        return None
    m = rng.choice(found)
    return sentence[: m.start()] + _LITERALS[m.group(0)] + sentence[m.end() :]


def splice_unsupported(sentence: str, other: str, rng: random.Random) -> str | None:
    """The subject of `sentence` with the predicate of `other`: on topic, worded like the premise,
    and not supported by it."""
    head = list(_PREDICATE.finditer(sentence))
    tail = list(_PREDICATE.finditer(other))
    if not head or not tail:
        return None
    h, t = head[0], rng.choice(tail)
    subject = sentence[: h.start()].strip()
    predicate = other[t.start() :].strip()
    if len(subject.split()) < 2 or len(predicate.split()) < 3:
        return None
    result = f"{subject} {predicate}"
    return None if result == sentence or predicate in sentence else result


def append_unsupported(sentence: str, other: str) -> str | None:
    """`A.` + another sentence's clause → `A, and b.`: the first half entailed, the rest not."""
    clause = other.rstrip(".")
    if len(clause.split()) < 4:
        return None
    if not _is_code(clause.split()[0]) and not clause.split()[0].isupper():
        clause = clause[:1].lower() + clause[1:]
    return f"{sentence.rstrip('.')}, and {clause}."
