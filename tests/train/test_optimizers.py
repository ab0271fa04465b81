"""Optimizers: Adafactor updates `scan_layers` params per layer, exactly as the unscanned ones."""

from __future__ import annotations

import jax
import numpy as np
import optax
from synthetic_source import SyntheticSource, tiny_model

from vertjax.models import scan_layout
from vertjax.train import optimizers


def _steps(model, params, tx, batch, count=2):
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: model.loss_fn(p, batch)[0])(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(count):
        params, state = step(params, state)
    return params, state


def test_adafactor_steps_scanned_params_per_layer_as_unscanned():
    """Update clipping and the parameter-RMS scale span a whole tensor: on a stacked tensor they
    would mix the layers. Per layer, two steps from the same weights give the same params."""
    plain, scanned = tiny_model(), tiny_model(scan_layers=True)
    params = plain.init_params(jax.random.key(0))
    batch = SyntheticSource(batch_size=8).global_batch(0)
    # factoring threshold 16: the stacked kernels' slices are factored as the unscanned kernels
    tx = optimizers.adafactor(learning_rate=0.1, min_dim_size_to_factor=16)
    want, plain_state = _steps(plain, params, tx, batch)
    got, _ = _steps(scanned, scan_layout.to_scanned(params), tx, batch)
    got = scan_layout.to_unscanned(got)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
    # unscanned runs keep optax's own state (their checkpoints restore as before)
    own = optax.adafactor(learning_rate=0.1, min_dim_size_to_factor=16, momentum=None)
    assert jax.tree.structure(plain_state) == jax.tree.structure(own.init(params))
