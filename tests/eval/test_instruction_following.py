"""Instruction-following eval: ROUGE-L, input encoding, batched greedy generation, per-group summary."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import tiny_t5_config

from vertjax import errors, io_utils
from vertjax.eval import instruction_following as inf
from vertjax.models import decoding, encoder_decoder
from vertjax.synth import refusals


@pytest.fixture(name="vocabulary", scope="module")
def vocabulary_fixture(tiny_vocab):
    from vertjax.data import vocab

    return vocab.load_vocab(tiny_vocab)


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


def test_encode_inputs_appends_eos_and_pads_to_a_power_of_two(vocabulary):
    short = "the cache flushes the page"
    ids = vocabulary.encode(short)
    assert 8 < len(ids) + 1 <= 16
    tokens = inf.encode_inputs(vocabulary, [short, "a user"], batch_size=3, max_input_length=512)
    assert tokens.shape == (3, 16) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens[0, : len(ids) + 1], ids + [vocabulary.eos_id])
    assert not tokens[0, len(ids) + 1 :].any()
    assert not tokens[2].any()  # padding row
    tiny = inf.encode_inputs(vocabulary, ["a user"], batch_size=1, max_input_length=512)
    assert tiny.shape == (1, inf.MIN_INPUT_BUCKET)
    with pytest.raises(errors.ConfigError, match="do not fit"):
        inf.encode_inputs(vocabulary, ["a", "b"], batch_size=1, max_input_length=8)


def test_encode_inputs_truncation_keeps_eos_last(vocabulary):
    long = " ".join(["the database reads every row"] * 20)
    tokens = inf.encode_inputs(vocabulary, [long], batch_size=1, max_input_length=16)
    assert tokens.shape == (1, 16)
    np.testing.assert_array_equal(tokens[0, :15], vocabulary.encode(long)[:15])
    assert tokens[0, 15] == vocabulary.eos_id


def test_generate_keeps_order_across_batches_and_cuts_at_eos(monkeypatch, vocabulary):
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(decoding, "decode_batch", _echo_decoder(calls))
    texts = [f"the scheduler {w} the next block" for w in ("reads", "writes", "sorts", "loads")]
    texts.append("a client")
    outputs = inf.generate(None, None, vocabulary, texts, batch_size=2, max_decode_length=32)
    assert outputs == [vocabulary.decode(vocabulary.encode(t)) for t in texts]
    assert [c[0] for c in calls] == [2, 2, 2]  # the last, partial batch is padded to 2 rows
    assert all("</s>" not in o for o in outputs)


def test_generate_with_a_real_tiny_model_is_deterministic(vocabulary):
    model = encoder_decoder.EncoderDecoderModel(tiny_t5_config(vocabulary.vocab_size))
    params = model.init_params(jax.random.key(0))
    texts = ["the index scans two records", "a user saves the log"]
    first = inf.generate(model, params, vocabulary, texts, batch_size=2, max_decode_length=6)
    again = inf.generate(model, params, vocabulary, texts[::-1], batch_size=2, max_decode_length=6)
    assert len(first) == 2 and all(isinstance(o, str) for o in first)
    assert again == first[::-1]


def test_evaluate_scores_each_record_and_each_group(monkeypatch, vocabulary):
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
    result = inf.evaluate(None, None, vocabulary, records, batch_size=2, max_decode_length=48)
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
        inf.evaluate(None, None, vocabulary, [])


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
