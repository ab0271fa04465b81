"""The hand-written lay-language question set the demo evaluates retrieval on
(`vertjax/resources/demo/retrieval_lay_questions.jsonl`).

Each question describes a need in everyday words about the embedded python-stdlib pack's docs,
avoiding the answering passage's key terms; its `answers` are phrases of that passage. These
checks keep the file usable by `vertjax eval retrieval` and answerable from the pack as built.
"""

from __future__ import annotations

import json

import pytest

from vertjax.data import packs
from vertjax.demo import retrieval
from vertjax.retrieval import metrics

LAY = retrieval.LAY_QUESTIONS


@pytest.fixture(scope="module")
def stdlib_passages(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("pack") / "python-stdlib"
    packs.build_pack("python-stdlib", out)
    return [
        json.loads(line)
        for split in ("train", "validation", "test")
        for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def _records() -> list[dict]:
    return [json.loads(line) for line in LAY.read_text(encoding="utf-8").splitlines()]


def test_the_set_loads_as_answer_questions_with_unique_ids():
    questions = metrics.load_questions(LAY)
    assert len(questions) >= 60
    assert len({q.id for q in questions}) == len(questions)
    assert len({q.question.lower() for q in questions}) == len(questions)
    assert all(q.answers and q.positive_ids is None for q in questions)


def test_questions_avoid_the_name_of_what_they_ask_about():
    for record in _records():
        name = record["about"].rsplit(".", 1)[-1].lower()
        assert name not in record["question"].lower(), record


def test_every_answer_identifies_one_to_three_passages_of_the_pack(stdlib_passages):
    for question in metrics.load_questions(LAY):
        found = [
            p["id"]
            for p in stdlib_passages
            if metrics.has_answer(p["text"], question.answers or ())
        ]
        assert 1 <= len(found) <= 3, (question.id, question.question, len(found))


def test_one_line_api_docstrings_are_passages(stdlib_passages):
    """Short docstrings of C-implemented functions (math.gcd: "Greatest Common Divisor.") count
    their signature heading towards the pack's minimum passage length, so they are retrievable."""
    titles = {p["title"] for p in stdlib_passages}
    for title in ("math module > math.gcd(*integers)", "math module > math.sqrt(x, /)"):
        assert title in titles
