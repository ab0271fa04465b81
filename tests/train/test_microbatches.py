"""Gradient accumulation over microbatches equals the full-batch loss, metrics and gradients."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from synthetic_source import SyntheticSource, tiny_model

from vertjax import errors
from vertjax.train import microbatches


@pytest.mark.parametrize("num_microbatches", [2, 4])
def test_accumulated_gradients_equal_the_full_batch(num_microbatches):
    model = tiny_model()
    params = model.init_params(jax.random.key(0))
    # Target lengths differ per example, so slices hold different token counts: an unweighted
    # mean of the slices' losses would differ from the full-batch per-token mean.
    batch = SyntheticSource(batch_size=8).global_batch(3)
    loss, metrics, grads = microbatches.loss_and_grads(
        model.loss_fn, params, batch, dropout_rng=None
    )
    micro_loss, micro_metrics, micro_grads = jax.jit(
        lambda p, b: microbatches.loss_and_grads(
            model.loss_fn, p, b, dropout_rng=None, num_microbatches=num_microbatches
        )
    )(params, batch)
    assert float(micro_loss) == pytest.approx(float(loss), abs=1e-5)
    assert float(micro_metrics["num_tokens"]) == float(metrics["num_tokens"])
    for got, want in zip(jax.tree.leaves(micro_grads), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-4)


def test_a_batch_that_does_not_split_is_a_config_error():
    model = tiny_model()
    batch = SyntheticSource(batch_size=6).global_batch(0)
    with pytest.raises(errors.ConfigError, match="num_microbatches=4 does not divide the batch"):
        microbatches.loss_and_grads(
            model.loss_fn,
            model.init_params(jax.random.key(0)),
            batch,
            dropout_rng=None,
            num_microbatches=4,
        )


def test_a_per_token_loss_without_num_tokens_is_a_config_error_naming_the_binding():
    """A loss whose metrics have no `num_tokens` cannot be token-weighted over slices: the
    microbatched step is refused with the gin binding named, not a KeyError from inside jit."""
    model = tiny_model()

    def loss_without_counts(params, batch, *, dropout_rng):
        loss, metrics = model.loss_fn(params, batch, dropout_rng=dropout_rng)
        return loss, {k: v for k, v in metrics.items() if k != "num_tokens"}

    batch = SyntheticSource(batch_size=4).global_batch(0)
    with pytest.raises(errors.ConfigError, match=r"num_microbatches = 2 \(NUM_MICROBATCHES\)"):
        jax.jit(
            lambda p, b: microbatches.loss_and_grads(
                loss_without_counts, p, b, dropout_rng=None, num_microbatches=2
            )
        )(model.init_params(jax.random.key(0)), batch)


def test_a_contrastive_model_refuses_microbatches_before_anything_is_written(tmp_path):
    """In-batch negatives make each example's loss depend on the whole batch: a retriever
    trained with NUM_MICROBATCHES > 1 would optimise another loss, so it is refused."""
    import optax

    from vertjax.models import encoder
    from vertjax.train import trainer

    model = encoder.DualEncoderModel(tiny_model().config, projection_dim=8)
    with pytest.raises(errors.ConfigError, match=r"in-batch\s+negatives"):
        trainer.train(
            model_dir=str(tmp_path / "run"),
            model=model,
            train_data=SyntheticSource(batch_size=4),
            optimizer=optax.adam(1e-3),
            total_steps=1,
            num_microbatches=2,
            progress=False,
        )
    assert not (tmp_path / "run").exists()
