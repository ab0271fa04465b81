"""Out-of-domain refusals, and synthesized instruction JSONL as seqio seq2seq tasks.

A vertical model must refuse what lies outside its domain. `refusal_records` pairs general-
knowledge questions (cooking, sport, geography, ...; written for this project) with one fixed
refusal answer, as instruction records labelled `source: refusal`, to be mixed into instruction
tuning. `register_instruction_task` turns instruction records into `{id, inputs, targets}` JSONL
(inputs = formatted instruction + input, targets = output) and registers them with seqio.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils
from vertjax.synth import report

JOB = "refusal"
DOMAIN = "the Python standard library"
DEFAULT_REFUSAL = (
    "I can only answer questions about {domain}. This question is outside that domain, "
    "so I cannot answer it reliably."
)
OUT_OF_DOMAIN_QUESTIONS = (
    "How long should I boil an egg to get a soft yolk?",
    "What is a good substitute for buttermilk in pancakes?",
    "How do I make a sourdough starter from scratch?",
    "At what temperature should a roast chicken be cooked?",
    "Which spices go into a classic garam masala?",
    "How do I keep basil fresh for longer?",
    "Who won the FIFA World Cup in 2014?",
    "How many players are on a basketball team on the court?",
    "What is the offside rule in football?",
    "How long is a marathon in kilometres?",
    "Which country has won the most Olympic gold medals in swimming?",
    "What does a birdie mean in golf?",
    "What is the capital of Australia?",
    "Which river is the longest in South America?",
    "How high is Mount Kilimanjaro?",
    "Which countries share a border with Switzerland?",
    "What is the largest desert in Asia?",
    "In which ocean are the Maldives?",
    "Who painted the ceiling of the Sistine Chapel?",
    "When did the Roman Empire in the West fall?",
    "Who was the first woman to win a Nobel Prize?",
    "What caused the French Revolution?",
    "Which composer wrote the Four Seasons?",
    "How many strings does a standard violin have?",
    "What key signature has three sharps?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the plot of Moby-Dick in two sentences?",
    "What is the difference between a sonnet and a haiku?",
    "How often should I water a cactus?",
    "When is the best time to plant tulip bulbs?",
    "Why do leaves change colour in autumn?",
    "How do vaccines train the immune system?",
    "What are the symptoms of the common cold?",
    "How many hours of sleep does an adult need?",
    "How do I train a puppy to sit?",
    "What do rabbits eat?",
    "How should I prepare for a job interview?",
    "What is a good way to save money for retirement?",
    "How does compound interest work on a savings account?",
    "Should I lease or buy a car?",
    "What is the best way to learn to play the guitar?",
    "How do I remove a red wine stain from a carpet?",
    "Which planet has the most moons?",
    "Why is the sky blue?",
    "How far is the Moon from the Earth?",
    "What is the boiling point of water at the top of Mount Everest?",
    "Can you recommend a romantic film for tonight?",
    "What are the rules of chess castling?",
    "How do I change a flat bicycle tyre?",
    "What should I pack for a week of hiking in the Alps?",
    "Translate 'good morning' into Japanese.",
    "Write a poem about the sea.",
)


def refusal_records(
    *,
    questions: Sequence[str] = OUT_OF_DOMAIN_QUESTIONS,
    domain: str = DOMAIN,
    refusal: str = DEFAULT_REFUSAL,
) -> list[dict[str, Any]]:
    """One instruction record per question with the fixed refusal (`{domain}` filled in)."""
    answer = refusal.format(domain=domain)
    return [
        report.make_record(
            instruction=question,
            input_="",
            output=answer,
            source=JOB,
            meta={
                "job": JOB,
                "template": "refusals.v1",
                "backend": "none",
                "model": "none",
                "seed": None,
                "position": f"refusal-{k}",
                "domain": domain,
            },
        )
        for k, question in enumerate(questions)
    ]


def format_inputs(instruction: str, input_: str = "") -> str:
    """The model input of an instruction record: the instruction, then its input if any."""
    text = f"Instruction: {instruction.strip()}"
    return f"{text}\nInput: {input_.strip()}" if input_.strip() else text


def seq2seq_records(records: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """`{id, inputs, targets}` per instruction record."""
    return [
        {
            "id": r["id"],
            "inputs": format_inputs(r["instruction"], r["input"]),
            "targets": r["output"],
        }
        for r in records
    ]


def _read_instructions(path: str | os.PathLike) -> list[dict[str, Any]]:
    records = io_utils.load_jsonl(path, required_keys=("id", "instruction", "input", "output"))
    for line, r in enumerate(records, start=1):
        if not all(isinstance(r[k], str) for k in ("instruction", "input", "output")):
            raise errors.DataError("instruction/input/output must be strings", path=path, line=line)
    return records


def register_instruction_task(
    name: str,
    *,
    split_files: Mapping[str, str | os.PathLike],
    vocab_path: str | os.PathLike,
    work_dir: str | os.PathLike,
) -> Any:
    """Registers instruction JSONL (one or more files per split) as a seqio seq2seq task.

    Args:
      name: the seqio task name.
      split_files: split -> an instruction JSONL path (or a list of them, concatenated: e.g. the
        Self-Instruct output plus `refusals.jsonl`).
      vocab_path: the SentencePiece model or its `vertjax vocab` folder.
      work_dir: where the converted `{name}.{split}.jsonl` files are written (atomically).

    Returns:
      The registered `seqio.Task`.
    """
    from vertjax.data import tasks

    converted = {}
    for split, paths in split_files.items():
        paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        records = [r for p in paths for r in _read_instructions(p)]
        out = pathlib.Path(work_dir) / f"{name}.{split}.jsonl"
        io_utils.write_jsonl(out, seq2seq_records(records))
        converted[split] = out
    return tasks.register_jsonl_task(
        name,
        split_files=converted,
        vocab_path=vocab_path,
        kind="seq2seq",
        inputs_key="inputs",
        targets_key="targets",
    )
