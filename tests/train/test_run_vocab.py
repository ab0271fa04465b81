"""The vocabulary a run dir was trained with, and the refusal to warm-start across vocabularies."""

from __future__ import annotations

import shutil

import pytest

from vertjax import errors
from vertjax.data import vocab
from vertjax.train import run_vocab


def test_trained_vocab_is_the_run_dirs_own_or_its_config_gins(tmp_path, tiny_vocab):
    run = tmp_path / "run"
    run.mkdir()
    assert run_vocab.trained_vocab(run) is None
    (run / "config.gin").write_text(f"VOCAB = {str(tiny_vocab)!r}\n", encoding="utf-8")
    assert run_vocab.trained_vocab(run) == tiny_vocab
    own = shutil.copy(tiny_vocab, run / vocab.MODEL_FILENAME)  # a converted checkpoint's
    assert run_vocab.trained_vocab(run) == own


def test_warm_start_from_another_vocabulary_names_both(tmp_path, tiny_vocab):
    run = tmp_path / "pretrained"
    run.mkdir()
    (run / "config.gin").write_text(f"VOCAB = {str(tiny_vocab)!r}\n", encoding="utf-8")
    copy = shutil.copy(tiny_vocab, tmp_path / "copy.model")  # same model, another path: fine
    run_vocab.check_warm_start_vocab(run / "checkpoint_5", vocab=copy)
    run_vocab.check_warm_start_vocab(run, vocab=None)  # nothing to compare
    other = tmp_path / "other.model"
    other.write_bytes(tiny_vocab.read_bytes() + b"\0")
    with pytest.raises(errors.ConfigError) as caught:
        run_vocab.check_warm_start_vocab(run, vocab=other)
    assert str(tiny_vocab) in str(caught.value) and str(other) in str(caught.value)
