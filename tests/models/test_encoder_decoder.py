"""`load_pretrained`: one checkpoint + vocab loader that refuses a vocab the model cannot embed."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from vertjax import errors
from vertjax.models import encoder_decoder, t5
from vertjax.train import checkpoints


def tiny_config(vocab_size: int) -> t5.T5Config:
    return t5.T5Config(
        vocab_size=vocab_size,
        emb_dim=8,
        num_heads=1,
        head_dim=8,
        mlp_dim=16,
        num_encoder_layers=1,
        num_decoder_layers=1,
    )


def test_load_pretrained_gives_the_asked_step_with_its_vocab(tmp_path, tiny_vocab):
    config = tiny_config(400)  # the tiny vocab's 300 pieces + 100 extra ids
    model = encoder_decoder.EncoderDecoderModel(config)
    run_dir = tmp_path / "run"
    saved = {step: model.init_params(jax.random.key(step)) for step in (1, 4)}
    for step, params in saved.items():
        checkpoints.save_params(run_dir, config=config, params=params, step=step)

    latest = encoder_decoder.load_pretrained(run_dir, tiny_vocab)
    first = encoder_decoder.load_pretrained(run_dir / "checkpoint_1", tiny_vocab.parent)
    assert (latest.model_dir, latest.step) == (run_dir.absolute(), 4)
    assert (first.model_dir, first.step) == (run_dir.absolute(), 1)
    assert latest.model == model and latest.vocabulary.vocab_size == 400
    for loaded in (latest, first):
        jax.tree.map(np.testing.assert_array_equal, loaded.params, saved[loaded.step])


def test_load_pretrained_refuses_a_vocab_bigger_than_the_model(tmp_path, tiny_vocab, monkeypatch):
    config = tiny_config(350)
    params = encoder_decoder.EncoderDecoderModel(config).init_params(jax.random.key(0))
    checkpoints.save_params(tmp_path / "run", config=config, params=params)

    def no_restore(*args, **kwargs):
        raise AssertionError("params restored before the vocab check")

    monkeypatch.setattr(checkpoints, "load_params", no_restore)
    expected = f"vocab {tiny_vocab} has 400 ids but the model in {tmp_path / 'run'} only 350"
    with pytest.raises(errors.ConfigError, match=re.escape(expected)):
        encoder_decoder.load_pretrained(tmp_path / "run", tiny_vocab)


def test_load_pretrained_names_a_missing_checkpoint(tmp_path, tiny_vocab):
    with pytest.raises(errors.CheckpointError, match="no_such_run"):
        encoder_decoder.load_pretrained(tmp_path / "no_such_run", tiny_vocab)
