"""Answers with citations (ALCE): the instruction format, parsing, and citation recall/precision.

Format. A training record holds a question, its retrieved passages and the answer sentences with
the ids of the passages each one relies on. The model input numbers the passages,
`answer with citations: question: Q passages: [1] Title | text [2] Title | text`, and the target
writes every sentence with its citations before the final punctuation, as ALCE does:
`Lists are mutable [1]. Tuples are not [2][3].`

Parsing turns generated text back into `{sentences: [{text, citations}]}` (1-based passage numbers,
markers removed from the text; markers after the full stop count for that sentence).

Metrics (Gao et al. 2023, "Enabling Large Language Models to Generate Text with Citations", §2.3;
matching their `compute_autoais`), with a pluggable NLI `judge(premise, hypothesis) -> bool`:
- citation recall of an answer: the share of its sentences that are supported, i.e. that have at
  least one citation and whose cited passages, concatenated, entail them;
- citation precision: the share of its citations that are relevant. A citation of a supported
  sentence with several citations is irrelevant iff (a) alone it does not entail the sentence and
  (b) the remaining cited passages still entail it. The single citation of a supported sentence is
  relevant; every citation of an unsupported sentence counts as not precise.
Only the first `max_citations` distinct citations of a sentence are used (ALCE's default: 3); a
sentence citing a passage number that does not exist is unsupported and its citations are not
counted, as in ALCE's code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from vertjax import errors

Judge = Callable[[str, str], bool]
INSTRUCTION = "answer with citations:"
# A citation marker: `[2]`, and the forms LLMs also write, `[1, 3]` and `[Passage 2]`.
_MARKER = r"\[(?:(?:passage|document|source)\s*)?\d+(?:\s*,\s*\d+)*\]"
_CITATION = re.compile(r"\s*" + _MARKER, re.I)
_NUMBER = re.compile(r"\d+")
_BOUNDARY = re.compile(r"(?<=[.!?])((?:\s*" + _MARKER + r")*)\s+(?=[A-Z\"'(`])", re.I)
_TRAILING_PUNCT = re.compile(r"([.!?]+)$")


def format_passage(index: int, passage: Mapping[str, str]) -> str:
    title = passage.get("title", "").strip()
    return (
        f"[{index}] {title} | {passage['text'].strip()}"
        if title
        else f"[{index}] {passage['text'].strip()}"
    )


def format_inputs(question: str, passages: Sequence[Mapping[str, str]]) -> str:
    """The model input: instruction, question and the numbered passages."""
    numbered = " ".join(format_passage(i, p) for i, p in enumerate(passages, start=1))
    return f"{INSTRUCTION} question: {question.strip()} passages: {numbered}"


def format_sentence(text: str, citations: Sequence[int]) -> str:
    """`text [1][2].`: the markers go before the sentence's final punctuation."""
    text = text.strip()
    marks = "".join(f"[{c}]" for c in citations)
    if not marks:
        return text
    m = _TRAILING_PUNCT.search(text)
    if m is None:
        return f"{text} {marks}"
    return f"{text[: m.start()].rstrip()} {marks}{m.group(1)}"


def format_answer(sentences: Iterable[Mapping[str, Any]]) -> str:
    return " ".join(format_sentence(s["text"], s.get("citations", ())) for s in sentences)


def build_record(example: Mapping[str, Any], *, where: str = "") -> dict[str, Any]:
    """A seq2seq record `{id, inputs, targets, passage_ids}` from a QA example.

    `example`: `{id?, question, passages: [{id, title, text}], answer_sentences: [{text,
    citations: [passage id, ...]}]}`; citations name passage ids and become 1-based numbers.
    """
    prefix = f"{where}: " if where else ""
    for key in ("question", "passages", "answer_sentences"):
        if key not in example:
            raise errors.DataError(f"{prefix}missing key {key!r}")
    passages = example["passages"]
    number = {}
    for i, passage in enumerate(passages, start=1):
        if not isinstance(passage, Mapping) or "id" not in passage or "text" not in passage:
            raise errors.DataError(f"{prefix}passage {i} needs 'id' and 'text'")
        number[passage["id"]] = i
    sentences = []
    for sentence in example["answer_sentences"]:
        unknown = [c for c in sentence.get("citations", ()) if c not in number]
        if unknown:
            raise errors.DataError(f"{prefix}citations {unknown} name no passage of this example")
        sentences.append(
            {
                "text": sentence["text"],
                "citations": [number[c] for c in sentence.get("citations", ())],
            }
        )
    return {
        "id": example.get("id", where),
        "inputs": format_inputs(example["question"], passages),
        "targets": format_answer(sentences),
        "passage_ids": [p["id"] for p in passages],
    }


def build_records(examples: Iterable[Mapping[str, Any]], *, source: str = "") -> Iterator[dict]:
    """`build_record` over a stream; errors name `source` and the example's position."""
    for line, example in enumerate(examples, start=1):
        yield build_record(example, where=f"{source}:{line}" if source else f"example {line}")


def parse_answer(text: str, *, num_passages: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """Generated text → `{sentences: [{text, citations}]}`.

    Citations are 1-based passage numbers in order of first mention (`[1][2]`, `[1, 2]` and
    `[Passage 1]` all count); with `num_passages` numbers outside 1..num_passages are dropped
    (ALCE ignores citations of missing documents).
    """
    pieces, start = [], 0
    for m in _BOUNDARY.finditer(text):
        pieces.append(text[start : m.start()] + m.group(1))
        start = m.end()
    pieces.append(text[start:])
    sentences = []
    for piece in pieces:
        cited = [int(n) for m in _CITATION.findall(piece) for n in _NUMBER.findall(m)]
        if num_passages is not None:
            cited = [c for c in cited if 1 <= c <= num_passages]
        clean = re.sub(r"\s+([.!?,;:])", r"\1", _CITATION.sub("", piece))
        clean = " ".join(clean.split())
        if clean:
            sentences.append({"text": clean, "citations": list(dict.fromkeys(cited))})
    return {"sentences": sentences}


def _document(passage: Mapping[str, str]) -> str:
    title = passage.get("title", "").strip()
    return f"Title: {title}\n{passage['text']}" if title else passage["text"]


def _joined(passages: Sequence[Mapping[str, str]], indices: Iterable[int]) -> str:
    return "\n".join(_document(passages[i - 1]) for i in indices)


def citation_scores(
    sentences: Sequence[Mapping[str, Any]],
    passages: Sequence[Mapping[str, str]],
    *,
    judge: Judge,
    max_citations: int | None = 3,
) -> dict[str, Any]:
    """ALCE citation recall and precision of one answer, with a per-sentence breakdown.

    Args:
      sentences: `[{text, citations}]` with 1-based passage numbers (`parse_answer`'s output).
      passages: the passages the numbers refer to.
      judge: `judge(premise, hypothesis) -> bool`, the NLI model's entailment decision.
    """
    supported_count, precise, total_citations, details = 0, 0, 0, []
    for sentence in sentences:
        cited = list(dict.fromkeys(sentence.get("citations", ())))
        if any(not 1 <= c <= len(passages) for c in cited):
            cited = []  # ALCE: a citation of a missing passage makes the sentence unsupported
        cited = cited[:max_citations]
        total_citations += len(cited)
        supported = bool(cited) and judge(_joined(passages, cited), sentence["text"])
        irrelevant = []
        if supported and len(cited) > 1:
            for c in cited:
                alone = judge(_joined(passages, [c]), sentence["text"])
                rest = [o for o in cited if o != c]
                if not alone and judge(_joined(passages, rest), sentence["text"]):
                    irrelevant.append(c)
            precise += len(cited) - len(irrelevant)
        elif supported:
            precise += 1
        supported_count += supported
        details.append(
            {
                "text": sentence["text"],
                "citations": cited,
                "supported": supported,
                "irrelevant": irrelevant,
            }
        )
    return {
        "citation_recall": supported_count / len(sentences) if sentences else 0.0,
        "citation_precision": precise / total_citations if total_citations else 0.0,
        "sentences": details,
    }


def corpus_citation_scores(
    answers: Iterable[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, str]]]],
    *,
    judge: Judge,
    max_citations: int | None = 3,
) -> dict[str, float]:
    """Mean per-answer citation recall and precision over (sentences, passages) pairs (as ALCE)."""
    recalls, precisions = [], []
    for sentences, passages in answers:
        scores = citation_scores(sentences, passages, judge=judge, max_citations=max_citations)
        recalls.append(scores["citation_recall"])
        precisions.append(scores["citation_precision"])
    if not recalls:
        raise errors.DataError("no answers to score")
    return {
        "citation_recall": sum(recalls) / len(recalls),
        "citation_precision": sum(precisions) / len(precisions),
        "answers": len(recalls),
    }
