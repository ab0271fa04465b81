"""Citation format, parsing and ALCE citation recall/precision on hand-made cases (fake judge)."""

from __future__ import annotations

import pytest

from vertjax import errors
from vertjax.consistency import citations


def keyword_judge(premise: str, hypothesis: str) -> bool:
    """Entailed iff every word of the hypothesis appears in the premise (a transparent fake)."""
    words = set(premise.replace("\n", " ").replace(".", "").lower().split())
    return set(hypothesis.rstrip(".").lower().split()) <= words


PASSAGES = [
    {"id": "p1", "title": "", "text": "alpha"},
    {"id": "p2", "title": "", "text": "beta"},
    {"id": "p3", "title": "", "text": "gamma"},
    {"id": "p4", "title": "", "text": "alpha beta"},
]


def test_build_record_numbers_passages_and_cites_before_the_full_stop():
    record = citations.build_record(
        {
            "id": "q1",
            "question": "What are lists?",
            "passages": [
                {"id": "a", "title": "Lists", "text": "Lists are mutable."},
                {"id": "b", "title": "Tuples", "text": "Tuples are immutable."},
            ],
            "answer_sentences": [
                {"text": "Lists are mutable.", "citations": ["a"]},
                {"text": "Tuples are not.", "citations": ["a", "b"]},
                {"text": "That is all", "citations": []},
            ],
        }
    )
    assert record["inputs"] == (
        "answer with citations: question: What are lists? passages: "
        "[1] Lists | Lists are mutable. [2] Tuples | Tuples are immutable."
    )
    assert record["targets"] == "Lists are mutable [1]. Tuples are not [1][2]. That is all"
    assert record["passage_ids"] == ["a", "b"]


def test_build_record_rejects_a_citation_of_an_unknown_passage():
    good = {
        "question": "q",
        "passages": [{"id": "a", "text": "x"}],
        "answer_sentences": [{"text": "y.", "citations": ["a"]}],
    }
    bad = dict(good, answer_sentences=[{"text": "y.", "citations": ["zz"]}])
    with pytest.raises(errors.DataError, match=r"qa.jsonl:3: citations \['zz'\]"):
        list(citations.build_records([good, good, bad], source="qa.jsonl"))


def test_parse_answer_round_trips_the_format():
    sentences = [
        {"text": "Lists are mutable.", "citations": [1]},
        {"text": "Tuples are not!", "citations": [2, 3]},
        {"text": "No source here.", "citations": []},
    ]
    assert citations.parse_answer(citations.format_answer(sentences)) == {"sentences": sentences}


def test_parse_answer_handles_markers_after_the_stop_repeats_and_range():
    text = "Lists are mutable. [1][1] Tuples are not [2][7]. Use 3.5 or e.g. 2 [3]."
    parsed = citations.parse_answer(text, num_passages=3)
    assert parsed["sentences"] == [
        {"text": "Lists are mutable.", "citations": [1]},
        {"text": "Tuples are not.", "citations": [2]},
        {"text": "Use 3.5 or e.g. 2.", "citations": [3]},
    ]
    assert citations.parse_answer("   ") == {"sentences": []}


def test_parse_answer_reads_comma_lists_and_named_markers():
    text = "Lists are mutable [1, 3]. Tuples are not [Passage 2]. Sets [document 4]."
    assert citations.parse_answer(text, num_passages=3)["sentences"] == [
        {"text": "Lists are mutable.", "citations": [1, 3]},
        {"text": "Tuples are not.", "citations": [2]},
        {"text": "Sets.", "citations": []},
    ]


def test_alce_recall_and_precision_on_hand_made_cases():
    sentences = [
        {"text": "alpha.", "citations": [1]},  # supported, 1/1 precise
        {"text": "alpha beta.", "citations": [1, 2]},  # both needed: 2/2
        {"text": "alpha.", "citations": [1, 3]},  # [3] irrelevant: (a) and (b) hold -> 1/2
        {"text": "gamma.", "citations": [1]},  # unsupported: 0/1
        {"text": "beta.", "citations": []},  # no citation: unsupported, 0/0
        {"text": "alpha.", "citations": [1, 4]},  # each alone entails: (a) fails -> 2/2
        {"text": "alpha.", "citations": [9]},  # missing passage: unsupported, not counted
    ]
    scores = citations.citation_scores(sentences, PASSAGES, judge=keyword_judge)
    assert scores["citation_recall"] == pytest.approx(4 / 7)
    assert scores["citation_precision"] == pytest.approx(6 / 8)
    details = scores["sentences"]
    assert [d["supported"] for d in details] == [True, True, True, False, False, True, False]
    assert details[2]["irrelevant"] == [3]
    assert all(not d["irrelevant"] for i, d in enumerate(details) if i != 2)


def test_alce_uses_the_concatenation_of_cited_passages_and_at_most_three():
    # Only the joint passage entails "alpha beta gamma"; the 4th citation is beyond the limit.
    sentence = {"text": "alpha beta gamma.", "citations": [1, 2, 3, 4]}
    scores = citations.citation_scores([sentence], PASSAGES, judge=keyword_judge)
    assert scores["citation_recall"] == 1.0
    assert scores["sentences"][0]["citations"] == [1, 2, 3]
    limited = citations.citation_scores([sentence], PASSAGES, judge=keyword_judge, max_citations=2)
    assert limited["citation_recall"] == 0.0 and limited["citation_precision"] == 0.0


def test_corpus_scores_average_per_answer():
    answers = [
        ([{"text": "alpha.", "citations": [1]}], PASSAGES),
        ([{"text": "gamma.", "citations": [1]}, {"text": "beta.", "citations": [2]}], PASSAGES),
    ]
    scores = citations.corpus_citation_scores(answers, judge=keyword_judge)
    assert scores == {"citation_recall": 0.75, "citation_precision": 0.75, "answers": 2}
    with pytest.raises(errors.DataError):
        citations.corpus_citation_scores([], judge=keyword_judge)
