"""Reference (copy) decoding must reproduce greedy decoding token for token."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vertjax.models import decoding, encoder_decoder, reference_decoding, t5

CONFIG = t5.T5Config(
    vocab_size=48,
    emb_dim=32,
    num_heads=2,
    head_dim=16,
    mlp_dim=64,
    num_encoder_layers=2,
    num_decoder_layers=2,
)
MAX_LEN = 24


@pytest.fixture(scope="module")
def model_and_params():
    model = encoder_decoder.EncoderDecoderModel(CONFIG)
    return model, model.init_params(jax.random.key(7))


def _greedy(model, params, enc):
    out = decoding.decode_batch(model, params, enc, max_decode_length=MAX_LEN, method="greedy")
    tokens = np.asarray(out.tokens[0]).tolist()
    return tokens[: tokens.index(1) + 1] if 1 in tokens else tokens


def test_find_draft_prefers_the_longest_suffix_at_its_first_occurrence():
    reference = np.array([5, 6, 7, 8, 9, 2, 7, 3, 4], np.int32)
    draft = reference_decoding.find_draft(
        [1, 2, 7], reference, max_ngram=2, min_ngram=1, draft_length=3
    )
    assert draft == [3, 4]  # "2 7" beats the earlier single "7"
    draft = reference_decoding.find_draft(
        [1, 7], reference, max_ngram=2, min_ngram=1, draft_length=3
    )
    assert draft == [8, 9, 2]  # first occurrence of "7"
    assert (
        reference_decoding.find_draft([42], reference, max_ngram=2, min_ngram=1, draft_length=3)
        == []
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identical_to_greedy_with_grounded_and_random_references(model_and_params, seed):
    model, params = model_and_params
    rng = np.random.default_rng(seed)
    enc = jnp.asarray(rng.integers(2, CONFIG.vocab_size, (1, 12)), jnp.int32)
    greedy = _greedy(model, params, enc)
    grounded = (
        [int(t) for t in rng.integers(2, 48, 5)] + greedy + [int(t) for t in rng.integers(2, 48, 5)]
    )
    unrelated = [int(t) for t in rng.integers(2, CONFIG.vocab_size, 40)]
    for reference in (grounded, unrelated, []):
        out = reference_decoding.reference_greedy_decode(
            model, params, enc, reference, max_decode_length=MAX_LEN, draft_length=4
        )
        assert out.tokens == greedy
    copied = reference_decoding.reference_greedy_decode(
        model, params, enc, grounded, max_decode_length=MAX_LEN, draft_length=4
    )
    plain = reference_decoding.reference_greedy_decode(
        model, params, enc, grounded, max_decode_length=MAX_LEN, use_drafts=False
    )
    assert plain.tokens == greedy and plain.forward_passes == len(greedy)
    # When the answer is in the reference, drafts are accepted and passes drop.
    assert copied.accepted_tokens > 0
    assert copied.forward_passes < plain.forward_passes


def test_measure_speedup_reports_grounded_and_ungrounded_rates(model_and_params):
    model, params = model_and_params
    rng = np.random.default_rng(3)
    inputs = [rng.integers(2, CONFIG.vocab_size, 10) for _ in range(2)]
    result = reference_decoding.measure_speedup(model, params, inputs, max_decode_length=12)
    assert result["tokens"] > 0
    assert result["grounded_acceptance"] > 0
    assert result["greedy_tokens_per_second"] > 0 and result["grounded_speedup"] > 0
