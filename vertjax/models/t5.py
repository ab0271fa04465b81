"""T5 v1.1 encoder-decoder in Flax with T5X parameter names and logical axes.

Parameters are named as in T5X (`encoder/layers_0/attention/query/kernel`, `token_embedder/embedding`,
`decoder/logits_dense/kernel`, ...), so T5X checkpoints, partitioning rules and HF conversions carry
over. Packed examples are supported through segment ids: attention never crosses a segment, and the
relative position biases are offset-invariant, so `*_positions` need not be consulted. With
`scan_layers` each stack's layers are one `nn.scan` and their params stacked under `<stack>/layers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vertjax import errors
from vertjax.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Hyper-parameters of a T5 v1.1 model (field names follow T5X's `network.T5Config`)."""

    vocab_size: int = 32128
    emb_dim: int = 512
    num_heads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    head_dim: int = 64
    mlp_dim: int = 1024
    mlp_activations: Sequence[str] = ("gelu", "linear")
    dropout_rate: float = 0.0
    dtype: Any = "float32"
    logits_via_embedding: bool = False
    float32_attention_logits: bool = True
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    # Rematerialisation of each layer in the backward pass (T5X/MaxText's `remat_policy`): "none"
    # keeps every activation, "minimal" keeps the weight matmuls' outputs and recomputes the rest,
    # "full" keeps only the layer inputs. Changes memory and speed, never values or params.
    remat_policy: str = "none"
    # Run each layer stack as one `nn.scan` over stacked params (T5X/MaxText's `scan_layers`): one
    # compiled layer instead of N, so compile time and program size stop growing with depth. The
    # params then live under `<stack>/layers` with a leading "layers" axis instead of
    # `<stack>/layers_<i>`; `models/scan_layout.py` converts checkpoints between the two layouts.
    scan_layers: bool = False

    def __post_init__(self) -> None:
        """`ConfigError` naming the binding for values gin passes through that the model rejects."""
        unknown = [a for a in self.mlp_activations if a not in layers.MLP_ACTIVATIONS]
        if unknown or not self.mlp_activations:
            raise errors.ConfigError(
                f"t5.T5Config.mlp_activations = {tuple(self.mlp_activations)!r}: choose one or more"
                f" of {', '.join(layers.MLP_ACTIVATIONS)}"
            )
        if self.remat_policy not in REMAT_POLICIES:
            raise errors.ConfigError(
                f"t5.T5Config.remat_policy = {self.remat_policy!r}: choose one of"
                f" {', '.join(REMAT_POLICIES)}"
            )
        if not isinstance(self.scan_layers, bool | np.bool_):
            raise errors.ConfigError(
                f"t5.T5Config.scan_layers = {self.scan_layers!r}: must be True or False"
            )
        if not 0.0 <= self.dropout_rate < 1.0:
            raise errors.ConfigError(
                f"t5.T5Config.dropout_rate = {self.dropout_rate!r}: must be in [0, 1)"
            )

    @property
    def activation_dtype(self) -> Any:
        return jnp.dtype(self.dtype)

    def param_mismatches(self, other: T5Config) -> dict[str, tuple[Any, Any]]:
        """`{field: (mine, other's)}` for the fields that fix the parameter tree and its shapes.

        Only these must agree for `other`'s checkpoint to start this model: T5X fine-tunes with
        dropout 0.1 from a checkpoint pretrained without, or in bfloat16 from a float32 one.
        """
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in PARAM_FIELDS
            if _normalized(getattr(self, name)) != _normalized(getattr(other, name))
        }


# What each `remat_policy` saves for the backward pass (None: no rematerialisation).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def _layer_class(
    cls: type[nn.Module], config: T5Config, static_argnums: tuple[int, ...], *, remat: bool = True
):
    """`cls`, or `cls` rematerialised under `config.remat_policy` (same params, same names)."""
    if config.remat_policy == "none" or not remat:
        return cls
    return nn.remat(cls, policy=REMAT_POLICIES[config.remat_policy], static_argnums=static_argnums)


# The logical axis of the stacked layer params when `scan_layers` is on (the partitioning rules
# replicate it, so every mesh gin works with either layout).
LAYERS_AXIS = "layers"


def _run_layers(
    cls: type[nn.Module],
    config: T5Config,
    num_layers: int,
    x: Array,
    *args: Any,
    static_argnums: tuple[int, ...],
    remat: bool = True,
) -> Array:
    """`x` through `num_layers` layers of `cls(config)` called as `layer(x, *args)`.

    Unscanned: a Python loop of modules named `layers_<i>`. Scanned: one `nn.scan` module named
    `layers` whose params (and decoding cache) are stacked over a leading "layers" axis (axis 1
    of the cache, so its batch axis stays first for beam tiling); the layer (rematerialised under
    `remat_policy`) is the scan body, and each layer draws its own init and dropout keys.
    """
    layer = _layer_class(cls, config, static_argnums, remat=remat)
    if not config.scan_layers:
        for i in range(num_layers):
            x = layer(config, name=f"layers_{i}")(x, *args)
        return x
    scanned = nn.scan(
        layer,
        variable_axes={"params": 0, "cache": 1},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast,) * len(args),
        length=num_layers,
        metadata_params={nn.PARTITION_NAME: LAYERS_AXIS},
    )
    x, _ = scanned(config, name=LAYERS_AXIS)(x, *args)
    return x


# `T5Config` fields that determine the parameters' names and shapes (the activations name the MLP
# input kernels `wi_0`, `wi_1`, ...; `logits_via_embedding` removes `logits_dense`).
PARAM_FIELDS = (
    "vocab_size",
    "emb_dim",
    "num_heads",
    "head_dim",
    "num_encoder_layers",
    "num_decoder_layers",
    "mlp_dim",
    "mlp_activations",
    "logits_via_embedding",
    "relative_attention_num_buckets",
)


def _normalized(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def tiny_config(vocab_size: int) -> T5Config:
    """The tiny T5 of the demo and tests (= models/t5_1_1/tiny.gin): 3+3 layers, d 128."""
    return T5Config(
        vocab_size=vocab_size,
        emb_dim=128,
        num_heads=4,
        head_dim=32,
        mlp_dim=384,
        num_encoder_layers=3,
        num_decoder_layers=3,
    )


def _attention(cfg: T5Config, name: str) -> layers.MultiHeadAttention:
    return layers.MultiHeadAttention(
        num_heads=cfg.num_heads,
        head_dim=cfg.head_dim,
        dtype=cfg.activation_dtype,
        dropout_rate=cfg.dropout_rate,
        float32_logits=cfg.float32_attention_logits,
        name=name,
    )


def _norm(cfg: T5Config, name: str) -> layers.RMSNorm:
    return layers.RMSNorm(epsilon=cfg.layer_norm_epsilon, dtype=cfg.activation_dtype, name=name)


def _mlp(cfg: T5Config) -> layers.GatedMlp:
    return layers.GatedMlp(
        mlp_dim=cfg.mlp_dim,
        activations=tuple(cfg.mlp_activations),
        dtype=cfg.activation_dtype,
        dropout_rate=cfg.dropout_rate,
        name="mlp",
    )


def _layer_output(cfg: T5Config, x: Array) -> Any:
    """A layer's output: `x`, or `(x, None)` (carry, no per-layer output) as `nn.scan` wants."""
    return (x, None) if cfg.scan_layers else x


class _Dropout(nn.Module):
    rate: float

    @nn.compact
    def __call__(self, x: Array, *, enable_dropout: bool) -> Array:
        if not enable_dropout or self.rate == 0.0:
            return x
        return nn.Dropout(self.rate, broadcast_dims=(-2,))(x, deterministic=False)


class EncoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: Array, bias: Array, enable_dropout: bool) -> Array:
        cfg = self.config
        drop = _Dropout(cfg.dropout_rate)
        y = _norm(cfg, "pre_attention_layer_norm")(x)
        y = _attention(cfg, "attention")(y, y, bias, enable_dropout=enable_dropout)
        x = x + drop(y, enable_dropout=enable_dropout)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, enable_dropout=enable_dropout)
        x = x + drop(y, enable_dropout=enable_dropout)
        return _layer_output(cfg, layers.constrain(x, ("batch", "length", "embed")))


class DecoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(
        self,
        x: Array,
        encoded: Array,
        self_bias: Array,
        cross_bias: Array,
        enable_dropout: bool,
        decode: bool,
        cache_index: Array | None,
    ) -> Array:
        cfg = self.config
        drop = _Dropout(cfg.dropout_rate)
        y = _norm(cfg, "pre_self_attention_layer_norm")(x)
        y = _attention(cfg, "self_attention")(
            y,
            y,
            self_bias,
            enable_dropout=enable_dropout,
            decode=decode,
            cache_index=cache_index,
            cache_kv=True,
        )
        x = x + drop(y, enable_dropout=enable_dropout)
        y = _norm(cfg, "pre_cross_attention_layer_norm")(x)
        y = _attention(cfg, "encoder_decoder_attention")(
            y,
            encoded,
            cross_bias,
            enable_dropout=enable_dropout,
            decode=decode,
        )
        x = x + drop(y, enable_dropout=enable_dropout)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, enable_dropout=enable_dropout)
        x = x + drop(y, enable_dropout=enable_dropout)
        return _layer_output(cfg, layers.constrain(x, ("batch", "length", "embed")))


class Encoder(nn.Module):
    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(
        self, tokens: Array, segment_ids: Array | None = None, *, enable_dropout: bool
    ) -> Array:
        cfg = self.config
        length = tokens.shape[1]
        x = self.shared_embedding(tokens.astype(jnp.int32))
        x = _Dropout(cfg.dropout_rate)(x, enable_dropout=enable_dropout)
        x = layers.constrain(x, ("batch", "length", "embed"))
        valid = tokens > 0
        mask = layers.make_attention_mask(
            valid, valid, query_segments=segment_ids, key_segments=segment_ids
        )
        bias = layers.attention_mask_bias(mask, jnp.float32) + self._relpos()(
            length, length, bidirectional=True
        )
        x = _run_layers(
            EncoderLayer,
            cfg,
            cfg.num_encoder_layers,
            x,
            bias,
            enable_dropout,
            static_argnums=(3,),  # enable_dropout
        )
        x = _norm(cfg, "encoder_norm")(x)
        return _Dropout(cfg.dropout_rate)(x, enable_dropout=enable_dropout)

    def _relpos(self) -> layers.RelativePositionBiases:
        cfg = self.config
        return layers.RelativePositionBiases(
            num_buckets=cfg.relative_attention_num_buckets,
            max_distance=cfg.relative_attention_max_distance,
            num_heads=cfg.num_heads,
            dtype=jnp.float32,
            name="relpos_bias",
        )


class Decoder(nn.Module):
    """T5 decoder. With `decode=True`, `decoder_input_tokens` holds the next token(s) and the
    decoder-level `cache_index` says at which position they sit (the caller may rewind it)."""

    config: T5Config
    shared_embedding: nn.Module

    @nn.compact
    def __call__(
        self,
        encoded: Array,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array | None = None,
        encoder_segment_ids: Array | None = None,
        decoder_segment_ids: Array | None = None,
        *,
        enable_dropout: bool,
        decode: bool = False,
        max_decode_length: int | None = None,
    ) -> Array:
        cfg = self.config
        batch, length = decoder_input_tokens.shape
        relpos = layers.RelativePositionBiases(
            num_buckets=cfg.relative_attention_num_buckets,
            max_distance=cfg.relative_attention_max_distance,
            num_heads=cfg.num_heads,
            dtype=jnp.float32,
            name="relpos_bias",
        )
        cache_index = None
        if decode and self.has_variable("cache", "cache_index"):
            index_var = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
            cache_index = index_var.value
            index_var.value = cache_index + length
            if max_decode_length is None:
                raise ValueError("decode=True needs max_decode_length")
            self_bias, cross_bias = self._decode_biases(
                relpos, encoder_input_tokens, cache_index, length, max_decode_length
            )
        else:
            if decode:  # the cache-sizing call: decoder inputs span the full decode length
                self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
            target_valid = (
                decoder_target_tokens > 0
                if decoder_target_tokens is not None
                else jnp.ones((batch, length), bool)
            )
            self_mask = layers.make_attention_mask(
                target_valid,
                target_valid,
                query_segments=decoder_segment_ids,
                key_segments=decoder_segment_ids,
                causal=True,
            )
            cross_mask = layers.make_attention_mask(
                target_valid,
                encoder_input_tokens > 0,
                query_segments=decoder_segment_ids,
                key_segments=encoder_segment_ids,
            )
            self_bias = layers.attention_mask_bias(self_mask, jnp.float32) + relpos(
                length, length, bidirectional=False
            )
            cross_bias = layers.attention_mask_bias(cross_mask, jnp.float32)

        y = self.shared_embedding(decoder_input_tokens.astype(jnp.int32))
        y = _Dropout(cfg.dropout_rate)(y, enable_dropout=enable_dropout)
        y = layers.constrain(y, ("batch", "length", "embed"))
        y = _run_layers(
            DecoderLayer,
            cfg,
            cfg.num_decoder_layers,
            y,
            encoded,
            self_bias,
            cross_bias,
            enable_dropout,
            decode,
            cache_index,
            static_argnums=(5, 6),  # enable_dropout, decode
            # Decoding keeps no activations for a backward pass: remat only matters in training.
            remat=not decode,
        )
        y = _norm(cfg, "decoder_norm")(y)
        y = _Dropout(cfg.dropout_rate)(y, enable_dropout=enable_dropout)
        if cfg.logits_via_embedding:
            logits = self.shared_embedding.attend(y) / jnp.sqrt(y.shape[-1]).astype(jnp.float32)
        else:
            logits = layers.Dense(
                cfg.vocab_size, ("embed", "vocab"), dtype=jnp.float32, name="logits_dense"
            )(y)
        return layers.constrain(logits, ("batch", "length", "vocab"))

    def _decode_biases(self, relpos, encoder_input_tokens, cache_index, length, max_len):
        """Biases for `length` new queries at `cache_index..` against the whole key cache."""
        rows = relpos(length, max_len, bidirectional=False, query_offset=cache_index)
        query_pos = cache_index + jnp.arange(length)[:, None]
        causal = jnp.arange(max_len)[None, :] <= query_pos  # [length, max]
        self_bias = rows + layers.attention_mask_bias(causal[None, None], jnp.float32)
        key_valid = (encoder_input_tokens > 0)[:, None, None, :]
        cross_bias = layers.attention_mask_bias(key_valid, jnp.float32)
        return self_bias, cross_bias


class Transformer(nn.Module):
    """The T5 encoder-decoder with T5X's call signature; `encode`/`decode` for retrieval/decoding."""

    config: T5Config

    def setup(self) -> None:
        cfg = self.config
        self.token_embedder = layers.Embed(
            num_embeddings=cfg.vocab_size, features=cfg.emb_dim, dtype=cfg.activation_dtype
        )
        self.encoder = Encoder(cfg, shared_embedding=self.token_embedder)
        self.decoder = Decoder(cfg, shared_embedding=self.token_embedder)

    def encode(
        self,
        encoder_input_tokens: Array,
        encoder_segment_ids: Array | None = None,
        encoder_positions: Array | None = None,
        *,
        enable_dropout: bool = True,
    ) -> Array:
        """Encoder hidden states `[batch, length, emb_dim]` (final RMSNorm applied)."""
        del encoder_positions  # relative biases are offset-invariant within a segment
        return self.encoder(
            encoder_input_tokens, encoder_segment_ids, enable_dropout=enable_dropout
        )

    def decode(
        self,
        encoded: Array,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array | None = None,
        encoder_segment_ids: Array | None = None,
        decoder_segment_ids: Array | None = None,
        decoder_positions: Array | None = None,
        *,
        enable_dropout: bool = True,
        decode: bool = False,
        max_decode_length: int | None = None,
    ) -> Array:
        """Decoder logits `[batch, length, vocab]` (float32)."""
        del decoder_positions
        return self.decoder(
            encoded,
            encoder_input_tokens,
            decoder_input_tokens,
            decoder_target_tokens,
            encoder_segment_ids,
            decoder_segment_ids,
            enable_dropout=enable_dropout,
            decode=decode,
            max_decode_length=max_decode_length,
        )

    def __call__(
        self,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array,
        encoder_segment_ids: Array | None = None,
        decoder_segment_ids: Array | None = None,
        encoder_positions: Array | None = None,
        decoder_positions: Array | None = None,
        *,
        enable_dropout: bool = True,
        decode: bool = False,
    ) -> Array:
        encoded = self.encode(
            encoder_input_tokens,
            encoder_segment_ids,
            encoder_positions,
            enable_dropout=enable_dropout,
        )
        return self.decode(
            encoded,
            encoder_input_tokens,
            decoder_input_tokens,
            decoder_target_tokens,
            encoder_segment_ids,
            decoder_segment_ids,
            decoder_positions,
            enable_dropout=enable_dropout,
            decode=decode,
            max_decode_length=decoder_input_tokens.shape[1] if decode else None,
        )


def count_params(params: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
