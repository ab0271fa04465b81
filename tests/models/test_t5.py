"""Unit tests of the Flax T5: shapes, T5X parameter names, logical axes, packing, the decode cache
(one token and several tokens per step, and rewinding) and bfloat16 activations. Tiny dims only."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from jax.sharding import PartitionSpec

from vertjax import errors
from vertjax.models import encoder_decoder, t5

TINY = t5.T5Config(
    vocab_size=64,
    emb_dim=16,
    num_heads=4,
    head_dim=4,
    mlp_dim=24,
    num_encoder_layers=2,
    num_decoder_layers=2,
    relative_attention_num_buckets=8,
    relative_attention_max_distance=16,
)
LOGICAL_AXES = {"vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets"}


def t5x_param_names(*, layers: int, gated: bool, tied: bool) -> set[str]:
    """The parameter paths of a T5X `t5.1.1` checkpoint (T5X's `network.Transformer`)."""
    mlp = ["wi_0", "wi_1", "wo"] if gated else ["wi", "wo"]
    names = {"token_embedder/embedding", "encoder/relpos_bias/rel_embedding"}
    names |= {"encoder/encoder_norm/scale", "decoder/relpos_bias/rel_embedding"}
    names.add("decoder/decoder_norm/scale")
    if not tied:
        names.add("decoder/logits_dense/kernel")
    attention = ["query", "key", "value", "out"]
    for i in range(layers):
        enc, dec = f"encoder/layers_{i}", f"decoder/layers_{i}"
        names |= {f"{enc}/pre_attention_layer_norm/scale", f"{enc}/pre_mlp_layer_norm/scale"}
        names |= {f"{enc}/attention/{a}/kernel" for a in attention}
        names |= {f"{enc}/mlp/{w}/kernel" for w in mlp}
        names |= {
            f"{dec}/pre_self_attention_layer_norm/scale",
            f"{dec}/pre_cross_attention_layer_norm/scale",
            f"{dec}/pre_mlp_layer_norm/scale",
        }
        names |= {f"{dec}/self_attention/{a}/kernel" for a in attention}
        names |= {f"{dec}/encoder_decoder_attention/{a}/kernel" for a in attention}
        names |= {f"{dec}/mlp/{w}/kernel" for w in mlp}
    return names


@functools.cache
def tiny_params(config: t5.T5Config = TINY):
    return jax.jit(encoder_decoder.EncoderDecoderModel(config).init_params)(jax.random.key(0))


@functools.cache
def _jitted(config: t5.T5Config, method: str | None = None, **kwargs):
    """A jitted `Transformer(config).apply` (cached so each shape compiles once per session)."""
    apply = t5.Transformer(config).apply
    return jax.jit(functools.partial(apply, method=method, enable_dropout=False, **kwargs))


def forward(config: t5.T5Config, params, **batch) -> np.ndarray:
    inputs = {k: jnp.asarray(v) for k, v in batch.items()}
    return np.asarray(_jitted(config)({"params": params}, **inputs))


def shift_right(targets: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


def random_tokens(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(2, TINY.vocab_size, shape, dtype=np.int32)


@pytest.mark.parametrize(("activations", "tied"), [(("gelu", "linear"), False), (("relu",), True)])
def test_param_names_match_t5x(activations, tied):
    config = dataclasses.replace(TINY, mlp_activations=activations, logits_via_embedding=tied)
    params = encoder_decoder.abstract_params(config)
    names = set(traverse_util.flatten_dict(params, sep="/"))
    assert names == t5x_param_names(layers=2, gated=len(activations) > 1, tied=tied)


def test_param_and_output_shapes():
    params = traverse_util.flatten_dict(tiny_params(), sep="/")
    inner = TINY.num_heads * TINY.head_dim
    assert params["token_embedder/embedding"].shape == (64, 16)
    assert params["encoder/layers_0/attention/query/kernel"].shape == (16, inner)
    assert params["encoder/layers_1/attention/out/kernel"].shape == (inner, 16)
    assert params["decoder/layers_0/mlp/wi_1/kernel"].shape == (16, 24)
    assert params["decoder/layers_1/mlp/wo/kernel"].shape == (24, 16)
    assert params["decoder/relpos_bias/rel_embedding"].shape == (4, 8)
    assert params["decoder/logits_dense/kernel"].shape == (16, 64)
    assert all(p.dtype == jnp.float32 for p in params.values())

    enc, targets = random_tokens((2, 9), 0), random_tokens((2, 7), 1)
    logits = forward(
        TINY,
        tiny_params(),
        encoder_input_tokens=enc,
        decoder_input_tokens=shift_right(targets),
        decoder_target_tokens=targets,
    )
    assert logits.shape == (2, 7, 64) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    encoded = _jitted(TINY, "encode")({"params": tiny_params()}, jnp.asarray(enc))
    assert encoded.shape == (2, 9, 16)


def test_logical_axes_on_every_param():
    axes = traverse_util.flatten_dict(encoder_decoder.logical_param_axes(TINY), sep="/")
    shapes = traverse_util.flatten_dict(encoder_decoder.abstract_params(TINY), sep="/")
    assert set(axes) == set(shapes)
    for name, spec in axes.items():
        assert isinstance(spec, PartitionSpec), name
        assert len(spec) == len(shapes[name].shape), name
        assert set(spec) <= LOGICAL_AXES, (name, spec)
    assert axes["token_embedder/embedding"] == PartitionSpec("vocab", "embed")
    assert axes["encoder/layers_0/attention/query/kernel"] == PartitionSpec("embed", "joined_kv")
    assert axes["decoder/layers_1/self_attention/out/kernel"] == PartitionSpec("joined_kv", "embed")
    assert axes["encoder/layers_1/mlp/wi_0/kernel"] == PartitionSpec("embed", "mlp")
    assert axes["decoder/layers_0/mlp/wo/kernel"] == PartitionSpec("mlp", "embed")
    assert axes["encoder/relpos_bias/rel_embedding"] == PartitionSpec("heads", "relpos_buckets")
    assert axes["decoder/logits_dense/kernel"] == PartitionSpec("embed", "vocab")
    assert axes["encoder/encoder_norm/scale"] == PartitionSpec("embed")


def _pack(parts: list[np.ndarray], total: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenates 1-D token arrays and zero-pads to `total`; returns (tokens, segment ids)."""
    pad = total - sum(len(p) for p in parts)
    tokens = np.concatenate(parts + [np.zeros(pad, np.int32)])
    segments = np.concatenate(
        [np.full(len(p), i + 1) for i, p in enumerate(parts)] + [np.zeros(pad, int)]
    )
    return tokens, segments.astype(np.int32)


def test_packed_batch_matches_each_example_alone():
    """Row 0 packs examples (a, b), row 1 packs (b, a); each segment's logits equal the example's
    logits when it is alone in a (padded) row."""
    enc_len, dec_len = 9, 7
    sizes = [(4, 3), (3, 2)]  # (encoder, decoder) lengths of examples a and b
    enc = [random_tokens((1, e), 10 + i)[0] for i, (e, _) in enumerate(sizes)]
    tgt = [random_tokens((1, d), 20 + i)[0] for i, (_, d) in enumerate(sizes)]
    alone_enc = np.stack([_pack([e], enc_len)[0] for e in enc])
    alone_tgt = np.stack([_pack([t], dec_len)[0] for t in tgt])
    alone = forward(
        TINY,
        tiny_params(),
        encoder_input_tokens=alone_enc,
        decoder_input_tokens=shift_right(alone_tgt),
        decoder_target_tokens=alone_tgt,
    )
    orders = [(0, 1), (1, 0)]
    packed_enc = [_pack([enc[i] for i in order], enc_len) for order in orders]
    packed_tgt = [_pack([tgt[i] for i in order], dec_len) for order in orders]
    packed_in = [_pack([shift_right(tgt[i][None])[0] for i in order], dec_len) for order in orders]
    batch = {
        "encoder_input_tokens": np.stack([t for t, _ in packed_enc]),
        "decoder_input_tokens": np.stack([t for t, _ in packed_in]),
        "decoder_target_tokens": np.stack([t for t, _ in packed_tgt]),
        "encoder_segment_ids": np.stack([s for _, s in packed_enc]),
        "decoder_segment_ids": np.stack([s for _, s in packed_tgt]),
    }
    packed = forward(TINY, tiny_params(), **batch)
    for row, order in enumerate(orders):
        start = 0
        for i in order:
            n = sizes[i][1]
            got = packed[row, start : start + n]
            np.testing.assert_allclose(got, alone[i, :n], atol=1e-5, rtol=1e-5)
            start += n
    # One segment for everything: examples see each other, so the comparison above can fail.
    batch["encoder_segment_ids"] = (batch["encoder_input_tokens"] > 0).astype(np.int32)
    batch["decoder_segment_ids"] = (batch["decoder_target_tokens"] > 0).astype(np.int32)
    mixed = forward(TINY, tiny_params(), **batch)
    assert np.abs(mixed[0, 3:5] - alone[1, :2]).max() > 1e-3


class _Decoder:
    """Incremental decoding with the model's key/value cache (as a decoding loop drives it)."""

    def __init__(self, config: t5.T5Config, params, *, enc: np.ndarray, max_len: int):
        self.params, self.enc = params, jnp.asarray(enc)
        self.encoded = _jitted(config, "encode")({"params": params}, self.enc)
        self._decode = _jitted(
            config, "decode", decode=True, max_decode_length=max_len, mutable=("cache",)
        )
        sizing_tokens = jnp.zeros((enc.shape[0], max_len), jnp.int32)
        _, state = self._decode({"params": params}, self.encoded, self.enc, sizing_tokens)
        self.cache = state["cache"]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        variables = {"params": self.params, "cache": self.cache}
        logits, state = self._decode(variables, self.encoded, self.enc, jnp.asarray(tokens))
        self.cache = state["cache"]
        return np.asarray(logits)

    def rewind(self, index: int) -> None:
        self.cache = dict(self.cache, decoder=dict(self.cache["decoder"]))
        self.cache["decoder"]["cache_index"] = jnp.array(index, jnp.int32)


def _decode_setup(config: t5.T5Config, params, *, length: int = 7):
    enc = random_tokens((2, 9), 3)
    enc[1, 6:] = 0  # a padded encoder row: cross attention must mask it in the cache too
    targets = random_tokens((2, length), 4)
    full = forward(
        config,
        params,
        encoder_input_tokens=enc,
        decoder_input_tokens=shift_right(targets),
        decoder_target_tokens=targets,
    )
    return enc, targets, full


@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 3], [7]], ids=["one", "several", "all"])
def test_decode_cache_matches_full_forward(chunks):
    enc, targets, full = _decode_setup(TINY, tiny_params())
    dec_in = shift_right(targets)
    decoder = _Decoder(TINY, tiny_params(), enc=enc, max_len=dec_in.shape[1])
    start, pieces = 0, []
    for size in chunks:
        pieces.append(decoder.step(dec_in[:, start : start + size]))
        start += size
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5, rtol=1e-5)


def test_decode_cache_rewind():
    enc, targets, full = _decode_setup(TINY, tiny_params())
    dec_in = shift_right(targets)
    decoder = _Decoder(TINY, tiny_params(), enc=enc, max_len=dec_in.shape[1])
    decoder.step(dec_in[:, :3])
    decoder.step(random_tokens((2, 3), 99))  # rejected draft tokens at positions 3-5
    decoder.rewind(3)
    rest = [decoder.step(dec_in[:, 3:6]), decoder.step(dec_in[:, 6:])]
    np.testing.assert_allclose(np.concatenate(rest, axis=1), full[:, 3:], atol=1e-5, rtol=1e-5)


def test_bfloat16_activations():
    config = dataclasses.replace(TINY, dtype="bfloat16")
    params = tiny_params()  # parameters are float32 whatever the activation dtype
    enc, targets, full32 = _decode_setup(TINY, params)
    dec_in = shift_right(targets)
    logits = forward(
        config,
        params,
        encoder_input_tokens=enc,
        decoder_input_tokens=dec_in,
        decoder_target_tokens=targets,
    )
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    scale = np.abs(full32).max()
    assert np.abs(logits - full32).max() < 0.05 * scale
    assert (logits.argmax(-1) == full32.argmax(-1)).mean() > 0.9
    decoder = _Decoder(config, params, enc=enc, max_len=dec_in.shape[1])
    assert (
        decoder.cache["decoder"]["layers_0"]["self_attention"]["cached_key"].dtype == jnp.bfloat16
    )
    steps = np.concatenate([decoder.step(dec_in[:, i : i + 1]) for i in range(dec_in.shape[1])], 1)
    assert np.abs(steps - full32).max() < 0.05 * scale


def test_tiny_gin_matches_tiny_config():
    """models/t5_1_1/tiny.gin and `t5.tiny_config` describe the same model."""
    import gin

    from vertjax import gin_utils
    from vertjax.models import encoder_decoder

    gin_utils.parse_gin(
        gin_files=["models/t5_1_1/tiny.gin"], gin_bindings=["VOCAB_SIZE=2100", "DROPOUT_RATE=0.0"]
    )
    model = gin.get_configurable(encoder_decoder.EncoderDecoderModel)()
    assert model.config == t5.tiny_config(2100)


@pytest.mark.parametrize("policy", ["minimal", "full"])
def test_remat_policies_change_neither_params_nor_values(policy):
    remat = dataclasses.replace(TINY, remat_policy=policy, dropout_rate=0.1)
    plain = dataclasses.replace(TINY, dropout_rate=0.1)
    params = tiny_params()
    remat_params = encoder_decoder.EncoderDecoderModel(remat).init_params(jax.random.key(0))
    assert jax.tree.structure(remat_params) == jax.tree.structure(params)
    inputs, targets = random_tokens((2, 9), seed=1), random_tokens((2, 5), seed=2)
    batch = {
        "encoder_input_tokens": inputs,
        "decoder_input_tokens": shift_right(targets),
        "decoder_target_tokens": targets,
        "decoder_loss_weights": np.ones(targets.shape, np.float32),
    }

    def loss_and_grads(config):
        model = encoder_decoder.EncoderDecoderModel(config)
        grad_fn = jax.value_and_grad(model.loss_fn, has_aux=True)
        # dropout on: remat must replay the same dropout masks in the backward pass
        (loss, _), grads = jax.jit(grad_fn)(params, batch, dropout_rng=jax.random.key(3))
        return float(loss), grads

    loss, grads = loss_and_grads(plain)
    remat_loss, remat_grads = loss_and_grads(remat)
    assert remat_loss == pytest.approx(loss, abs=1e-5)
    for got, want in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-4)
    # and the rematerialised backward really recomputes: the jaxpr holds a remat (checkpoint) op
    model = encoder_decoder.EncoderDecoderModel(remat)
    jaxpr = jax.make_jaxpr(jax.grad(lambda p: model.loss_fn(p, batch)[0]))(params)
    assert "checkpoint" in str(jaxpr) or "remat" in str(jaxpr)


def test_an_unknown_remat_policy_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="remat_policy = 'some'"):
        dataclasses.replace(TINY, remat_policy="some")


def test_correct_sum_counts_targets_holding_the_top_logit():
    model = encoder_decoder.EncoderDecoderModel(TINY)
    params = tiny_params()
    targets = random_tokens((3, 6), seed=1)
    targets[2, 4:] = 0  # padding is not counted
    batch = {
        "encoder_input_tokens": jnp.asarray(random_tokens((3, 8), seed=0)),
        "decoder_input_tokens": jnp.asarray(shift_right(targets)),
        "decoder_target_tokens": jnp.asarray(targets),
    }
    logits = np.asarray(model.logits(params, batch))
    # Make the model right at a few known positions by choosing those targets as its argmax.
    top = logits.argmax(-1)
    targets[0, :3] = top[0, :3]
    targets[1, 5] = top[1, 5]
    batch["decoder_target_tokens"] = jnp.asarray(targets)
    _, metrics = jax.jit(model.loss_fn)(params, batch)
    expected = np.sum((top == targets) & (targets > 0))
    assert expected >= 4
    assert float(metrics["correct_sum"]) == expected
    assert float(metrics["num_tokens"]) == np.sum(targets > 0)
