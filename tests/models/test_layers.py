"""The attention core's hand-written backward pass against JAX's derivative of the plain formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vertjax.models import layers

B, Q, K, H, D = 2, 5, 7, 3, 4


def reference_attention(query, key, value, bias, multiplier):
    """The textbook formula, differentiated by JAX."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)
    if bias is not None:
        logits = logits + bias
    weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
    if multiplier is not None:
        weights = weights * multiplier
    return jnp.einsum("bhqk,bkhd->bhqd", weights, value)


def make_inputs(bias_shape, with_dropout, value_dtype=jnp.float32):
    keys = jax.random.split(jax.random.key(0), 6)
    query = jax.random.normal(keys[0], (B, Q, H, D))
    key = jax.random.normal(keys[1], (B, K, H, D))
    value = jax.random.normal(keys[2], (B, K, H, D)).astype(value_dtype)
    bias = None
    if bias_shape is not None:
        bias = jax.random.normal(keys[3], bias_shape)
        # Mask the last two keys of the first example, as padding does.
        bias = bias + jnp.where(jnp.arange(K) >= K - 2, layers.NEG_INF, 0.0) * (
            jnp.arange(bias_shape[0]) == 0
        ).reshape((-1,) + (1,) * (len(bias_shape) - 1))
    multiplier = None
    if with_dropout:
        keep = jax.random.bernoulli(keys[4], 0.7, (B, H, 1, K))
        multiplier = (keep / 0.7).astype(value_dtype)
    cotangent = jax.random.normal(keys[5], (B, H, Q, D)).astype(value_dtype)
    return query, key, value, bias, multiplier, cotangent


def value_and_grads(fn, query, key, value, bias, multiplier, cotangent):
    def loss(q, k, v, b):
        out = fn(q, k, v, b, multiplier)
        return jnp.sum(out.astype(jnp.float32) * cotangent.astype(jnp.float32))

    argnums = (0, 1, 2) if bias is None else (0, 1, 2, 3)
    out = fn(query, key, value, bias, multiplier)
    grads = jax.grad(loss, argnums=argnums)(query, key, value, bias)
    return out, grads


@pytest.mark.parametrize("bias_shape", [None, (1, H, Q, K), (B, 1, 1, K), (B, H, Q, K)])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_gradients_equal_autodiff_of_the_formula(bias_shape, with_dropout):
    inputs = make_inputs(bias_shape, with_dropout)
    out, grads = value_and_grads(jax.jit(layers.dot_product_attention), *inputs)
    ref_out, ref_grads = value_and_grads(reference_attention, *inputs)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    names = ("query", "key", "value", "bias")[: len(ref_grads)]
    for name, got, want in zip(names, grads, ref_grads, strict=True):
        assert got.shape == want.shape, name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_bfloat16_values_keep_their_dtype_and_match_the_formula():
    inputs = make_inputs((1, H, Q, K), with_dropout=True, value_dtype=jnp.bfloat16)
    out, grads = value_and_grads(layers.dot_product_attention, *inputs)
    ref_out, ref_grads = value_and_grads(reference_attention, *inputs)
    assert out.dtype == jnp.bfloat16 and grads[2].dtype == jnp.bfloat16
    assert grads[0].dtype == jnp.float32 and grads[3].dtype == jnp.float32
    np.testing.assert_allclose(out.astype(np.float32), ref_out.astype(np.float32), atol=2e-2)
    for got, want in zip(grads, ref_grads, strict=True):
        scale = float(jnp.max(jnp.abs(want.astype(jnp.float32))))
        np.testing.assert_allclose(
            got.astype(np.float32), want.astype(np.float32), atol=3e-2 * scale
        )


def test_fully_masked_rows_give_finite_gradients():
    query, key, value, _, _, cotangent = make_inputs(None, with_dropout=False)
    bias = jnp.full((B, 1, 1, K), layers.NEG_INF)  # every key masked: uniform weights, as softmax
    out, grads = value_and_grads(
        layers.dot_product_attention, query, key, value, bias, None, cotangent
    )
    np.testing.assert_allclose(out, reference_attention(query, key, value, bias, None), rtol=1e-5)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_attention_dropout_is_drawn_from_the_dropout_rng():
    """Dropout changes the output, the same rng gives the same output, and rate 0 changes nothing."""
    module = layers.MultiHeadAttention(num_heads=H, head_dim=D, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (B, K, H * D))
    params = module.init(jax.random.key(2), x, x, None, enable_dropout=False)
    rngs = {"dropout": jax.random.key(3)}
    dropped = module.apply(params, x, x, None, enable_dropout=True, rngs=rngs)
    kept = module.apply(params, x, x, None, enable_dropout=False)
    assert not np.allclose(dropped, kept)
    again = module.apply(params, x, x, None, enable_dropout=True, rngs=rngs)
    np.testing.assert_array_equal(dropped, again)
    no_rate = layers.MultiHeadAttention(num_heads=H, head_dim=D, dropout_rate=0.0)
    np.testing.assert_array_equal(
        no_rate.apply(params, x, x, None, enable_dropout=True, rngs=rngs), kept
    )
