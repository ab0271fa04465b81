"""Tests of vertjax.data.vocab and `vertjax vocab`: T5 special ids, files, determinism, bad input."""

from __future__ import annotations

import io
import json
import pathlib

import pytest
import sentencepiece as spm

from vertjax import cli, errors
from vertjax.data import vocab


def test_t5_special_ids_and_extra_ids_on_top(tiny_vocab):
    summary = json.loads((tiny_vocab.parent / "vocab.json").read_text(encoding="utf-8"))
    base_size = summary["sentencepiece_vocab_size"]
    v = vocab.load_vocab(tiny_vocab)
    assert (v.pad_id, v.eos_id, v.unk_id, v.bos_id) == (0, 1, 2, -1)
    assert v.vocab_size == base_size + 100
    pieces = v.tokenizer
    assert [pieces.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert pieces.id_to_piece(v.vocab_size - 1) == "▁<extra_id_0>"
    assert pieces.id_to_piece(base_size) == "▁<extra_id_99>"
    ids = v.encode("The index quickly scans every row.")
    assert ids and max(ids) < base_size and 0 not in ids and 1 not in ids
    assert v.decode(ids) == "The index quickly scans every row."
    assert vocab.load_vocab(tiny_vocab.parent, extra_ids=0).vocab_size == base_size


def test_train_writes_files_and_is_deterministic(tiny_corpus_jsonl, tmp_path):
    first = vocab.train_vocab(inputs=[tiny_corpus_jsonl], out_dir=tmp_path / "a", vocab_size=200)
    second = vocab.train_vocab(inputs=[tiny_corpus_jsonl], out_dir=tmp_path / "b", vocab_size=200)
    assert first["sha256"] == second["sha256"]
    assert (tmp_path / "a/spm.model").read_bytes() == (tmp_path / "b/spm.model").read_bytes()
    assert json.loads((tmp_path / "a/vocab.json").read_text()) == first
    assert first["vocab_size"] == 300 and first["sentences_used"] == 200
    vocab_lines = (tmp_path / "a/spm.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab_lines) == 200 and vocab_lines[1].split("\t")[0] == "</s>"


def test_text_inputs_and_max_sentences_sample(tiny_corpus_records, tmp_path):
    txt = tmp_path / "more.txt"
    txt.write_text(
        "\n".join(r["text"] for r in tiny_corpus_records[:50]) + "\n\n", encoding="utf-8"
    )
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in tiny_corpus_records), encoding="utf-8")
    summary = vocab.train_vocab(
        inputs=[jsonl, txt], out_dir=tmp_path / "v", vocab_size=150, max_sentences=120, seed=1
    )
    assert summary["sentences_per_input"] == {str(jsonl): 200, str(txt): 50}
    assert summary["sentences_used"] == 120
    again = vocab.train_vocab(
        inputs=[jsonl, txt], out_dir=tmp_path / "w", vocab_size=150, max_sentences=120, seed=1
    )
    other_seed = vocab.train_vocab(
        inputs=[jsonl, txt], out_dir=tmp_path / "x", vocab_size=150, max_sentences=120, seed=2
    )
    assert again["sha256"] == summary["sha256"] != other_seed["sha256"]


def test_bad_inputs_name_the_file_and_write_nothing(tiny_corpus_jsonl, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe not utf-8\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(errors.DataError, match=r"bad\.txt:2: .*UTF-8"):
        vocab.train_vocab(inputs=[tiny_corpus_jsonl, bad], out_dir=out, vocab_size=100)
    with pytest.raises(errors.DataError, match=r"empty\.jsonl: no text"):
        vocab.train_vocab(inputs=[tiny_corpus_jsonl, empty], out_dir=out, vocab_size=100)
    with pytest.raises(errors.DataError, match=r"missing\.jsonl: corpus file not found"):
        vocab.train_vocab(inputs=[tmp_path / "missing.jsonl"], out_dir=out, vocab_size=100)
    with pytest.raises(errors.DataError, match=r"passages\.jsonl: .*[Vv]ocabulary size too high"):
        vocab.train_vocab(inputs=[tiny_corpus_jsonl], out_dir=out, vocab_size=5000)
    assert not out.exists()


def test_load_vocab_rejects_non_t5_models(tmp_path):
    with pytest.raises(errors.DataError, match="not found"):
        vocab.load_vocab(tmp_path)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(errors.DataError, match="junk.model: not a SentencePiece model"):
        vocab.load_vocab(junk)
    model = io.BytesIO()  # SentencePiece's own defaults: unk=0, bos=1, eos=2, no pad.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a b c d e f g"] * 20), model_writer=model, vocab_size=12
    )
    (tmp_path / "default.model").write_bytes(model.getvalue())
    with pytest.raises(errors.DataError, match="T5 conventions"):
        vocab.load_vocab(tmp_path / "default.model")


def test_cli_trains_and_reports_errors(tiny_corpus_jsonl, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli.main(
        ["vocab", "--input", str(tiny_corpus_jsonl), "--out", str(out), "--vocab_size", "120"]
    )
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["vocab_size"] == 220
    assert pathlib.Path(out / "spm.model").is_file()
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    rc = cli.main(["vocab", "--input", str(empty), "--out", str(out), "--vocab_size", "120"])
    assert rc == 2
    assert "empty.txt: no text" in capsys.readouterr().err


def test_ensure_vocab_trains_once_then_reads_the_finished_summary(
    tiny_corpus_jsonl, tmp_path, monkeypatch
):
    heard, out = [], tmp_path / "vocab"
    options = dict(out_dir=out, vocab_size=200, inputs=[tiny_corpus_jsonl], announce=heard.append)
    trained = vocab.ensure_vocab(**options)
    assert heard == ["training a 200-piece SentencePiece vocabulary"]
    assert trained == json.loads((out / vocab.SUMMARY_FILENAME).read_text())

    def no_training(**kwargs):
        raise AssertionError("a finished vocab was trained again")

    monkeypatch.setattr(vocab, "train_vocab", no_training)
    assert vocab.ensure_vocab(**options) == trained and len(heard) == 1
    (out / vocab.SUMMARY_FILENAME).unlink()  # an unfinished training is redone
    with pytest.raises(AssertionError, match="trained again"):
        vocab.ensure_vocab(**options)
