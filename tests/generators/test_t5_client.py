"""The loaded-T5 client (vocab check, bucketed encoder batches) and the T5 generator over it."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import save_tiny_t5, tiny_t5_config

from vertjax import errors
from vertjax.data import vocab as vocab_lib
from vertjax.generators import t5
from vertjax.models import encoder_decoder
from vertjax.train import restore


@pytest.fixture(name="client", scope="module")
def client_fixture(tiny_vocab):
    vocabulary = vocab_lib.load_vocab(tiny_vocab)
    model = encoder_decoder.EncoderDecoderModel(tiny_t5_config(vocabulary.vocab_size))
    return t5.T5Client(model, model.init_params(jax.random.key(0)), vocabulary)


def test_bucket_length_is_a_power_of_two_within_bounds():
    assert [t5.bucket_length(n) for n in (1, 8, 9, 16, 17, 100)] == [8, 8, 16, 16, 32, 128]
    assert t5.bucket_length(9, min_length=16) == 16
    assert t5.bucket_length(300, min_length=64, max_length=260) == 260


def test_encoder_batch_appends_eos_and_pads_to_a_power_of_two(client):
    vocabulary = client.vocabulary
    short = "the cache flushes the page"
    ids = vocabulary.encode(short)
    assert 8 < len(ids) + 1 <= 16
    tokens = client.encoder_batch([short, "a user"], batch_size=3, max_length=512)
    assert tokens.shape == (3, 16) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens[0, : len(ids) + 1], ids + [vocabulary.eos_id])
    assert not tokens[0, len(ids) + 1 :].any()
    assert not tokens[2].any()  # padding row
    tiny = client.encoder_batch(["a user"], batch_size=1, max_length=512)
    assert tiny.shape == (1, t5.MIN_BUCKET)
    with pytest.raises(errors.ConfigError, match="do not fit"):
        client.encoder_batch(["a", "b"], batch_size=1, max_length=8)


def test_encoder_batch_truncation_keeps_eos_last(client):
    long = " ".join(["the database reads every row"] * 20)
    tokens = client.encoder_batch([long], batch_size=1, max_length=16)
    assert tokens.shape == (1, 16)
    np.testing.assert_array_equal(tokens[0, :15], client.vocabulary.encode(long)[:15])
    assert tokens[0, 15] == client.eos_id


def test_client_refuses_a_vocab_bigger_than_the_model(client, tiny_vocab):
    big = vocab_lib.load_vocab(tiny_vocab, extra_ids=500)
    with pytest.raises(errors.CheckpointError, match="vocab"):
        t5.T5Client(client.model, client.params, big)


@pytest.mark.slow  # ~30 s on a shared 2-core machine: JAX compile + orbax save/restore
def test_t5_generator_decodes_a_tiny_random_checkpoint(tmp_path, tiny_vocab):
    config = tiny_t5_config(512)
    params = encoder_decoder.EncoderDecoderModel(config).init_params(jax.random.key(0))
    restore.save_params(tmp_path / "model", config=config, params=params)
    g = t5.T5Generator.from_run_dir(tmp_path / "model", tiny_vocab, batch_size=2)
    texts = ["What does the cache do?", "Name a table.", "Three prompts, two per batch."]
    out = g.generate(texts, max_tokens=6, temperature=1.0, seed=0)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert out == g.generate(texts, max_tokens=6, temperature=1.0, seed=0)
    assert g.name == "t5" and g.model.endswith("@0")


def test_t5_generator_refuses_a_vocab_bigger_than_the_model(tmp_path, tiny_vocab):
    save_tiny_t5(tmp_path / "model", vocab_size=350)  # the tiny vocab: 300 pieces + 100 extra ids
    with pytest.raises(errors.ConfigError, match="has 400 ids but the model in .* only 350"):
        t5.T5Generator.from_run_dir(tmp_path / "model", tiny_vocab)
