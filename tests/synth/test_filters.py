"""The synthesis filters: each rule fires on what it should and only on that."""

from __future__ import annotations

import pytest

from vertjax.synth import filters

CONFIG = filters.FilterConfig()


def _reason(text, pool_texts=(), seen=()):
    pool = filters.RougePool(pool_texts)
    return filters.instruction_reason(text, config=CONFIG, pool=pool, seen=set(seen))


def test_rouge_threshold_uses_rouge_l_f1():
    pool = ["What does the math gcd function return for two integers?"]
    reason, score = _reason("What does the math lcm function return for two integers?", pool)
    assert reason == "rouge_similar" and score == pytest.approx(9 / 10)
    reason, score = _reason("Explain how heapq keeps the smallest item first.", pool)
    assert reason is None and score < 0.7
    assert filters.RougePool().score("a b c d", "a b x y") == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Sort it", "too_short"),
        ("word " * 151, "too_long"),
        ("Écris une fonction qui trie une liste.", "not_english"),
        ("- Write a function that sorts a list.", "starts_with_punctuation"),
        ("Draw a diagram of the class hierarchy.", "banned_keyword"),
        ("Open the file and count its lines.", "banned_keyword"),
        ("Plot the values of math.sin between zero and pi.", "banned_keyword"),
        ("Explain how to go to the next item of an iterator.", "banned_keyword"),
        ("Explain what cProfile measures in a program.", None),  # "profile" is not "file"
        ("Explain what functools.partial returns.", None),
    ],
)
def test_instruction_rules(text, reason):
    assert _reason(text)[0] == reason


def test_duplicates_are_case_and_space_insensitive():
    seen = {filters.normalize("Explain what functools.partial returns.")}
    assert _reason("explain  what functools.partial RETURNS.", seen=seen)[0] == "duplicate"


def test_instance_and_grounding_rules():
    assert filters.instance_reason("x", "  ", config=CONFIG) == "empty_output"
    assert (
        filters.instance_reason("Same text", "same  text", config=CONFIG) == "output_equals_input"
    )
    assert filters.instance_reason("", "w " * 401, config=CONFIG) == "output_too_long"
    assert filters.instance_reason("", "fine", config=CONFIG) is None
    reference = "math.gcd returns the greatest common divisor of the integer arguments."
    assert filters.overlap("The greatest common divisor.", reference) == 1.0
    assert (
        filters.grounding_reason(
            "It returns the sum of squares of floats.",
            reference=reference,
            min_overlap=0.6,
            reason="x",
        )
        == "x"
    )
    assert filters.context_reference("According to the passage, it is 3.") == "the passage"
    assert filters.context_reference("What does passage-time mean?") is None


def test_nearest_neighbours_and_reason_counts():
    scores = filters.rouge_nearest_neighbours(["a b c", "a b c", "x y z"], sample=10, seed=0)
    assert scores == [1.0, 1.0, 0.0]
    records = [{"meta": {"reason": r}} for r in ("b", "a", "b")]
    assert filters.count_reasons(records) == {"b": 2, "a": 1}
