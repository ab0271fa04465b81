"""`vertjax infer` end to end: a tiny random checkpoint, the tiny SentencePiece vocab, resume."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from conftest import tiny_t5_config

from vertjax import cli, io_utils
from vertjax.models import decoding, encoder_decoder

CONFIG = tiny_t5_config(400)  # the tiny vocab's 300 pieces + 100 extra ids
TEXTS = [
    "the database reads every row",
    "a client writes the page before the commit",
    "the cache",
    "each worker sorts a long list under heavy load in 12 ms",
    "",
    "the tokenizer encodes three passages",
    "our server saves the final answer",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vertjax.train import restore

    model = encoder_decoder.EncoderDecoderModel(CONFIG)
    params = model.init_params(jax.random.key(0))
    path = tmp_path_factory.mktemp("infer") / "run"
    restore.save_params(path, config=CONFIG, params=params, step=3)
    return path, params


@pytest.fixture
def inputs_jsonl(tmp_path):
    path = tmp_path / "in.jsonl"
    io_utils.write_jsonl(path, [{"id": f"q{i}", "inputs": t} for i, t in enumerate(TEXTS)])
    return path


def _infer(checkpoint_dir, vocab, inputs, output, *extra: str) -> int:
    return cli.main(
        [
            "infer",
            "--checkpoint",
            str(checkpoint_dir),
            "--vocab",
            str(vocab),
            "--input",
            str(inputs),
            "--out",
            str(output),
            "--batch_size",
            "3",
            "--max_decode_length",
            "6",
            *extra,
        ]
    )


def test_greedy_matches_decode_batch(checkpoint, tiny_vocab, inputs_jsonl, tmp_path, capsys):
    from vertjax.data import vocab as vocab_lib

    run_dir, params = checkpoint
    output = tmp_path / "out.jsonl"
    assert _infer(run_dir, tiny_vocab, inputs_jsonl, output) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == len(TEXTS) and summary["already_done"] == 0

    records = io_utils.load_jsonl(output)
    assert [r["id"] for r in records] == [f"q{i}" for i in range(len(TEXTS))]
    assert [r["inputs"] for r in records] == TEXTS

    vocab = vocab_lib.load_vocab(tiny_vocab)
    rows = [vocab.encode(t) + [1] for t in TEXTS]
    tokens = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    model = encoder_decoder.EncoderDecoderModel(CONFIG)
    expected = decoding.decode_batch(model, params, tokens, max_decode_length=6)
    assert [r["prediction"] for r in records] == [vocab.decode(t) for t in expected.tokens.tolist()]
    np.testing.assert_allclose([r["score"] for r in records], expected.scores, rtol=1e-4)


def test_sampling_resumes_after_a_kill_without_duplicates(
    checkpoint, tiny_vocab, inputs_jsonl, tmp_path, capsys
):
    run_dir, _ = checkpoint
    sample = ("--method", "sample", "--top_k", "20", "--seed", "7")
    straight = tmp_path / "straight.jsonl"
    assert _infer(run_dir, tiny_vocab, inputs_jsonl, straight, *sample) == 0
    full_text = straight.read_text(encoding="utf-8")
    lines = full_text.splitlines(keepends=True)
    assert len(lines) == len(TEXTS)

    # a kill after four lines (one batch and one row of the next) and half of the fifth line
    resumed = tmp_path / "resumed.jsonl"
    resumed.write_text("".join(lines[:4]) + lines[4][:10], encoding="utf-8")
    capsys.readouterr()
    assert _infer(run_dir, tiny_vocab, inputs_jsonl, resumed, *sample) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["written"] == len(TEXTS) - 4 and summary["already_done"] == 4
    assert resumed.read_text(encoding="utf-8") == full_text

    assert _infer(run_dir, tiny_vocab, inputs_jsonl, resumed, *sample) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["written"] == 0
    assert resumed.read_text(encoding="utf-8") == full_text

    other_seed = tmp_path / "other.jsonl"
    assert _infer(run_dir, tiny_vocab, inputs_jsonl, other_seed, *sample[:-1], "8") == 0
    assert other_seed.read_text(encoding="utf-8") != full_text


def test_beam_writes_scored_predictions(checkpoint, tiny_vocab, inputs_jsonl, tmp_path):
    run_dir, _ = checkpoint
    output = tmp_path / "beam.jsonl"
    args = ("--method", "beam", "--num_beams", "2", "--alpha", "0.6", "--input_key", "inputs")
    assert _infer(run_dir, tiny_vocab, inputs_jsonl, output, *args) == 0
    records = io_utils.load_jsonl(output)
    assert len(records) == len(TEXTS)
    assert all(isinstance(r["prediction"], str) and r["score"] < 0 for r in records)


def test_bad_input_is_one_line_and_exit_2(checkpoint, tiny_vocab, tmp_path, capsys):
    run_dir, _ = checkpoint
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "inputs": "fine"}\n{"id": 2, "text": "no inputs key"}\n')
    assert _infer(run_dir, tiny_vocab, bad, tmp_path / "o.jsonl") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{bad}:2" in err and "inputs" in err

    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "inputs": "a"}\n{"id": 1, "inputs": "b"}\n')
    assert _infer(run_dir, tiny_vocab, dup, tmp_path / "o.jsonl") == 2
    assert "duplicate id 1" in capsys.readouterr().err

    good = tmp_path / "good.jsonl"
    good.write_text('{"inputs": "a"}\n')
    assert _infer(tmp_path / "no_such_run", tiny_vocab, good, tmp_path / "o.jsonl") == 2
    assert "no_such_run" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").read_text()


def test_a_vocab_bigger_than_the_model_is_one_line_and_exit_2(tiny_vocab, tmp_path, capsys):
    from vertjax.train import restore

    small = dataclasses.replace(CONFIG, vocab_size=350)
    params = encoder_decoder.EncoderDecoderModel(small).init_params(jax.random.key(0))
    restore.save_params(tmp_path / "small", config=small, params=params)
    good = tmp_path / "good.jsonl"
    good.write_text('{"inputs": "a"}\n')
    assert _infer(tmp_path / "small", tiny_vocab, good, tmp_path / "o.jsonl") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wrong vocab" in err
    assert str(tiny_vocab) in err and str(tmp_path / "small") in err
