"""Self-QA and Self-KG jobs: grounded records, filters on bad generations, resume."""

from __future__ import annotations

import json

import pytest

from vertjax import io_utils
from vertjax.generators import openai_chat
from vertjax.synth import kg, report, self_kg, self_qa, template_backend

PASSAGES = [
    {
        "id": "p1",
        "title": "json module > json.dumps(obj, *, indent=None)",
        "text": "Serialize obj to a JSON formatted str. The indent sets pretty-printing.",
    },
    {
        "id": "p2",
        "title": "Glossary",
        "text": "Terms\nA generator is a function which returns a generator iterator. "
        "It looks like a normal function. Modules are the unit of code organization.",
    },
    {"id": "p3", "title": "Notes", "text": "nothing to ask here, only lowercase prose"},
]


class _Scripted:
    """Returns canned completions for question prompts and for answer prompts."""

    name, model = "scripted", "scripted-v0"

    def __init__(self, questions, answer):
        self.questions, self.answer = questions, answer

    def generate(self, prompts, *, max_tokens, temperature, seed):
        return [self.questions if "Questions:" in p else self.answer for p in prompts]


@pytest.fixture(scope="module")
def template():
    return template_backend.TemplateGenerator(kg.extract_triples(["json", "math"]))


def test_template_questions_and_answers_come_from_the_passage():
    p1, p2 = PASSAGES[0], PASSAGES[1]
    assert self_qa.template_questions(p1["title"], p1["text"], count=5) == [
        "What does `json.dumps` do?",
        "What is the signature of `json.dumps`?",
    ]
    assert self_qa.template_answer(p1["title"], p1["text"], "What does `json.dumps` do?") == (
        "Serialize obj to a JSON formatted str."
    )
    assert self_qa.template_questions(p2["title"], p2["text"], count=5) == [
        "What is a generator?",
        "What are modules?",
    ]
    assert self_qa.template_answer(p2["title"], p2["text"], "What is a generator?").startswith(
        "A generator is"
    )
    assert self_qa.template_answer(p2["title"], p2["text"], "What is a monad?") == ""


def test_parse_questions_reads_numbered_bulleted_and_labelled_lines():
    completion = (
        "Here are two questions:\n1. What does json.dumps return?\n- How is indent used?\n"
        "Question: What does sort_keys do?\nAnswer: it sorts the keys.\nQ4) Is it fast?\n"
        "Questions about the module are welcome."
    )
    assert self_qa.parse_questions(completion) == [
        "What does json.dumps return?",
        "How is indent used?",
        "What does sort_keys do?",
        "Is it fast?",
    ]


def test_self_qa_keeps_passage_ids_and_writes_retrieval_questions(tmp_path, template):
    summary = self_qa.run_self_qa(PASSAGES, template, tmp_path)
    kept = io_utils.load_jsonl(tmp_path / report.KEPT_FILE)
    assert summary["kept"] == len(kept) == 4
    assert {r["meta"]["passage_id"] for r in kept} == {"p1", "p2"}
    questions = io_utils.load_jsonl(tmp_path / self_qa.QUESTIONS_FILE)
    assert [q["positive_ids"] for q in questions] == [[r["meta"]["passage_id"]] for r in kept]
    # p3 has nothing to ask: the template's blank question list is not a rejection
    rejected = list(io_utils.read_jsonl(tmp_path / report.REJECTED_FILE))
    assert "p3" not in {r["meta"]["passage_id"] for r in rejected}
    # a rerun is a no-op: every passage is done
    self_qa.run_self_qa(PASSAGES, template, tmp_path)
    assert len(io_utils.load_jsonl(tmp_path / report.KEPT_FILE)) == 4


@pytest.mark.parametrize(
    ("questions", "answer", "reason"),
    [
        ("1. What does the passage say about obj?", "x", "question_context_reference"),
        ("1. Why?", "x", "question_too_short"),
        (
            "1. What does json.dumps produce?",
            "According to the passage, a str.",
            "answer_context_reference",
        ),
        (
            "1. What does json.dumps produce?",
            "A binary protocol buffer message.",
            "answer_not_in_passage",
        ),
        ("1. What does json.dumps produce?", "", "answer_empty"),
        ("Sure! JSON is a format for data.", "x", "questions_unparseable"),
        ("  \n", "x", "questions_empty"),
        (
            "1. What does json.dumps produce?\n2. what does JSON.dumps produce?",
            "A JSON formatted str.",
            "question_duplicate",
        ),
    ],
)
def test_self_qa_filters(tmp_path, questions, answer, reason):
    self_qa.run_self_qa(PASSAGES[:1], _Scripted(questions, answer), tmp_path)
    rejected = io_utils.load_jsonl(tmp_path / report.REJECTED_FILE)
    assert [r["meta"]["reason"] for r in rejected] == [reason]
    assert rejected[0]["meta"]["backend"] == "scripted"


class _CutOff(_Scripted):
    """A backend that says which completions stopped at max_tokens (like the OpenAI one)."""

    def complete(self, prompts, **kwargs):
        return [
            openai_chat.Completion(text, "length" if text == self.answer else "stop")
            for text in self.generate(prompts, **kwargs)
        ]


def test_self_qa_rejects_answers_cut_off_at_max_tokens(tmp_path):
    cut = _CutOff("1. What does json.dumps produce?", "A JSON formatted")
    self_qa.run_self_qa(PASSAGES[:1], cut, tmp_path)
    rejected = io_utils.load_jsonl(tmp_path / report.REJECTED_FILE)
    assert [(r["meta"]["reason"], r["output"]) for r in rejected] == [
        ("answer_truncated", "A JSON formatted")
    ]


def test_self_kg_records_are_grounded_on_the_entity(tmp_path, template):
    triples = kg.extract_triples(["json", "math"])
    config = self_kg.SelfKGConfig(max_entities=12, batch_size=5)
    summary = self_kg.run_self_kg(triples, template, tmp_path, config=config)
    kept = io_utils.load_jsonl(tmp_path / report.KEPT_FILE)
    assert summary["entities"] == 12 and len(kept) >= 30
    facts = kg.entity_facts(triples)
    for r in kept:
        entity = r["meta"]["entity"]
        assert r["meta"]["facts"] == [list(f) for f in facts[entity]]
        truth = {
            (i.instruction, i.input): i.output
            for i in kg.entity_instructions(entity, facts[entity])
        }
        assert truth[(r["instruction"], r["input"])] == r["output"]
    # resume after a crash mid-job: delete the progress of the last batch and rerun
    progress = (tmp_path / report.PROGRESS_FILE).read_text().splitlines()
    (tmp_path / report.PROGRESS_FILE).write_text("\n".join(progress[:5]) + "\n")
    self_kg.run_self_kg(triples, template, tmp_path, config=config)
    assert io_utils.load_jsonl(tmp_path / report.KEPT_FILE) == kept


def test_self_kg_rejects_ungrounded_output(tmp_path):
    class Hallucinates:
        name, model = "fake", "fake"

        def generate(self, prompts, **kw):
            return [
                "Instruction: What does it do?\nInput: None\nOutput: It launches rockets into orbit."
                "\n###\nInstruction: Is it a function?\nInput: None\nOutput: function"
            ] * len(prompts)

    triples = kg.extract_triples(["math"])
    self_kg.run_self_kg(
        triples, Hallucinates(), tmp_path, config=self_kg.SelfKGConfig(max_entities=1)
    )
    rejected = io_utils.load_jsonl(tmp_path / report.REJECTED_FILE)
    assert [r["meta"]["reason"] for r in rejected] == ["not_grounded"]
    assert io_utils.load_jsonl(tmp_path / report.KEPT_FILE)[0]["output"] == "function"
    assert json.loads((tmp_path / report.KEPT_FILE).read_text())["source"] == "self-kg"


class _KGScripted:
    """Returns one canned Self-KG completion, flagged as cut off at max_tokens when `cut`."""

    name, model = "scripted", "scripted-v0"

    def __init__(self, completion, cut=False):
        self.completion, self.cut = completion, cut

    def generate(self, prompts, *, max_tokens, temperature, seed):
        return [self.completion] * len(prompts)

    def complete(self, prompts, **kwargs):
        finish = "length" if self.cut else "stop"
        return [openai_chat.Completion(t, finish) for t in self.generate(prompts, **kwargs)]


GOOD = "Instruction: Is it a function?\nInput: None\nOutput: function"


@pytest.mark.parametrize(
    ("completion", "cut", "kept", "reasons"),
    [
        ("Sure! Here are some examples about math.", False, 0, ["examples_unparseable"]),
        ("  \n", False, 0, ["examples_empty"]),
        ("Instruction: What does it", True, 0, ["examples_truncated"]),
        # no `###` between examples: each `Instruction:` line starts a new one
        (GOOD + "\nInstruction: Is it a class?\nInput: None\nOutput: function", False, 2, []),
        (GOOD + "\n###\nI like trains.", False, 1, ["example_unparseable"]),
        (
            GOOD + "\n###\nInstruction: Is it a class?\nInput: None\nOutput: func",
            True,
            1,
            ["output_truncated"],
        ),
        (GOOD + "\n###\nInstruction: Is it a class?\nInput: No", True, 1, ["output_truncated"]),
        (GOOD + "\n###\n", True, 1, []),
    ],
    ids=[
        "off-format",
        "blank",
        "cut-before-any",
        "no-separator",
        "junk-block",
        "cut-output",
        "cut-block",
        "cut-after-a-separator",
    ],
)
def test_self_kg_counts_off_format_and_cut_off_output(tmp_path, completion, cut, kept, reasons):
    triples = kg.extract_triples(["math"])
    config = self_kg.SelfKGConfig(max_entities=1)
    totals = self_kg.run_self_kg(triples, _KGScripted(completion, cut), tmp_path, config=config)
    rejected = list(io_utils.read_jsonl(tmp_path / report.REJECTED_FILE))
    assert (totals["kept"], [r["meta"]["reason"] for r in rejected]) == (kept, reasons)
    assert all(r["meta"]["backend"] == "scripted" for r in rejected)
    # resuming asks nothing again and counts nothing twice
    self_kg.run_self_kg(triples, _KGScripted("never asked"), tmp_path, config=config)
    assert list(io_utils.read_jsonl(tmp_path / report.REJECTED_FILE)) == rejected
