"""`restore`: model configs in a run dir, and `load_pretrained`, the one checkpoint + vocab loader
that refuses a vocab the model cannot embed."""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np
import pytest
from conftest import save_tiny_t5, tiny_t5_config

from vertjax import errors
from vertjax.models import encoder_decoder, nli_classifier, scan_layout
from vertjax.train import restore


def test_model_config_round_trips_and_a_missing_one_is_named(tmp_path):
    config = tiny_t5_config(100)
    restore.save_model_config(tmp_path / "run", config)
    assert restore.load_model_config(tmp_path / "run") == config
    assert restore.load_model_config(tmp_path / "run" / "checkpoint_3") == config
    with pytest.raises(errors.CheckpointError, match="no model_config.json"):
        restore.load_model_config(tmp_path / "empty")


def test_load_pretrained_gives_the_asked_step_with_its_vocab(tmp_path, tiny_vocab):
    run_dir = tmp_path / "run"
    saved = {}
    for step in (1, 4):  # 400 = the tiny vocab's 300 pieces + 100 extra ids
        model, saved[step] = save_tiny_t5(run_dir, vocab_size=400, step=step, seed=step)

    latest = restore.load_pretrained(run_dir, tiny_vocab)
    first = restore.load_pretrained(run_dir / "checkpoint_1", tiny_vocab.parent)
    assert (latest.model_dir, latest.step) == (run_dir.absolute(), 4)
    assert (first.model_dir, first.step) == (run_dir.absolute(), 1)
    assert latest.model == model and latest.vocabulary.vocab_size == 400
    for loaded in (latest, first):
        jax.tree.map(np.testing.assert_array_equal, loaded.params, saved[loaded.step])


def test_load_pretrained_refuses_a_vocab_bigger_than_the_model(tmp_path, tiny_vocab, monkeypatch):
    save_tiny_t5(tmp_path / "run", vocab_size=350)

    def no_restore(*args, **kwargs):
        raise AssertionError("params restored before the vocab check")

    monkeypatch.setattr(restore, "load_params", no_restore)
    expected = f"vocab {tiny_vocab} has 400 ids but the model in {tmp_path / 'run'} only 350"
    with pytest.raises(errors.ConfigError, match=re.escape(expected)):
        restore.load_pretrained(tmp_path / "run", tiny_vocab)


def test_load_pretrained_names_a_missing_checkpoint(tmp_path, tiny_vocab):
    with pytest.raises(errors.CheckpointError, match="no_such_run"):
        restore.load_pretrained(tmp_path / "no_such_run", tiny_vocab)


@pytest.mark.parametrize("saved_scanned", [False, True])
def test_warm_start_converts_a_checkpoint_of_the_other_scan_layout(tmp_path, saved_scanned):
    """A checkpoint saved unscanned starts a scanned run and vice versa, weight for weight."""
    config = dataclasses.replace(tiny_t5_config(100), num_encoder_layers=2, num_decoder_layers=3)
    saved_config = dataclasses.replace(config, scan_layers=saved_scanned)
    run_config = dataclasses.replace(config, scan_layers=not saved_scanned)
    params = encoder_decoder.EncoderDecoderModel(saved_config).init_params(jax.random.key(4))
    restore.save_params(tmp_path / "saved", config=saved_config, params=params)

    run = encoder_decoder.EncoderDecoderModel(run_config)
    abstract = restore.abstract_params_for(run_config)
    started = restore.warm_start(run, tmp_path / "saved", abstract_params=abstract)
    assert scan_layout.is_scanned(started) is run_config.scan_layers
    assert jax.tree.structure(started) == jax.tree.structure(abstract)
    want = scan_layout.to_layout(params, run_config.scan_layers)
    jax.tree.map(np.testing.assert_array_equal, started, want)


def test_encoder_models_warm_start_from_the_other_scan_layout(tmp_path):
    """The NLI classifier (and the retriever, same path) takes a converted encoder."""
    _, params = save_tiny_t5(tmp_path / "t5", vocab_size=100)
    scanned = dataclasses.replace(tiny_t5_config(100), scan_layers=True)
    model = nli_classifier.NLIClassifierModel(scanned, hidden_dim=8)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), model.abstract_params()
    )
    started = restore.warm_start(model, tmp_path / "t5", abstract_params=abstract)
    want = scan_layout.to_scanned(params["encoder"])
    jax.tree.map(np.testing.assert_array_equal, started["encoder"], want)
