"""Rewrites for NLI synthesis: low-overlap entailments, word-keeping contradictions and neutrals."""

from __future__ import annotations

import random

from vertjax.consistency import paraphrase

SYNONYMS = {"returns": ["gives back"], "list": ["listing"], "sorted": ["ordered"]}


def test_substitute_synonyms_keeps_code_names_and_protected_words():
    rng = random.Random(0)
    text, count = paraphrase.substitute_synonyms(
        "Returns a sorted list; see list.sort() and sorted().", rng, SYNONYMS, rate=1.0
    )
    assert text == "Gives back a ordered listing; see list.sort() and sorted()."
    assert count == 3
    kept, count = paraphrase.substitute_synonyms(
        "It returns a list.", rng, SYNONYMS, rate=1.0, protect="list"
    )
    assert (kept, count) == ("It gives back a list.", 1)


def test_entailed_rewrites():
    rng = random.Random(0)
    assert paraphrase.reorder_condition("If the file is missing, open raises OSError.") == (
        "Open raises OSError if the file is missing."
    )
    assert paraphrase.reorder_condition("The file is missing.") is None
    part = paraphrase.drop_conjunct(
        "The sort is stable and runs in place, and it returns None to the caller.", rng
    )
    assert part in ("The sort is stable and runs in place.", "It returns None to the caller.")
    assert paraphrase.drop_conjunct("Short and sweet.", rng) is None


def test_contradictions_keep_every_word():
    rng = random.Random(0)
    swapped = paraphrase.swap_roles("Call os.path.join before shutil.copy runs.", rng)
    assert swapped == "Call shutil.copy before os.path.join runs."
    assert sorted(swapped.split()) == sorted("Call os.path.join before shutil.copy runs.".split())
    assert paraphrase.swap_roles("Nothing to swap here.", rng) is None
    assert paraphrase.swap_literal("It defaults to True.", rng) == "It defaults to False."
    assert paraphrase.swap_literal("No literal.", rng) is None


def test_unsupported_neutrals_reuse_the_premise_subject():
    rng = random.Random(0)
    spliced = paraphrase.splice_unsupported(
        "The sort method is stable.", "A lock can be acquired twice by its owner.", rng
    )
    assert spliced == "The sort method can be acquired twice by its owner."
    appended = paraphrase.append_unsupported(
        "The sort method is stable.", "Locks are released on exit."
    )
    assert appended == "The sort method is stable, and locks are released on exit."
