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


def _log_softmax_at(row: np.ndarray, i: int) -> float:
    return float(row[i] - np.log(np.exp(row).sum()))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_in_batch_softmax_loss_matches_hand_computation(bidirectional):
    q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    p = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # 2 positives + 1 hard negative
    loss, correct = losses.in_batch_softmax_loss(q, p, logit_scale=2.0, bidirectional=bidirectional)
    scores = np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 1.0]]) * 2.0
    expected = np.array([-_log_softmax_at(scores[0], 0), -_log_softmax_at(scores[1], 1)])
    if bidirectional:  # passage i against the 2 questions (the hard negative has no question)
        by_passage = scores[:, :2].T
        expected += [-_log_softmax_at(by_passage[0], 0), -_log_softmax_at(by_passage[1], 1)]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_array_equal(correct, [True, False])  # q1's hard negative outscores it


def test_passage_to_question_direction_penalises_a_passage_that_two_questions_claim():
    # Both questions point at passage 0's direction: q->p alone cannot see that passage 0 prefers
    # question 0 over question 1 only weakly; the p->q term adds that loss.
    q = jnp.array([[1.0, 0.0], [0.8, 0.6]])
    p = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    one, _ = losses.in_batch_softmax_loss(q, p, logit_scale=10.0, bidirectional=False)
    both, _ = losses.in_batch_softmax_loss(q, p, logit_scale=10.0, bidirectional=True)
    assert np.all(np.asarray(both) > np.asarray(one))


def test_a_larger_logit_scale_sharpens_a_correct_ranking():
    q = jnp.eye(3)
    p = jnp.eye(3) * 0.9 + 0.1 / 3
    p = p / jnp.linalg.norm(p, axis=-1, keepdims=True)
    low, _ = losses.in_batch_softmax_loss(q, p, logit_scale=1.0)
    high, _ = losses.in_batch_softmax_loss(q, p, logit_scale=100.0)
    assert float(jnp.mean(high)) < 1e-3 < float(jnp.mean(low))
