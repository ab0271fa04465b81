"""Instruction-following quality: ROUGE-L of a model's greedy outputs against reference outputs.

Held-out instruction records `{id, instruction, input, output, source, ...}` are formatted exactly
as instruction tuning formats them (`vertjax.synth.refusals.format_inputs`), decoded greedily in
fixed-size batches by a `vertjax.generators.t5.T5Client`, and each prediction is scored against
its record's `output` with ROUGE-L F1 from `rouge-score` (the Self-Instruct paper's metric; its
default tokenizer lowercases and keeps ASCII letters and digits). The summary holds the mean over all records and
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
from vertjax.generators.t5 import T5Client

RECORD_KEYS = ("id", "instruction", "input", "output")


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


def generate(
    client: T5Client,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    max_input_length: int = 128,
    max_decode_length: int = 64,
) -> list[str]:
    """Greedy outputs of the client's T5 for each input text, decoded to strings (eos and padding
    cut); inputs go in fixed-size batches padded to a length bucket (`T5Client.encoder_batch`)."""
    if batch_size < 1 or max_input_length < 2 or max_decode_length < 1:
        raise errors.ConfigError(
            "generate needs batch_size >= 1, max_input_length >= 2 and max_decode_length >= 1"
        )
    outputs: list[str] = []
    for chunk in _batches(list(texts), batch_size):
        tokens = client.encoder_batch(chunk, batch_size=batch_size, max_length=max_input_length)
        decoded = client.decode_batch(tokens, max_decode_length=max_decode_length, method="greedy")
        ids = np.asarray(decoded.tokens)
        for row in ids[: len(chunk)]:
            row = row.tolist()
            end = row.index(client.eos_id) if client.eos_id in row else len(row)
            outputs.append(client.vocabulary.decode(row[:end]))
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
    client: T5Client,
    records: Sequence[Mapping[str, Any]],
    *,
    group_key: str = "source",
    batch_size: int = 32,
    max_input_length: int = 128,
    max_decode_length: int = 64,
) -> InstructionEval:
    """Decodes every record's formatted instruction and scores it against the record's output.

    Args:
      client: the T5 to evaluate (`T5Client.from_run_dir(checkpoint, vocab)`).
      records: instruction records (see `load_records`); `group_key` names the field the
        per-group means are taken over (records without it fall in group '').
      batch_size / max_input_length / max_decode_length: decoding shape (greedy).
    """
    from vertjax.synth import refusals

    if not records:
        raise errors.DataError("no instruction records to evaluate")
    inputs = [refusals.format_inputs(r["instruction"], r["input"]) for r in records]
    predictions = generate(
        client,
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
