"""Retriever training pairs: ICT/cropping, labelled pairs, held-out safety, deterministic batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vertjax import errors, io_utils
from vertjax.retrieval import encode, pairs


def test_inverse_cloze_removes_the_question_sentence_unless_kept():
    text = "The cache stores pages. The writer flushes dirty pages. Readers never block at all."
    question, context = pairs.inverse_cloze(text, np.random.default_rng(0), keep_probability=0.0)
    assert question in pairs.sentences(text) and question not in context
    assert len(pairs.sentences(context)) == 2
    _, kept = pairs.inverse_cloze(text, np.random.default_rng(0), keep_probability=1.0)
    assert kept == " ".join(pairs.sentences(text))
    assert pairs.inverse_cloze("One lonely sentence here.", np.random.default_rng(0)) is None


def test_independent_crops_are_spans_of_the_passage():
    text = " ".join(f"w{i}" for i in range(100))
    q, p = pairs.independent_crops(text, np.random.default_rng(3), min_ratio=0.1, max_ratio=0.5)
    for span in (q, p):
        assert span in text and 10 <= len(span.split()) <= 50
    assert pairs.independent_crops("too short text", np.random.default_rng(0)) is None


def _corpus(tmp_path, records):
    path = tmp_path / "passages.jsonl"
    io_utils.write_jsonl(path, records)
    return path


def test_held_out_and_duplicate_passages_are_removed(tmp_path, tiny_corpus_records):
    records = tiny_corpus_records + [dict(tiny_corpus_records[0], id="copy")]
    held = tmp_path / "held.jsonl"
    io_utils.write_jsonl(held, [{"id": "q", "question": "x?", "positive_ids": ["doc1-p0"]}])
    kept, stats = pairs.load_training_passages(_corpus(tmp_path, records), held_out=[held])
    ids = {p["id"] for p in kept}
    assert "doc1-p0" not in ids and "copy" not in ids and len(kept) == 199
    assert stats["held_out"] == 1 and stats["duplicates"] == 1


def test_labelled_pairs_dedup_drop_held_out_and_name_bad_lines(tmp_path):
    path = tmp_path / "qa.jsonl"
    io_utils.write_jsonl(
        path,
        [
            {"question": "What reads rows?", "passage_id": "a"},
            {"question": "what  READS rows?", "positive_ids": ["a", "held"]},
            {"instruction": "Who writes?", "meta": {"passage_id": "b"}},
            {"question": "Unknown?", "passage_id": "zzz"},
        ],
    )
    by_row, stats = pairs.load_labelled([path], rows={"a": 0, "b": 1}, held_out={"held"})
    assert by_row == {0: ["What reads rows?"], 1: ["Who writes?"]}
    assert stats == {
        "read": 5,
        "kept": 2,
        "duplicates": 1,
        "held_out": 1,
        "unknown_passage": 1,
    }
    with path.open("a") as f:
        f.write(json.dumps({"question": "no passage"}) + "\n")
    with pytest.raises(errors.DataError, match=r"qa\.jsonl:5"):
        pairs.load_labelled([path], rows={"a": 0}, held_out=set())


@pytest.fixture
def source_kwargs(tmp_path, tiny_corpus_records, tiny_vocab):
    records = [dict(r) for r in tiny_corpus_records]
    for r in records[:8]:
        r["text"] += " ZEBRA marks a held out passage here."
    held = tmp_path / "held.jsonl"
    io_utils.write_jsonl(
        held, [{"id": "h", "question": "?", "positive_ids": [r["id"] for r in records[:8]]}]
    )
    labelled = tmp_path / "labelled.jsonl"
    io_utils.write_jsonl(
        labelled,
        [{"question": f"question about {r['title']}", "passage_id": r["id"]} for r in records[:40]],
    )
    return {
        "passages": str(_corpus(tmp_path, records)),
        "vocab": str(tiny_vocab),
        "batch_size": 8,
        "question_length": 16,
        "passage_length": 32,
        "labelled": [str(labelled)],
        "held_out": [str(held)],
    }


def test_batches_are_deterministic_resumable_and_shardable(source_kwargs):
    source = pairs.PairsDataSource(**source_kwargs)
    straight = source.iterator(start_batch=0)
    batches = [next(straight) for _ in range(30)]  # crosses an epoch boundary (24 per epoch)
    assert source.batches_per_epoch == 192 // 8
    resumed = pairs.PairsDataSource(**source_kwargs).iterator(start_batch=26)
    for want in batches[26:30]:
        got = next(resumed)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    halves = [next(source.iterator(start_batch=5, shard_id=s, num_shards=2)) for s in range(2)]
    for key in batches[5]:
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), batches[5][key])
    assert batches[0]["question_tokens"].shape == (8, 16)
    assert batches[0]["passage_tokens"].shape == (8, 32)
    assert not (batches[0]["question_tokens"] == batches[1]["question_tokens"]).all()


def test_no_held_out_text_and_no_shared_positive_in_an_epoch(source_kwargs):
    source = pairs.PairsDataSource(**source_kwargs)
    objectives = set()
    for b in range(source.batches_per_epoch):
        questions, passages = source.global_batch(b)
        assert not any("ZEBRA" in t for t in questions + passages)
        epoch, position = divmod(b, source.batches_per_epoch)
        rows = source._permutation(epoch)[position * 8 : (position + 1) * 8]
        assert len(set(rows.tolist())) == 8
        objectives |= {source.example(int(r), epoch)[0] for r in rows}
    assert objectives == {"ict", "crop", "labelled"}


def test_hard_negatives_skip_batch_positives_and_the_same_document(source_kwargs):
    source = pairs.PairsDataSource(**{**source_kwargs, "hard_negatives": 2})
    corpus = source.corpus
    questions, passages = source.global_batch(3)
    assert len(passages) == 8 * 3
    rows = source._permutation(0)[24:32]
    by_text = {pairs.encode.passage_text(p): i for i, p in enumerate(corpus.passages)}
    negatives = [by_text[t] for t in passages[8:]]
    assert len(set(negatives)) == 16 and not set(negatives) & set(rows.tolist())
    for q_row, pair in zip(rows, np.reshape(negatives, (8, 2)), strict=True):
        doc = corpus.passages[int(q_row)]["doc_id"]
        assert all(corpus.passages[int(r)]["doc_id"] != doc for r in pair)
    batch = next(source.iterator(start_batch=3))
    assert batch["passage_tokens"].shape == (24, 32)


def test_bad_configuration_is_a_config_error(source_kwargs):
    with pytest.raises(errors.ConfigError, match="objectives"):
        pairs.PairsDataSource(**{**source_kwargs, "objectives": {"cloze": 1.0}})
    with pytest.raises(errors.ConfigError, match="VOCAB_SIZE"):
        next(pairs.PairsDataSource(**{**source_kwargs, "model_vocab_size": 10}).iterator())
    with pytest.raises(errors.ConfigError, match="divisible"):
        next(pairs.PairsDataSource(**source_kwargs).iterator(num_shards=3))


def test_lay_paraphrase_drops_code_and_swaps_words_for_synonyms():
    rng = np.random.default_rng(0)
    synonyms = {"delete": ["erase"], "directory": ["folder"], "tree": ["hierarchy"]}
    text = "Recursively delete a directory tree with `shutil.rmtree(path)` <now>.\n\nMore text."
    question = pairs.lay_paraphrase(text, rng, synonyms=synonyms, replace_probability=1.0)
    assert question == "Recursively erase a folder hierarchy with now"
    kept = pairs.lay_paraphrase(text, rng, synonyms=synonyms, replace_probability=0.0)
    assert kept == "Recursively delete a directory tree with now"
    assert pairs.lay_paraphrase("os.path.join(a, b) x.", rng, synonyms=synonyms) is None


def test_lay_objective_pairs_a_paraphrase_with_its_whole_passage(source_kwargs):
    synonyms = {"the": ["thee"], "passage": ["text"]}
    source = pairs.PairsDataSource(
        **{**source_kwargs, "objectives": {"lay": 1.0}, "lay_synonyms": synonyms}
    )
    questions, passages = source.global_batch(0)
    rows = source._permutation(0)[:8]
    for row, question, passage in zip(rows, questions, passages, strict=True):
        record = source.corpus.passages[int(row)]
        assert passage == encode.passage_text(record)
        assert source.example(int(row), 0)[0] == "lay"
        first = pairs.sentences(record["text"])[0].rstrip(".").split()
        swapped = [(a, b) for a, b in zip(first, question.split(), strict=True) if a != b]
        assert all(synonyms.get(a.lower()) == [b] for a, b in swapped), swapped
    assert any(" thee " in f" {q} " for q in questions)  # "the" was swapped somewhere
