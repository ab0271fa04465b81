"""Instruction-following eval: ROUGE-L, batched greedy generation, per-group summary."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import tiny_t5_config

from vertjax import errors, io_utils
from vertjax.eval import instruction_following as inf
from vertjax.generators import t5
from vertjax.models import decoding, encoder_decoder
from vertjax.synth import refusals


@pytest.fixture(name="vocabulary", scope="module")
def vocabulary_fixture(tiny_vocab):
    from vertjax.data import vocab

    return vocab.load_vocab(tiny_vocab)


@pytest.fixture(name="client", scope="module")
def client_fixture(vocabulary):
    """A tiny random T5 (tests that stub `decode_batch` never run it)."""
    model = encoder_decoder.EncoderDecoderModel(tiny_t5_config(vocabulary.vocab_size))
    return t5.T5Client(model, model.init_params(jax.random.key(0)), vocabulary)


def _echo_decoder(calls: list[tuple[int, ...]]):
    """A stand-in for `decode_batch` whose output is its (eos-terminated) input, 0-padded."""

    def decode_batch(model, params, tokens, *, max_decode_length, method):
        assert method == "greedy"
        calls.append(tokens.shape)
        out = np.zeros((tokens.shape[0], max_decode_length), np.int32)
        width = min(tokens.shape[1], max_decode_length)
        out[:, :width] = tokens[:, :width]
        return decoding.Decoded(tokens=out, scores=np.zeros(tokens.shape[0], np.float32))

    return decode_batch


def test_rouge_l_is_lcs_f1_over_lowercased_words():
    scores = inf.rouge_l(
        ["The cat sat on the mat", "completely different", "", "same words"],
        ["the cat lay on the mat", "nothing alike here", "a reference", "Same, words!"],
    )
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides.
    np.testing.assert_allclose(scores, [5 / 6, 0.0, 0.0, 1.0])
    with pytest.raises(errors.ConfigError, match="2 predictions but 1 references"):
        inf.rouge_l(["a", "b"], ["a"])


def test_generate_keeps_order_across_batches_and_cuts_at_eos(monkeypatch, client, vocabulary):
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(decoding, "decode_batch", _echo_decoder(calls))
    texts = [f"the scheduler {w} the next block" for w in ("reads", "writes", "sorts", "loads")]
    texts.append("a client")
    outputs = inf.generate(client, texts, batch_size=2, max_decode_length=32)
    assert outputs == [vocabulary.decode(vocabulary.encode(t)) for t in texts]
    assert [c[0] for c in calls] == [2, 2, 2]  # the last, partial batch is padded to 2 rows
    assert all("</s>" not in o for o in outputs)


def test_generate_with_a_real_tiny_model_is_deterministic(client):
    texts = ["the index scans two records", "a user saves the log"]
    first = inf.generate(client, texts, batch_size=2, max_decode_length=6)
    again = inf.generate(client, texts[::-1], batch_size=2, max_decode_length=6)
    assert len(first) == 2 and all(isinstance(o, str) for o in first)
    assert again == first[::-1]


def test_evaluate_scores_each_record_and_each_group(monkeypatch, client, vocabulary):
    monkeypatch.setattr(decoding, "decode_batch", _echo_decoder([]))
    # What the echo decoder returns for record a1 (the tiny vocab has no capitals or colons).
    echo = vocabulary.decode(
        vocabulary.encode(refusals.format_inputs("read the page", "the cache"))
    )
    records = [
        {"id": "a1", "instruction": "read the page", "input": "the cache", "output": echo,
         "source": "kg"},
        {"id": "a2", "instruction": "sort the table", "input": "", "output": "zebra quartz",
         "source": "kg"},
        {"id": "b1", "instruction": "merge two records", "input": "", "output": "merge records",
         "source": "qa"},
    ]  # fmt: skip
    result = inf.evaluate(client, records, batch_size=2, max_decode_length=48)
    assert result.count == 3
    by_id = {r["id"]: r for r in result.rows}
    assert by_id["a1"]["rouge_l"] == pytest.approx(1.0)
    assert by_id["a1"]["exact_match"]
    assert by_id["a2"]["rouge_l"] == 0.0
    # "<unk>nstruction<unk> merge two records" vs "merge records": LCS 2, P = 2/4, R = 2/2.
    assert by_id["b1"]["rouge_l"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert result.by_group["kg"] == {"rouge_l": 0.5, "exact_match": 0.5, "count": 2}
    assert result.rouge_l == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    assert set(result.summary()) == {"rouge_l", "exact_match", "count", "by_group"}
    with pytest.raises(errors.DataError, match="no instruction records"):
        inf.evaluate(client, [])


def test_load_records_names_the_bad_line(tmp_path):
    good = {"id": "x", "instruction": "Define the word 'cat'.", "input": "", "output": "a pet"}
    path = tmp_path / "heldout.jsonl"
    io_utils.write_jsonl(path, [good])
    assert inf.load_records(path) == [good]
    io_utils.write_jsonl(path, [good, dict(good, id="y", output=3)])
    with pytest.raises(errors.DataError, match="output") as e:
        inf.load_records(path)
    assert ":2" in str(e.value)
    io_utils.write_jsonl(path, [{"id": "z", "instruction": "q", "input": ""}])
    with pytest.raises(errors.DataError, match="output"):
        inf.load_records(path)
    path.write_text("")
    with pytest.raises(errors.DataError, match="empty"):
        inf.load_records(path)
