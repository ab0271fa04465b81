"""Transformer building blocks with T5X parameter names and logical axis annotations.

Every parameter is created with `nn.with_logical_partitioning`, so `nn.get_partition_spec` on the
abstract variables yields the logical axes that `vertjax.train.partitioning` maps onto a mesh.
Parameters live in float32; computation runs in the configured `dtype` (float32 or bfloat16).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
DType = Any
Initializer = Callable[..., Array]

NEG_INF = -1e10

default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def constrain(x: Array, axes: Sequence[str | None]) -> Array:
    """Annotates an activation with logical axes (a no-op outside a mesh + axis-rules context)."""
    return nn.with_logical_constraint(x, tuple(axes))


class Dense(nn.Module):
    """A bias-free dense layer over the last axis; kernel `[in, out]` with logical `kernel_axes`."""

    features: int
    kernel_axes: tuple[str, str]
    dtype: DType = jnp.float32
    kernel_init: Initializer = default_kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
            (x.shape[-1], self.features),
            jnp.float32,
        )
        # One flat [tokens, in] matrix: the kernel's gradient then contracts a single axis. With
        # [batch, length, in] it contracts two, and XLA:CPU first copies the [batch, length, out]
        # cotangent into a transposed layout (2x slower MLP backward; benchmarks/README.md).
        flat = x.reshape(-1, x.shape[-1]).astype(self.dtype)
        y = jnp.dot(flat, kernel.astype(self.dtype))
        return y.reshape(x.shape[:-1] + (self.features,))


class RMSNorm(nn.Module):
    """T5 layer norm: scale only, no mean subtraction, no bias; statistics in float32."""

    epsilon: float = 1e-6
    dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(variance + self.epsilon)
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (x.shape[-1],),
            jnp.float32,
        )
        return (y * scale).astype(self.dtype)


class Embed(nn.Module):
    """Token embedding `[vocab, embed]`; `attend` gives logits against the same table."""

    num_embeddings: int
    features: int
    dtype: DType = jnp.float32

    def setup(self) -> None:
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
            (self.num_embeddings, self.features),
            jnp.float32,
        )

    def __call__(self, tokens: Array) -> Array:
        return jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)

    def attend(self, query: Array) -> Array:
        return jnp.dot(query.astype(jnp.float32), self.embedding.T)


def relative_position_bucket(
    relative_position: np.ndarray, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """Mesh-TF/HF T5 bucketing of `memory_position - query_position` (exact small, log large).

    Computed in numpy float32 so the buckets match the original T5 (and HF) bit for bit.
    """
    ret = np.zeros_like(relative_position)
    n = relative_position
    if bidirectional:
        num_buckets //= 2
        ret += (n > 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = -np.minimum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    scaled = np.log(np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)) / np.float32(
        math.log(max_distance / max_exact)
    )
    val_if_large = max_exact + (scaled * np.float32(num_buckets - max_exact)).astype(np.int32)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    return ret + np.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
    """Per-head learned bias by relative-position bucket, shared by all layers of a stack."""

    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: DType = jnp.float32

    @nn.compact
    def __call__(
        self, q_len: int, k_len: int, *, bidirectional: bool, query_offset: Array | None = None
    ) -> Array:
        """Biases `[1, heads, q_len, k_len]`; queries sit at `query_offset..` (default 0).

        With a traced `query_offset` (incremental decoding) `k_len` bounds the query positions too.
        """
        rows = k_len if query_offset is not None else q_len
        context = np.arange(rows, dtype=np.int32)[:, None]
        memory = np.arange(k_len, dtype=np.int32)[None, :]
        buckets = jnp.asarray(
            relative_position_bucket(
                memory - context,
                bidirectional=bidirectional,
                num_buckets=self.num_buckets,
                max_distance=self.max_distance,
            )
        )
        if query_offset is not None:
            buckets = jax.lax.dynamic_slice_in_dim(buckets, query_offset, q_len, axis=0)
        table = self.param(
            "rel_embedding",
            nn.with_logical_partitioning(
                nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                ("heads", "relpos_buckets"),
            ),
            (self.num_heads, self.num_buckets),
            jnp.float32,
        )
        values = jnp.take(table, buckets, axis=1)  # [heads, q, k]
        return values[None].astype(self.dtype)


class MultiHeadAttention(nn.Module):
    """T5 attention (no 1/sqrt(d) at run time: it is folded into the query init).

    With `decode=True` it keeps a key/value cache of the full decode length: `cache_index` says
    where the incoming (one or more) query tokens go, so several tokens can be verified at once and
    the cache can be rewound by the caller (used by reference/speculative decoding).
    """

    num_heads: int
    head_dim: int
    dtype: DType = jnp.float32
    dropout_rate: float = 0.0
    float32_logits: bool = True

    @nn.compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array,
        bias: Array | None,
        *,
        enable_dropout: bool,
        decode: bool = False,
        cache_index: Array | None = None,
        cache_kv: bool = False,
    ) -> Array:
        inner = self.num_heads * self.head_dim
        query_init = lambda *a: default_kernel_init(*a) / math.sqrt(self.head_dim)  # noqa: E731
        dense = functools.partial(
            Dense, features=inner, kernel_axes=("embed", "joined_kv"), dtype=self.dtype
        )
        batch, q_len = inputs_q.shape[:2]
        split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))  # noqa: E731
        query = split(dense(kernel_init=query_init, name="query")(inputs_q))
        query = constrain(query, ("batch", "length", "heads", "kv"))

        if decode and cache_kv:
            key, value = self._cached_kv(inputs_kv, dense, split, cache_index)
        elif decode:
            key, value = self._cached_cross_kv(inputs_kv, dense, split)
        else:
            key = split(dense(name="key")(inputs_kv))
            value = split(dense(name="value")(inputs_kv))
        key = constrain(key, ("batch", "length", "heads", "kv"))
        value = constrain(value, ("batch", "length", "heads", "kv"))

        logits_dtype = jnp.float32 if self.float32_logits else self.dtype
        multiplier = None
        if enable_dropout and self.dropout_rate > 0.0:
            # T5X drops whole keys per head (broadcast over queries): the kept/scaled [b, h, 1, k].
            keys_shape = (batch, self.num_heads, 1, key.shape[1])
            multiplier = nn.Dropout(self.dropout_rate, broadcast_dims=(2,))(
                jnp.ones(keys_shape, self.dtype), deterministic=False
            )
        out = dot_product_attention(
            query.astype(logits_dtype),
            key.astype(logits_dtype),
            value.astype(self.dtype),
            None if bias is None else bias.astype(logits_dtype),
            multiplier,
        )
        out = out.transpose(0, 2, 1, 3).reshape(batch, q_len, inner)
        out = constrain(out, ("batch", "length", "joined_kv"))
        return Dense(
            features=inputs_q.shape[-1],
            kernel_axes=("joined_kv", "embed"),
            dtype=self.dtype,
            name="out",
        )(out)

    def _cached_kv(self, inputs_kv, dense, split, cache_index):
        """Self-attention cache: writes this call's keys/values at `cache_index`."""
        key = split(dense(name="key")(inputs_kv))
        value = split(dense(name="value")(inputs_kv))
        initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        if not initialized:  # shape-only pass that sizes the cache to the full decode length
            return key, value
        start = (0, cache_index, 0, 0)
        cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, start)
        cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, start)
        return cached_key.value, cached_value.value

    def _cached_cross_kv(self, encoded, dense, split):
        """Cross-attention cache: the cache-initialising call projects the encoder output once."""
        if self.has_variable("cache", "cross_key"):
            return self.get_variable("cache", "cross_key"), self.get_variable(
                "cache", "cross_value"
            )
        key = split(dense(name="key")(encoded))
        value = split(dense(name="value")(encoded))
        self.variable("cache", "cross_key", lambda: key)
        self.variable("cache", "cross_value", lambda: value)
        return key, value


@jax.custom_vjp
def dot_product_attention(
    query: Array, key: Array, value: Array, bias: Array | None, multiplier: Array | None
) -> Array:
    """`softmax(q·kᵀ + bias) · multiplier · v` → `[batch, heads, q, head_dim]`, heads-major.

    query/key `[b, len, h, d]` in the logits dtype, value `[b, len, h, d]` in the compute dtype,
    bias broadcastable to `[b, h, q, k]`, multiplier (dropout's kept/scaled keys) to `[b, h, 1, k]`.
    The backward pass is written out (`_attention_bwd`): JAX's derivative of softmax reduces
    `dp·p` over the `[b, h, q, k]` scores and keeps the softmax's sum broadcast to that size, where
    FlashAttention's `rowsum(dout·out)` needs only `[b, h, q, d]`; 4% of the train step on CPU.
    """
    return _attention_fwd(query, key, value, bias, multiplier)[0]


def _attention_fwd(query, key, value, bias, multiplier):
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key)
    if bias is not None:
        logits = logits + bias
    probs = jax.nn.softmax(logits, axis=-1)
    weights = probs.astype(value.dtype)
    if multiplier is not None:
        weights = weights * multiplier
    # Heads-major product (the caller transposes): XLA:CPU runs this dot 2.2x faster than one that
    # writes [batch, q, heads, kv] directly (benchmarks/README.md, passage encoding).
    out = jnp.einsum("bhqk,bkhd->bhqd", weights, value)
    return out, (query, key, value, bias, multiplier, probs, out)


def _attention_bwd(residuals, d_out):
    query, key, value, bias, multiplier, probs, out = residuals
    weights = probs.astype(value.dtype)
    if multiplier is not None:
        weights = weights * multiplier
    d_value = jnp.einsum("bhqk,bhqd->bkhd", weights, d_out)
    d_weights = jnp.einsum("bhqd,bkhd->bhqk", d_out, value)
    if multiplier is not None:
        d_weights = d_weights * multiplier
    # rowsum(d_probs * probs) == rowsum(d_out * out), dropout included.
    delta = jnp.sum(d_out.astype(probs.dtype) * out.astype(probs.dtype), -1)
    d_logits = probs * (d_weights.astype(probs.dtype) - delta[..., None])
    d_query = jnp.einsum("bhqk,bkhd->bqhd", d_logits, key)
    d_key = jnp.einsum("bhqk,bqhd->bkhd", d_logits, query)
    d_bias = None if bias is None else _sum_to_shape(d_logits, bias.shape)
    d_multiplier = None if multiplier is None else jnp.zeros_like(multiplier)
    return d_query, d_key, d_value, d_bias, d_multiplier


def _sum_to_shape(x: Array, shape: tuple[int, ...]) -> Array:
    """`x` summed over the axes that `shape` broadcasts (the gradient of a broadcast add)."""
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1
    )
    return x.sum(axes).reshape(shape) if axes else x


dot_product_attention.defvjp(_attention_fwd, _attention_bwd)


class GatedMlp(nn.Module):
    """T5 v1.1 gated MLP: `wo(act0(wi_0 x) * act1(wi_1 x))` (T5X names; one `wi` if ungated)."""

    mlp_dim: int
    activations: Sequence[str] = ("gelu", "linear")
    dtype: DType = jnp.float32
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: Array, *, enable_dropout: bool) -> Array:
        hidden = None
        for i, name in enumerate(self.activations):
            layer_name = "wi" if len(self.activations) == 1 else f"wi_{i}"
            h = Dense(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype, name=layer_name)(x)
            h = _activation(name)(h)
            hidden = h if hidden is None else hidden * h
        hidden = constrain(hidden, ("batch", "length", "mlp"))
        if enable_dropout and self.dropout_rate > 0.0:
            hidden = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(
                hidden, deterministic=False
            )
        return Dense(x.shape[-1], ("mlp", "embed"), dtype=self.dtype, name="wo")(hidden)


MLP_ACTIVATIONS = ("linear", "gelu", "gelu_exact", "relu", "silu")


def _activation(name: str) -> Callable[[Array], Array]:
    if name == "linear":
        return lambda x: x
    if name == "gelu":  # tanh approximation, as T5 v1.1 ("gelu_new" in HF)
        return functools.partial(jax.nn.gelu, approximate=True)
    if name == "gelu_exact":
        return functools.partial(jax.nn.gelu, approximate=False)
    if name == "relu":
        return jax.nn.relu
    if name == "silu":
        return jax.nn.silu
    raise ValueError(f"unknown MLP activation {name!r}")


def attention_mask_bias(mask: Array, dtype: DType) -> Array:
    """Boolean mask `[b, 1, q, k]` → additive bias (0 where attending, -1e10 elsewhere)."""
    return jnp.where(mask, 0.0, NEG_INF).astype(dtype)


def make_attention_mask(
    query_valid: Array,
    key_valid: Array,
    *,
    query_segments: Array | None = None,
    key_segments: Array | None = None,
    causal: bool = False,
) -> Array:
    """`[b, 1, q, k]` boolean mask from validity, packing segments and causality."""
    mask = query_valid[:, None, :, None] & key_valid[:, None, None, :]
    if query_segments is not None and key_segments is not None:
        mask &= query_segments[:, None, :, None] == key_segments[:, None, None, :]
    if causal:
        q_len, k_len = query_valid.shape[1], key_valid.shape[1]
        mask &= jnp.tril(jnp.ones((q_len, k_len), dtype=bool))[None, None]
    return mask
