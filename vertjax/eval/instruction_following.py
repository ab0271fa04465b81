"""Instruction-following quality: ROUGE-L of a model's greedy outputs against reference outputs.

Held-out instruction records `{id, instruction, input, output, source, ...}` are formatted exactly
as instruction tuning formats them (`vertjax.synth.refusals.format_inputs`), decoded in fixed-size
batches with `decoding.decode_batch`, and each prediction is scored against its record's `output`
with ROUGE-L F1 from `rouge-score` (the Self-Instruct paper's metric; its default tokenizer
lowercases and keeps ASCII letters and digits). The summary holds the mean over all records and
per group (e.g. per `source`), plus exact match after whitespace normalisation.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils

RECORD_KEYS = ("id", "instruction", "input", "output")
MIN_INPUT_BUCKET = 8


@dataclasses.dataclass(frozen=True)
class InstructionEval:
    """What `evaluate` returns.

    Attributes:
      rouge_l: mean ROUGE-L F1 over every record.
      exact_match: fraction of predictions equal to the reference (whitespace-normalised).
      count: number of records scored.
      by_group: group -> {rouge_l, exact_match, count}.
      rows: one dict per record: id, group, inputs, reference, prediction, rouge_l.
    """

    rouge_l: float
    exact_match: float
    count: int
    by_group: dict[str, dict[str, float]]
    rows: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        """The figures without the per-record rows (for results JSON)."""
        return {
            "rouge_l": self.rouge_l,
            "exact_match": self.exact_match,
            "count": self.count,
            "by_group": self.by_group,
        }


def load_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Instruction records from JSONL; a missing key or non-string field names the file/line."""
    records = io_utils.load_jsonl(path, required_keys=RECORD_KEYS)
    for line, record in enumerate(records, start=1):
        for key in RECORD_KEYS[1:]:
            if not isinstance(record[key], str):
                raise errors.DataError(f"{key!r} must be a string", path=path, line=line)
    if not records:
        raise errors.DataError("no instruction records (empty file)", path=path)
    return records


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (0 when either has no tokens)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise errors.ConfigError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return [
        scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)
    ]


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def encode_inputs(
    vocabulary: Any, texts: Sequence[str], *, batch_size: int, max_input_length: int
) -> np.ndarray:
    """`[batch_size, bucket]` int32 encoder inputs: eos-terminated, truncated, 0-padded.

    The length is rounded up to a power of two (at least `MIN_INPUT_BUCKET`, at most
    `max_input_length`) so that few shapes, hence few compilations, occur.
    """
    if len(texts) > batch_size:
        raise errors.ConfigError(f"{len(texts)} texts do not fit a batch of {batch_size}")
    rows = [vocabulary.encode(t)[: max_input_length - 1] + [vocabulary.eos_id] for t in texts]
    longest = max(len(r) for r in rows)
    bucket = min(max_input_length, max(MIN_INPUT_BUCKET, 1 << (longest - 1).bit_length()))
    tokens = np.zeros((batch_size, bucket), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens


def generate(
    model: Any,
    params: Any,
    vocabulary: Any,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_input_length: int = 128,
    max_decode_length: int = 64,
) -> list[str]:
    """Greedy outputs of `model` for each input text, decoded to strings (eos and padding cut)."""
    from vertjax.models import decoding

    if batch_size < 1 or max_input_length < 2 or max_decode_length < 1:
        raise errors.ConfigError(
            "generate needs batch_size >= 1, max_input_length >= 2 and max_decode_length >= 1"
        )
    outputs: list[str] = []
    for chunk in _batches(list(texts), batch_size):
        tokens = encode_inputs(
            vocabulary, chunk, batch_size=batch_size, max_input_length=max_input_length
        )
        decoded = decoding.decode_batch(
            model, params, tokens, max_decode_length=max_decode_length, method="greedy"
        )
        ids = np.asarray(decoded.tokens)
        for row in ids[: len(chunk)]:
            row = row.tolist()
            end = row.index(decoding.EOS_ID) if decoding.EOS_ID in row else len(row)
            outputs.append(vocabulary.decode(row[:end]))
    return outputs


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {
        "rouge_l": statistics.fmean(r["rouge_l"] for r in rows),
        "exact_match": statistics.fmean(float(r["exact_match"]) for r in rows),
        "count": len(rows),
    }


def evaluate(
    model: Any,
    params: Any,
    vocabulary: Any,
    records: Sequence[Mapping[str, Any]],
    *,
    group_key: str = "source",
    batch_size: int = 32,
    max_input_length: int = 128,
    max_decode_length: int = 64,
) -> InstructionEval:
    """Decodes every record's formatted instruction and scores it against the record's output.

    Args:
      records: instruction records (see `load_records`); `group_key` names the field the
        per-group means are taken over (records without it fall in group '').
      batch_size / max_input_length / max_decode_length: decoding shape (greedy).
    """
    from vertjax.synth import refusals

    if not records:
        raise errors.DataError("no instruction records to evaluate")
    inputs = [refusals.format_inputs(r["instruction"], r["input"]) for r in records]
    predictions = generate(
        model,
        params,
        vocabulary,
        inputs,
        batch_size=batch_size,
        max_input_length=max_input_length,
        max_decode_length=max_decode_length,
    )
    references = [r["output"] for r in records]
    scores = rouge_l(predictions, references)
    rows = [
        {
            "id": r["id"],
            "group": str(r.get(group_key, "")),
            "inputs": text,
            "reference": ref,
            "prediction": pred,
            "rouge_l": score,
            "exact_match": _normalise(pred) == _normalise(ref),
        }
        for r, text, ref, pred, score in zip(
            records, inputs, references, predictions, scores, strict=True
        )
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    overall = _aggregate(rows)
    return InstructionEval(
        rouge_l=overall["rouge_l"],
        exact_match=overall["exact_match"],
        count=len(rows),
        by_group={g: _aggregate(rs) for g, rs in sorted(groups.items())},
        rows=rows,
    )
