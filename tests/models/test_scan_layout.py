"""`scan_layers`: the scanned T5 computes what the unscanned one does from the same weights, and
`scan_layout` moves params between the two layouts exactly."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec

from vertjax import errors
from vertjax.models import decoding, encoder_decoder, nli_classifier, scan_layout, t5

TINY = t5.T5Config(
    vocab_size=64,
    emb_dim=16,
    num_heads=4,
    head_dim=4,
    mlp_dim=24,
    num_encoder_layers=3,
    num_decoder_layers=2,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
)
SCANNED = dataclasses.replace(TINY, scan_layers=True)


def _params():
    return encoder_decoder.EncoderDecoderModel(TINY).init_params(jax.random.key(0))


def _batch():
    rng = np.random.default_rng(1)
    inputs = rng.integers(2, TINY.vocab_size, (2, 9), dtype=np.int32)
    inputs[1, 6:] = 0  # padding
    targets = rng.integers(2, TINY.vocab_size, (2, 5), dtype=np.int32)
    decoder_inputs = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": inputs,
        "decoder_input_tokens": decoder_inputs,
        "decoder_target_tokens": targets,
    }


def test_layouts_convert_both_ways_exactly_and_match_the_scanned_model():
    params = _params()
    scanned = scan_layout.to_scanned(params)
    abstract = encoder_decoder.abstract_params(SCANNED)
    assert jax.tree.structure(scanned) == jax.tree.structure(abstract)
    for got, want in zip(jax.tree.leaves(scanned), jax.tree.leaves(abstract), strict=True):
        assert got.shape == want.shape
    query = scanned["encoder"]["layers"]["attention"]["query"]["kernel"]
    np.testing.assert_array_equal(
        query[2], params["encoder"]["layers_2"]["attention"]["query"]["kernel"]
    )
    assert (scan_layout.is_scanned(params), scan_layout.is_scanned(scanned)) == (False, True)
    back = scan_layout.to_unscanned(scanned)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    # to_layout is the identity on a tree already in the asked layout
    assert scan_layout.to_layout(params, False) is params
    assert scan_layout.to_layout(scanned, True) is scanned


def test_stacked_params_lead_with_the_layers_logical_axis():
    axes = traverse_util.flatten_dict(encoder_decoder.logical_param_axes(SCANNED))
    assert axes[("encoder", "layers", "attention", "query", "kernel")] == PartitionSpec(
        "layers", "embed", "joined_kv"
    )
    assert axes[("decoder", "layers", "pre_mlp_layer_norm", "scale")] == PartitionSpec(
        "layers", "embed"
    )
    # shared, unstacked params keep their axes
    assert axes[("token_embedder", "embedding")] == PartitionSpec("vocab", "embed")


@pytest.mark.parametrize("remat_policy", ["none", "full"])
def test_scanned_loss_and_gradients_equal_the_unscanned_ones(remat_policy):
    """Same weights, dropout off: loss within 1e-5 and gradients equal after layout conversion
    (with remat inside the scan body too)."""
    params, batch = _params(), _batch()

    def loss_and_grads(config, p):
        model = encoder_decoder.EncoderDecoderModel(config)
        (loss, _), grads = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))(p, batch)
        return float(loss), grads

    loss, grads = loss_and_grads(TINY, params)
    scanned_config = dataclasses.replace(SCANNED, remat_policy=remat_policy)
    scan_loss, scan_grads = loss_and_grads(scanned_config, scan_layout.to_scanned(params))
    assert scan_loss == pytest.approx(loss, abs=1e-5)
    unscanned_grads = scan_layout.to_unscanned(scan_grads)
    assert jax.tree.structure(unscanned_grads) == jax.tree.structure(grads)
    for got, want in zip(jax.tree.leaves(unscanned_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-4)


def test_scanned_layers_draw_distinct_dropout_masks():
    """split_rngs: each scanned layer gets its own dropout key, so with dropout on the scanned
    model's loss is a fresh draw, not one mask repeated (and still deterministic per key)."""
    config = dataclasses.replace(SCANNED, dropout_rate=0.3)
    model = encoder_decoder.EncoderDecoderModel(config)
    params = scan_layout.to_scanned(_params())
    loss = jax.jit(lambda p, k: model.loss_fn(p, _batch(), dropout_rng=k)[0])
    assert float(loss(params, jax.random.key(1))) == float(loss(params, jax.random.key(1)))
    assert float(loss(params, jax.random.key(1))) != float(loss(params, jax.random.key(2)))
    init = encoder_decoder.EncoderDecoderModel(config).init_params(jax.random.key(0))
    kernels = np.asarray(init["encoder"]["layers"]["attention"]["query"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])  # split_rngs params: layers init apart


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_decoding_with_the_scanned_cache_gives_the_same_tokens(method):
    params, inputs = _params(), _batch()["encoder_input_tokens"]
    plain = decoding.decode_batch(
        encoder_decoder.EncoderDecoderModel(TINY),
        params,
        inputs,
        max_decode_length=7,
        method=method,
        num_beams=3,
        eos_id=1,
    )
    scanned = decoding.decode_batch(
        encoder_decoder.EncoderDecoderModel(SCANNED),
        scan_layout.to_scanned(params),
        inputs,
        max_decode_length=7,
        method=method,
        num_beams=3,
        eos_id=1,
    )
    np.testing.assert_array_equal(np.asarray(scanned.tokens), np.asarray(plain.tokens))
    np.testing.assert_allclose(np.asarray(scanned.scores), np.asarray(plain.scores), atol=1e-5)


def test_scanned_cache_keeps_the_batch_axis_first():
    """Beam tiling and gathering index axis 0 of every cache leaf: the scanned stack puts its
    layer axis second."""
    model = encoder_decoder.EncoderDecoderModel(SCANNED)
    params = scan_layout.to_scanned(_params())
    inputs = _batch()["encoder_input_tokens"]
    cache = decoding.init_cache(
        model,
        params,
        encoded=decoding.encode(model, params, inputs),
        encoder_input_tokens=inputs,
        max_decode_length=7,
    )
    key = cache["decoder"]["layers"]["self_attention"]["cached_key"]
    assert key.shape == (2, SCANNED.num_decoder_layers, 7, TINY.num_heads, TINY.head_dim)


def test_scan_layers_is_layout_not_a_shape_mismatch():
    assert TINY.param_mismatches(SCANNED) == {}
    assert "scan_layers" not in t5.PARAM_FIELDS


def test_a_scan_layers_that_is_not_a_bool_is_a_config_error():
    # e.g. --gin.SCAN_LAYERS="'false'": a non-empty string would otherwise switch scanning on
    with pytest.raises(errors.ConfigError, match="scan_layers = 'false': must be True or False"):
        dataclasses.replace(TINY, scan_layers="false")


def test_the_nli_classifier_runs_scanned_from_converted_weights():
    """Encoder-only models (classifier, retriever towers) build the same scanned encoder."""
    plain = nli_classifier.NLIClassifierModel(TINY, hidden_dim=8)
    scanned = nli_classifier.NLIClassifierModel(SCANNED, hidden_dim=8)
    params = plain.init_params(jax.random.key(0))
    tokens = _batch()["encoder_input_tokens"]
    want = plain.logits(params, tokens, tokens, enable_dropout=False)
    got = scanned.logits(scan_layout.to_scanned(params), tokens, tokens, enable_dropout=False)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
