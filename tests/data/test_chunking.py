"""Chunking bounds and boundaries, stable ids, near-duplicate removal, by-document splits."""

from __future__ import annotations

import random

import pytest

from vertjax import errors
from vertjax.data import chunking

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron".split()


def _text(rng: random.Random, n_paragraphs: int) -> str:
    paragraphs = []
    for _ in range(n_paragraphs):
        words = [
            rng.choice(WORDS) + rng.choice(["", ",", ".", "()"]) for _ in range(rng.randint(1, 90))
        ]
        paragraphs.append(" ".join(words))
        if rng.random() < 0.2:
            paragraphs.append(f"# Heading {rng.randint(0, 99)}")
    return "\n\n".join(paragraphs)


def test_count_tokens_counts_words_and_punctuation():
    assert chunking.count_tokens("json.dumps(x) -- ok") == 9  # json . dumps ( x ) - - ok
    assert chunking.count_tokens("") == 0


@pytest.mark.parametrize("max_tokens,overlap", [(16, 0), (16, 4), (50, 10), (7, 6), (1, 0)])
def test_chunks_never_exceed_max_tokens_and_cover_the_text(max_tokens, overlap):
    rng = random.Random(max_tokens * 100 + overlap)
    config = chunking.ChunkingConfig(max_tokens=max_tokens, overlap=overlap, min_tokens=1)
    for _ in range(20):
        text = _text(rng, rng.randint(1, 8))
        passages = chunking.chunk_document(
            {"doc_id": "d", "title": "T", "text": text}, config=config
        )
        assert all(1 <= chunking.count_tokens(p["text"]) <= max_tokens for p in passages)
        body_tokens = [
            t
            for block in text.split("\n\n")
            if not block.startswith("# ")
            for t in chunking.TOKEN_RE.findall(block)
        ]
        got = [t for p in passages for t in chunking.TOKEN_RE.findall(p["text"])]
        assert set(got) == set(body_tokens)
        assert len(got) >= len(body_tokens)


def test_paragraph_boundaries_and_headings_are_respected():
    para = " ".join(["word"] * 6)
    text = "\n\n".join([para, para, para, "# Usage", para])
    config = chunking.ChunkingConfig(max_tokens=14, overlap=0, min_tokens=1)
    passages = chunking.chunk_document(
        {"doc_id": "d", "title": "Guide", "text": text}, config=config
    )
    assert [p["text"] for p in passages] == [f"{para}\n\n{para}", para, para]
    assert [p["title"] for p in passages] == ["Guide", "Guide", "Guide > Usage"]


def test_long_paragraph_is_cut_with_overlap():
    text = " ".join(f"w{i}" for i in range(30))
    chunks = chunking.chunk_paragraphs(
        [text], config=chunking.ChunkingConfig(max_tokens=10, overlap=3, min_tokens=1)
    )
    assert chunks[0] == " ".join(f"w{i}" for i in range(10))
    assert chunks[1].split()[:3] == ["w7", "w8", "w9"]
    assert chunks[-1].split()[-1] == "w29"


def test_short_passages_are_dropped_but_ids_stay_stable():
    text = "# A\n\ntiny\n\n# B\n\n" + " ".join(["long"] * 20)
    doc = {"doc_id": "guide.md", "title": "Guide", "text": text}
    config = chunking.ChunkingConfig(max_tokens=50, overlap=0, min_tokens=5)
    passages = chunking.chunk_document(doc, config=config)
    assert len(passages) == 1 and passages[0]["title"] == "Guide > B"
    assert passages[0]["id"] == chunking.passage_id("guide.md", 1)
    assert chunking.chunk_document(dict(doc), config=config) == passages
    assert chunking.passage_id("guide.md", 1) != chunking.passage_id("guide.md", 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_tokens": 0}, {"max_tokens": 8, "overlap": 8}, {"overlap": -1}, {"min_tokens": 0}],
)
def test_bad_chunking_config(kwargs):
    with pytest.raises(errors.ConfigError):
        chunking.ChunkingConfig(**kwargs)


def test_near_duplicates_removed_distinct_texts_kept():
    rng = random.Random(0)
    base = [rng.choice(WORDS + [f"x{i}" for i in range(200)]) for _ in range(200)]
    near = list(base)
    near[100] = "changed"
    other = [rng.choice(WORDS + [f"y{i}" for i in range(200)]) for _ in range(200)]
    texts = [
        " ".join(base),
        " ".join(base).upper() + " !",
        " ".join(near),
        " ".join(other),
        "short one",
        "Short, one.",
    ]
    kept = list(chunking.dedupe({"text": t} for t in texts))
    assert [k["text"] for k in kept] == [texts[0], texts[3], texts[4]]


def test_split_is_by_document_deterministic_and_near_the_fractions():
    ids = [f"doc-{i}" for i in range(4000)]
    splits = [chunking.split_of(i, validation_fraction=0.1, test_fraction=0.2) for i in ids]
    assert splits == [chunking.split_of(i, validation_fraction=0.1, test_fraction=0.2) for i in ids]
    share = {s: splits.count(s) / len(ids) for s in chunking.SPLITS}
    assert share["validation"] == pytest.approx(0.1, abs=0.02)
    assert share["test"] == pytest.approx(0.2, abs=0.02)
    with pytest.raises(errors.ConfigError):
        chunking.split_of("x", validation_fraction=0.6, test_fraction=0.4)
