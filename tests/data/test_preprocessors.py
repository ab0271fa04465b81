"""Tests of vertjax.data.preprocessors: span corruption, prefix LM and the JSONL source."""

from __future__ import annotations

import json

import numpy as np
import pytest
import seqio
import tensorflow as tf

from vertjax import errors
from vertjax.data import preprocessors, vocab

LENGTHS = {"inputs": 64, "targets": 16}


def _seeds(a: int, b: int) -> list[tf.Tensor]:
    return [tf.constant([a, 1]), tf.constant([b, 2])]


def _features(tiny_vocab) -> dict[str, seqio.Feature]:
    v = vocab.load_vocab(tiny_vocab)
    return {"inputs": seqio.Feature(v), "targets": seqio.Feature(v)}


def _token_docs(tiny_vocab, records) -> tuple[tf.data.Dataset, list[int]]:
    """The corpus tokenized as a dataset of {'targets': ids}, and all its ids concatenated."""
    v = vocab.load_vocab(tiny_vocab)
    docs = [v.encode(r["text"]) for r in records]
    ds = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(docs, dtype=tf.int32))
    return ds.map(lambda ids: {"targets": ids}), [t for doc in docs for t in doc]


def _run(fn, ds: tf.data.Dataset, seed: int) -> list[dict[str, np.ndarray]]:
    with seqio.map_seed_manager(seed):
        out = fn(ds)
    return list(out.as_numpy_iterator())


def _reconstruct(inputs: np.ndarray, targets: np.ndarray, first_sentinel: int) -> list[int]:
    """Puts the target spans back in place of the inputs' sentinels."""
    spans: dict[int, list[int]] = {}
    current = None
    for t in targets.tolist():
        if t >= first_sentinel:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    out: list[int] = []
    for t in inputs.tolist():
        out.extend(spans[t] if t >= first_sentinel else [t])
    return out


def test_span_corruption_lengths_match_t5():
    assert preprocessors.span_corruption_lengths(inputs_length=512) == (568, 114)
    assert preprocessors.span_corruption_lengths(inputs_length=64) == (70, 14)


def test_noise_mask_density_spans_and_seeds():
    mask = preprocessors.random_spans_noise_mask(tf.constant(100), seeds=_seeds(1, 2)).numpy()
    assert mask.shape == (100,) and mask.sum() == 15 and not mask[0]
    starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
    assert len(starts) == 5
    same = preprocessors.random_spans_noise_mask(tf.constant(100), seeds=_seeds(1, 2)).numpy()
    other = preprocessors.random_spans_noise_mask(tf.constant(100), seeds=_seeds(3, 4)).numpy()
    assert (mask == same).all() and (mask != other).any()
    short = preprocessors.random_spans_noise_mask(tf.constant(1), seeds=_seeds(1, 2)).numpy()
    assert short.shape == (1,)


def test_spans_to_sentinels():
    tokens = tf.constant([10, 11, 12, 13, 14, 15, 16])
    mask = tf.constant([False, True, True, False, False, True, False])
    inputs = preprocessors.spans_to_sentinels(tokens, mask, vocab_size=100)
    targets = preprocessors.spans_to_sentinels(tokens, ~mask, vocab_size=100)
    assert inputs.numpy().tolist() == [10, 99, 13, 14, 98, 16]
    assert targets.numpy().tolist() == [99, 11, 12, 98, 15, 97]


def test_span_corruption_shapes_sentinels_and_reconstruction(tiny_vocab, tiny_corpus_records):
    features = _features(tiny_vocab)
    vocab_size = features["targets"].vocabulary.vocab_size
    first_sentinel = vocab_size - 100
    ds, all_tokens = _token_docs(tiny_vocab, tiny_corpus_records)

    def corrupt(d):
        return preprocessors.span_corruption(d, LENGTHS, features)

    examples = _run(corrupt, ds, seed=7)
    rebuilt, noise = [], 0
    for ex in examples:
        inputs, targets = ex["inputs"], ex["targets"]
        assert len(inputs) <= LENGTHS["inputs"] - 1 and len(targets) <= LENGTHS["targets"] - 1
        in_sentinels = inputs[inputs >= first_sentinel].tolist()
        assert in_sentinels == list(range(vocab_size - 1, vocab_size - 1 - len(in_sentinels), -1))
        assert targets[0] == vocab_size - 1
        rebuilt.extend(_reconstruct(inputs, targets, first_sentinel))
        noise += int((targets < first_sentinel).sum())
    assert rebuilt == all_tokens
    full = [ex for ex in examples if len(ex["inputs"]) == LENGTHS["inputs"] - 1]
    assert len(full) > 0.8 * len(examples)  # segments fill the inputs exactly, as in T5
    assert noise / len(all_tokens) == pytest.approx(0.15, abs=0.01)

    again = _run(corrupt, ds, seed=7)
    other = _run(corrupt, ds, seed=8)
    assert all(
        (a["inputs"] == b["inputs"]).all() and (a["targets"] == b["targets"]).all()
        for a, b in zip(examples, again, strict=True)
    )
    assert any(
        a["inputs"].shape != b["inputs"].shape or (a["inputs"] != b["inputs"]).any()
        for a, b in zip(examples, other, strict=True)
    )


def test_span_corruption_config_errors(tiny_vocab):
    features = _features(tiny_vocab)
    ds = tf.data.Dataset.from_tensors({"targets": tf.constant([5, 6, 7])})
    with pytest.raises(errors.ConfigError, match="at least 14"):
        preprocessors.span_corruption(ds, {"inputs": 64, "targets": 8}, features)
    with pytest.raises(errors.ConfigError, match="feature lengths"):
        preprocessors.span_corruption(ds, None, features)
    v = vocab.load_vocab(tiny_vocab, extra_ids=0)
    no_sentinels = {"inputs": seqio.Feature(v), "targets": seqio.Feature(v)}
    with pytest.raises(errors.ConfigError, match="extra_ids"):
        preprocessors.span_corruption(ds, LENGTHS, no_sentinels)


def test_prefix_lm_splits_at_random_points(tiny_vocab, tiny_corpus_records):
    ds, all_tokens = _token_docs(tiny_vocab, tiny_corpus_records)
    lengths = {"inputs": 32, "targets": 32}

    def prefix(d):
        return preprocessors.prefix_lm(d, lengths)

    examples = _run(prefix, ds, seed=3)
    rebuilt = [t for ex in examples for t in ex["inputs"].tolist() + ex["targets"].tolist()]
    assert len(rebuilt) >= len(all_tokens) - 1 and rebuilt == all_tokens[: len(rebuilt)]
    prefix_lengths = [len(ex["inputs"]) for ex in examples]
    assert min(prefix_lengths) >= 1 and max(prefix_lengths) <= 30
    assert all(len(ex["targets"]) >= 1 for ex in examples)
    assert len(set(prefix_lengths)) > 10
    again = [len(ex["inputs"]) for ex in _run(prefix, ds, seed=3)]
    other = [len(ex["inputs"]) for ex in _run(prefix, ds, seed=4)]
    assert again == prefix_lengths != other


def test_jsonl_source_reads_shuffles_and_names_bad_records(tmp_path, tiny_corpus_jsonl):
    fn = preprocessors.jsonl_dataset_fn(
        split_files={"train": str(tiny_corpus_jsonl)}, keys=["text"]
    )
    ordered = [x["text"].decode() for x in fn("train", False).as_numpy_iterator()]
    assert len(ordered) == 200
    shuffled = [x["text"] for x in fn("train", True, seed=1).as_numpy_iterator()]
    assert shuffled == [x["text"] for x in fn("train", True, seed=1).as_numpy_iterator()]
    assert sorted(s.decode() for s in shuffled) == sorted(ordered) and shuffled != ordered
    with pytest.raises(errors.ConfigError, match="no file for split 'validation'"):
        fn("validation", False)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "ok"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(errors.DataError, match=r"bad\.jsonl:2: invalid JSON"):
        preprocessors.read_jsonl_columns(bad, ["text"])
    bad.write_text(json.dumps({"id": "a", "text": 3}) + "\n", encoding="utf-8")
    with pytest.raises(errors.DataError, match=r"bad\.jsonl: record 1 \(id 'a'\): 'text' must"):
        preprocessors.read_jsonl_columns(bad, ["text"])
    bad.write_text(json.dumps({"id": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(errors.DataError, match=r"bad\.jsonl:1: missing key\(s\) text"):
        preprocessors.read_jsonl_columns(bad, ["text"])
    bad.write_bytes(b'{"text": "\xff"}\n')
    with pytest.raises(errors.DataError, match=r"bad\.jsonl:1: line is not valid UTF-8"):
        preprocessors.read_jsonl_columns(bad, ["text"])
    bad.write_text("", encoding="utf-8")
    with pytest.raises(errors.DataError, match=r"bad\.jsonl: no records"):
        preprocessors.read_jsonl_columns(bad, ["text"])
