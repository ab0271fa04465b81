"""Context rewriting: a dialogue turn -> a standalone question before retrieval.

"What sights are there?" after a turn about Beijing must be searched as "What sights are there in
Beijing?". Two rewriters share the shape `rewriter(histories, questions) -> rewrites`:
- `T5Rewriter`: a T5 fine-tuned on the seq2seq task `register_rewrite_task` registers from JSONL
  `{history: [turns...], question, rewrite}` (Restoration-200K style), decoded greedily;
- `RuleRewriter`: offline fallback. If the question has a pronoun (it, its, they, them, their)
  it is replaced by the salient entity of the last turn; if the question names no
  entity of its own (elliptical), the entity is appended ("... in <entity>?"). The salient entity
  is the last code name (`json.dumps`, `Path.open()`) of the last turn, else its last capitalised
  name, else the noun phrase after its last "of/about/for/in", else its last content word.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from vertjax import errors, io_utils
from vertjax.retrieval.keywords import STOPWORDS

PathLike = str | os.PathLike
TURN_SEPARATOR = " | "
_CODE = re.compile(r"`([^`]+)`|\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?)")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z0-9]+(?:\s+[A-Z][A-Za-z0-9]+)*")
_AFTER_PREPOSITION = re.compile(r"\b(?:of|about|for|in|on|with)\s+((?:the\s+|a\s+|an\s+)?[\w.]+)")
_PRONOUNS = {"it": "{}", "its": "{}'s", "they": "{}", "them": "{}", "their": "{}'s"}
_PRONOUN = re.compile(r"\b(it|its|they|them|their)\b", re.IGNORECASE)


class Rewriter(Protocol):
    def __call__(
        self, histories: Sequence[Sequence[str]], questions: Sequence[str]
    ) -> list[str]: ...


def format_inputs(history: Sequence[str], question: str) -> str:
    """The seq2seq input: `history: t1 | t2 question: q`."""
    return f"history: {TURN_SEPARATOR.join(history)} question: {question}"


def salient_entity(turn: str) -> str | None:
    """The entity a follow-up most likely refers to (see the module docstring's order)."""
    code = [a or b for a, b in _CODE.findall(turn)]
    if code:
        return code[-1]
    proper = _proper_names(turn)
    if proper:
        return proper[-1]
    phrases = _AFTER_PREPOSITION.findall(turn)
    if phrases:
        return phrases[-1].strip(" .?!")
    content = [w for w in re.findall(r"[\w.]+", turn) if w.lower() not in STOPWORDS and len(w) > 2]
    return content[-1].strip(".") if content else None


def _proper_names(text: str) -> list[str]:
    """Capitalised names that do not start a sentence (those may be ordinary words)."""
    names = []
    for m in _CAPITALISED.finditer(text):
        before = text[: m.start()].rstrip()
        if before and before[-1] not in ".?!:" and m.group().lower() not in STOPWORDS:
            names.append(m.group())
    return names


def _names_entity(question: str) -> bool:
    """True when the question carries its own entity (a code name or a capitalised name)."""
    return bool(_CODE.search(question) or _proper_names(question))


class RuleRewriter:
    """Resolves pronouns / ellipsis with the salient entity of the last turn (offline fallback)."""

    def __init__(self, *, preposition: str = "in"):
        self.preposition = preposition

    def rewrite(self, history: Sequence[str], question: str) -> str:
        if not history:
            return question
        entity = next((e for e in map(salient_entity, reversed(history)) if e), None)
        if entity is None:
            return question
        match = _PRONOUN.search(question)
        if match:
            form = _PRONOUNS[match.group(1).lower()].format(entity)
            return question[: match.start()] + form + question[match.end() :]
        if _names_entity(question) or entity.lower() in question.lower():
            return question
        stem = question.rstrip(" ?.!")
        end = question[len(stem) :].strip() or "?"
        return f"{stem} {self.preposition} {entity}{end}"

    def __call__(self, histories: Sequence[Sequence[str]], questions: Sequence[str]) -> list[str]:
        return [self.rewrite(h, q) for h, q in zip(histories, questions, strict=True)]


class T5Rewriter:
    """A T5 fine-tuned on `format_inputs(history, question)` -> standalone question (greedy)."""

    def __init__(self, checkpoint: PathLike, vocab: PathLike, *, max_tokens: int = 64):
        from vertjax.generators import t5  # jax and the model: only when a T5 is asked for

        self.generator = t5.T5Generator.from_run_dir(checkpoint, vocab)
        self.max_tokens = max_tokens

    def __call__(self, histories: Sequence[Sequence[str]], questions: Sequence[str]) -> list[str]:
        prompts = [format_inputs(h, q) for h, q in zip(histories, questions, strict=True)]
        texts = self.generator.generate(
            prompts, max_tokens=self.max_tokens, temperature=0.0, seed=0
        )
        return [t.strip() or q for t, q in zip(texts, questions, strict=True)]


def parse_history(value: Any, *, path: PathLike, line: int) -> list[str]:
    """A record's `history`: a list of turn strings (a single string is one turn)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise errors.DataError("'history' must be a list of strings", path=path, line=line)
    return list(value)


def rewrite_records(path: PathLike) -> list[dict[str, str]]:
    """`{inputs, targets}` seq2seq records from a `{history, question, rewrite}` JSONL."""
    rows = []
    keys = ("history", "question", "rewrite")
    for line, record in enumerate(io_utils.read_jsonl(path, required_keys=keys), start=1):
        history = parse_history(record["history"], path=path, line=line)
        if not isinstance(record["rewrite"], str) or not record["rewrite"].strip():
            raise errors.DataError("'rewrite' must be a non-empty string", path=path, line=line)
        rows.append(
            {
                "inputs": format_inputs(history, str(record["question"])),
                "targets": record["rewrite"],
            }
        )
    if not rows:
        raise errors.DataError("no rewrite records (empty file)", path=path)
    return rows


def register_rewrite_task(
    name: str, *, split_files: Mapping[str, PathLike], vocab_path: PathLike, work_dir: PathLike
) -> Any:
    """Registers the seq2seq rewrite task from `{history, question, rewrite}` JSONL split files
    (converted to `{inputs, targets}` under `work_dir`)."""
    from vertjax.data import tasks

    work = pathlib.Path(work_dir)
    converted = {}
    for split, path in split_files.items():
        target = work / f"{name}.{split}.jsonl"
        io_utils.write_jsonl(target, rewrite_records(path))
        converted[split] = target
    return tasks.register_jsonl_task(
        name, split_files=converted, vocab_path=vocab_path, kind="seq2seq"
    )
