"""Question parsing: decomposition, context rewriting hook, the out-of-domain gate."""

from __future__ import annotations

import pytest

from vertjax import errors
from vertjax.retrieval import rewrite
from vertjax.retrieval.types import Hit
from vertjax.system import parsing

SEED_EXAMPLE = "What are the symptoms of autism? Is it hereditary? Can it be cured?"


def test_seed_example_gives_three_sub_questions_resolved_against_the_first():
    subs = parsing.decompose(SEED_EXAMPLE)
    assert subs == ["What are the symptoms of autism?", "Is it hereditary?", "Can it be cured?"]
    resolved = parsing.resolve_sub_questions(subs, rewrite.RuleRewriter())
    assert resolved == [
        "What are the symptoms of autism?",
        "Is autism hereditary?",
        "Can autism be cured?",
    ]


@pytest.mark.parametrize(
    "question, expected",
    [
        (
            "How do I open a file; and how do I close it?",
            ["How do I open a file?", "How do I close it?"],
        ),
        (
            "What does json.dumps do and also what does json.loads return?",
            ["What does json.dumps do?", "What does json.loads return?"],
        ),
        (
            "Questions:\n1. What is a list?\n2. What is a tuple?",
            ["What is a list?", "What is a tuple?"],
        ),
        ("Two things: 1) what is a set 2) what is a dict", ["What is a set?", "What is a dict?"]),
        (
            "Compare them:\n- what is os.path\n- what is pathlib",
            ["What is os.path?", "What is pathlib?"],
        ),
    ],
)
def test_splits_on_semicolons_and_also_and_lists(question, expected):
    assert parsing.decompose(question) == expected


def test_single_questions_and_fragments_stay_whole():
    assert parsing.decompose("How does the cache work?") == ["How does the cache work?"]
    assert parsing.decompose("What is x - y? Why?") == ["What is x - y? Why?"]  # "Why?" attaches
    assert parsing.decompose("What does `a?b; c` mean in Python 3.11?") == [
        "What does `a?b; c` mean in Python 3.11?"
    ]
    assert parsing.decompose("Wait 2. Then 5. retry?") == ["Wait 2. Then 5. retry?"]  # not 1, 2


def test_contextualize_uses_user_turns_only():
    history = [
        {"role": "user", "content": "How does queue.Queue work?"},
        {"role": "assistant", "content": "It is a FIFO built on threading.Condition [1]."},
    ]
    turns = parsing.user_turns(history)
    assert turns == ["How does queue.Queue work?"]
    rewritten = parsing.contextualize("Is it thread-safe?", turns, rewrite.RuleRewriter())
    assert rewritten == "Is queue.Queue thread-safe?"
    assert parsing.contextualize("Is it thread-safe?", [], rewrite.RuleRewriter()) == (
        "Is it thread-safe?"
    )
    with pytest.raises(errors.ConfigError, match=r"history\[0\]"):
        parsing.user_turns([42])


class _Fixed:
    def __init__(self, p: float, threshold: float = 0.5):
        self.p, self.threshold = p, threshold

    def probabilities(self, questions):
        return [self.p] * len(questions)


def _hit(score: float) -> Hit:
    return Hit(rank=1, id="a", title="A", score=score, text="text")


def test_domain_gate_classifier_then_retrieval_score_fallback():
    gate = parsing.DomainGate(classifier=_Fixed(0.2))
    [p] = gate.classify(["q"])
    verdict = gate.verdict(p, [_hit(9.0)])
    assert verdict.refused and "P(in-domain) = 0.20" in verdict.reason
    assert not parsing.DomainGate(classifier=_Fixed(0.9)).verdict(0.9, [_hit(9.0)]).refused
    fallback = parsing.DomainGate(min_top_score=5.0)
    assert fallback.classify(["q"]) == [None]
    assert fallback.verdict(None, [_hit(4.9)]).refused
    assert fallback.verdict(None, []).reason.startswith(
        "nothing in the documents answers this: retrieval found no passage"
    )
    assert fallback.verdict(None, [_hit(4.9)]).kind == parsing.NO_MATCH
    assert verdict.kind == parsing.OUTSIDE_DOMAIN
    assert not fallback.verdict(None, [_hit(5.0)]).refused
    assert not parsing.DomainGate().verdict(None, []).refused
