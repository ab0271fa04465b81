"""Token cross-entropy: NLL, z-loss and label smoothing against direct computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vertjax.models import losses


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_matches_the_smoothed_target_distribution(label_smoothing):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(2, 3, 7)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 7, (2, 3)), jnp.int32)
    loss, z, nll = losses.cross_entropy_with_logits(
        logits, targets, z_loss=1e-2, label_smoothing=label_smoothing
    )
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    log_z = np.asarray(jax.nn.logsumexp(logits, axis=-1))
    onehot = np.eye(7)[np.asarray(targets)]
    soft = onehot * (1 - label_smoothing) + (1 - onehot) * label_smoothing / 6
    entropy = -np.sum(np.where(soft > 0, soft * np.log(np.maximum(soft, 1e-30)), 0.0), axis=-1)
    expected = -np.sum(soft * log_probs, axis=-1) - entropy + 1e-2 * log_z**2
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z, 1e-2 * log_z**2, rtol=1e-6)
    np.testing.assert_allclose(nll, -np.sum(onehot * log_probs, axis=-1), rtol=1e-5)
