"""GTR/DPR dual encoders: shapes, normalisation, parameter sharing, contrastive loss, training."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_t5_config

from vertjax import errors
from vertjax.models import encoder, encoder_decoder, t5
from vertjax.train import optimizers, restore, trainer

CONFIG = tiny_t5_config(64)


@pytest.mark.parametrize("shared", [True, False])
def test_embeddings_are_normalised_and_towers_shared_or_not(shared):
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8, shared=shared)
    params = model.init_params(jax.random.key(0))
    tokens = jnp.array([[5, 6, 7, 1, 0, 0], [9, 1, 0, 0, 0, 0]])
    q = model.encode(params, tokens, kind="question")
    p = model.encode(params, tokens, kind="passage")
    assert q.shape == (2, 8)
    np.testing.assert_allclose(jnp.linalg.norm(q, axis=-1), 1.0, rtol=1e-5)
    if shared:
        assert set(params) == {"tower"}
        np.testing.assert_array_equal(q, p)
    else:
        assert set(params) == {"question_tower", "passage_tower"}
        assert not np.allclose(q, p)


def test_padding_does_not_change_the_embedding():
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8)
    params = model.init_params(jax.random.key(1))
    short = model.encode(params, jnp.array([[5, 6, 7, 1]]), kind="passage")
    padded = model.encode(params, jnp.array([[5, 6, 7, 1, 0, 0, 0]]), kind="passage")
    np.testing.assert_allclose(short, padded, atol=1e-6)


def test_every_param_has_logical_axes():
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8, learnable_logit_scale=True)
    axes = jax.tree.leaves(
        model.logical_param_axes(), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )
    shapes = jax.tree.leaves(model.abstract_params())
    assert len(axes) == len(shapes)
    for spec, leaf in zip(axes, shapes, strict=True):
        assert len(spec) == len(leaf.shape)


class _Pairs:
    """Questions whose positive passage starts with the question's tokens."""

    def iterator(self, *, start_batch, shard_id, num_shards):
        i = start_batch
        while True:
            rng = np.random.default_rng([0, i])
            q = rng.integers(3, 64, (8, 6)).astype(np.int32)
            p = np.concatenate([q, rng.integers(3, 64, (8, 6)).astype(np.int32)], axis=1)
            yield {"question_tokens": q, "passage_tokens": p}
            i += 1


def test_dpr_trains_and_reloads_and_can_start_from_a_t5_encoder(tmp_path):
    t5_dir = tmp_path / "t5"
    t5_params = encoder_decoder.EncoderDecoderModel(CONFIG).init_params(jax.random.key(3))
    restore.save_params(t5_dir, config=CONFIG, params=t5_params)
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8, shared=False)
    schedule = optimizers.constant_schedule(learning_rate=3e-3)
    result = trainer.train(
        model_dir=str(tmp_path / "dpr"),
        model=model,
        train_data=_Pairs(),
        optimizer=optimizers.adamw(learning_rate=schedule),
        total_steps=30,
        checkpoint_period=30,
        initial_checkpoint_path=str(t5_dir),
        progress=False,
    )
    assert result.losses[30] < result.losses[1]
    loaded, params = restore.load_dual_encoder(str(tmp_path / "dpr"))
    assert loaded == model
    tokens = jnp.array([[4, 5, 6, 1]])
    assert model.encode(params, tokens, kind="question").shape == (1, 8)


def test_initial_checkpoint_with_another_width_is_refused(tmp_path):
    other = t5.T5Config(**{**CONFIG.__dict__, "emb_dim": 24})
    restore.save_params(
        tmp_path / "t5",
        config=other,
        params=encoder_decoder.EncoderDecoderModel(other).init_params(jax.random.key(0)),
    )
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8)
    with pytest.raises(errors.CheckpointError, match="emb_dim 24"):
        restore.warm_start(model, str(tmp_path / "t5"), abstract_params=None)


_MESH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path[:0] = [{test_dir!r}, os.path.dirname({test_dir!r})]  # test_encoder and conftest
    import jax, numpy as np
    from test_encoder import CONFIG, _Pairs
    from vertjax.models import encoder
    from vertjax.train import optimizers, trainer
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8)
    schedule = optimizers.constant_schedule(learning_rate=3e-3)
    result = trainer.train(
        model_dir=sys.argv[1], model=model, train_data=_Pairs(),
        optimizer=optimizers.adamw(learning_rate=schedule), total_steps=3, mesh_shape=(4, 1),
        checkpoint_period=3, progress=False,
    )
    print("LOSSES", [result.losses[s] for s in (1, 2, 3)])
    """
)


def test_cross_device_negatives_give_the_single_device_loss(tmp_path):
    """On 4 data-parallel devices each question still sees all 8 passages of the global batch."""
    script = _MESH_SCRIPT.format(test_dir=os.path.dirname(__file__))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "mesh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    sharded = eval(out.split("LOSSES", 1)[1].strip())  # noqa: S307 (our own printed list)
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8)
    schedule = optimizers.constant_schedule(learning_rate=3e-3)
    single = trainer.train(
        model_dir=str(tmp_path / "single"),
        model=model,
        train_data=_Pairs(),
        optimizer=optimizers.adamw(learning_rate=schedule),
        total_steps=3,
        checkpoint_period=3,
        progress=False,
    )
    np.testing.assert_allclose(sharded, [single.losses[s] for s in (1, 2, 3)], rtol=1e-5)
    # A per-device loss (negatives only from the local 2 passages) would be much lower:
    assert single.losses[1] > np.log(2.0)


def _named_leaves(tree) -> dict[str, object]:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def test_weight_decay_spares_norms_position_tables_and_the_logit_scale():
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8, learnable_logit_scale=True)
    params = model.init_params(jax.random.key(0))
    mask = _named_leaves(optimizers.decay_mask(params))
    spared = {name for name, decayed in mask.items() if not decayed}
    assert spared == {
        name
        for name in mask
        if name.endswith(("/scale", "rel_embedding")) or name == encoder.LOGIT_SCALE_PARAM
    }
    assert mask["tower/encoder/layers_0/attention/query/kernel"]
    assert mask["tower/token_embedder/embedding"] and mask["tower/projection/kernel"]
    # One AdamW step on zero gradients moves only the decayed parameters (towards zero).
    opt = optimizers.adamw(learning_rate=0.1, weight_decay=0.5, max_grad_norm=None)
    updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    moved = {n: bool(jnp.any(u != 0)) for n, u in _named_leaves(updates).items()}
    assert {n for n, m in moved.items() if not m} == spared
    everything = optimizers.adamw(learning_rate=0.1, weight_decay=0.5, weight_decay_mask=None)
    updates, _ = everything.update(
        jax.tree.map(jnp.zeros_like, params), everything.init(params), params
    )
    assert all(bool(jnp.any(u != 0)) for u in jax.tree.leaves(updates))


def test_learnable_logit_scale_trains_and_the_config_round_trips(tmp_path):
    model = encoder.DualEncoderModel(
        CONFIG, projection_dim=8, logit_scale=20.0, learnable_logit_scale=True
    )
    result = trainer.train(
        model_dir=str(tmp_path / "gtr"),
        model=model,
        train_data=_Pairs(),
        optimizer=optimizers.adamw(learning_rate=optimizers.constant_schedule(learning_rate=3e-2)),
        total_steps=5,
        checkpoint_period=5,
        progress=False,
    )
    loaded, params = restore.load_dual_encoder(str(tmp_path / "gtr"))
    assert loaded == model and result.losses[5] < result.losses[1]
    assert float(params[encoder.LOGIT_SCALE_PARAM]) != pytest.approx(np.log(20.0))


def _t5_checkpoint(tmp_path, *, collapsed: bool):
    params = encoder_decoder.EncoderDecoderModel(CONFIG).init_params(jax.random.key(1))
    if collapsed:  # every token embedding dominated by one shared direction, as a T5 whose
        # residual stream blew up in pretraining: the encoder then ignores its input
        shared = jax.random.normal(jax.random.key(2), (CONFIG.emb_dim,))
        table = params["token_embedder"]["embedding"]
        params["token_embedder"]["embedding"] = table + 100.0 * shared
    restore.save_params(tmp_path, config=CONFIG, params=params)
    return str(tmp_path)


def test_starting_from_an_encoder_that_ignores_its_input_is_flagged(tmp_path, caplog):
    model = encoder.DualEncoderModel(CONFIG, projection_dim=8)
    abstract = model.abstract_params()
    healthy = restore.warm_start(
        model, _t5_checkpoint(tmp_path / "ok", collapsed=False), abstract_params=abstract
    )
    assert model.pooled_cosine(healthy) < encoder.COLLAPSED_COSINE
    assert "nearly the same pooled vector" not in caplog.text
    collapsed = restore.warm_start(
        model, _t5_checkpoint(tmp_path / "bad", collapsed=True), abstract_params=abstract
    )
    assert model.pooled_cosine(collapsed) > encoder.COLLAPSED_COSINE
    assert "nearly the same pooled vector" in caplog.text
