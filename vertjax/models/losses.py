"""Losses: token cross-entropy with z-loss and label smoothing (as T5X), and the contrastive loss.

The contrastive loss scores each question against every passage of the GLOBAL batch. Under `jit`
with a data-parallel mesh that batch is one sharded array, so XLA gathers the passage embeddings
from all devices: every question gets the whole global batch as negatives (GTR's cross-device
negatives) without hand-written collectives.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def cross_entropy_with_logits(
    logits: Array, targets: Array, *, z_loss: float = 0.0, label_smoothing: float = 0.0
) -> tuple[Array, Array, Array]:
    """Per-token training loss, its z-loss part and the plain NLL (each `[batch, length]`).

    As in T5X: z_loss adds `z_loss * log(Z)^2` to keep the softmax normaliser near 1 (stabilises
    bf16); label smoothing spreads `label_smoothing` mass over the other tokens and subtracts the
    entropy of that smoothed target so a perfect model still scores zero. The NLL
    (-log p(target)) is what perplexity is made of. Nothing of size vocab is materialised besides
    the logits: everything comes from log Z, the target logit and the logit sum.
    """
    vocab = logits.shape[-1]
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[
        ..., 0
    ]
    nll = log_z - target_logit
    if label_smoothing > 0:
        confidence = 1.0 - label_smoothing
        low = label_smoothing / (vocab - 1)
        normalizer = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
        sum_logp = jnp.sum(logits, axis=-1) - vocab * log_z
        loss = confidence * nll - low * (sum_logp + nll) - normalizer
    else:
        loss = nll
    z = z_loss * jnp.square(log_z)
    return loss + z, z, nll


def token_log_likelihood(logits: Array, targets: Array) -> Array:
    """log p(target token) per position, `[batch, length]` (for scoring, PPL and NLI labels)."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_probs, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def in_batch_softmax_loss(
    questions: Array,
    passages: Array,
    *,
    logit_scale: Array | float = 100.0,
    bidirectional: bool = True,
) -> tuple[Array, Array]:
    """Softmax contrastive loss with in-batch (and hard) negatives, as t5x_retrieval trains GTR.

    Question -> passage: each question's softmax runs over every passage of the batch (the other
    positives and any mined hard negatives). Passage -> question (`bidirectional`): each positive
    passage's softmax runs over the batch's questions (hard negatives have no question, so they
    are left out of this direction, as in t5x_retrieval). The two per-example losses are added.

    Args:
      questions: `[b, d]` normalised question embeddings.
      passages: `[b * (1 + n), d]`; row i < b is question i's positive.
      logit_scale: scores are cosine similarity * logit_scale (t5x_retrieval: 100).
      bidirectional: add the passage -> question loss.

    Returns:
      Per-question loss `[b]` and whether the positive ranked first among the passages `[b]`.
    """
    b = questions.shape[0]
    scores = (jnp.dot(questions, passages.T) * logit_scale).astype(jnp.float32)
    labels = jnp.arange(b)
    loss = -jnp.take_along_axis(jax.nn.log_softmax(scores, axis=-1), labels[:, None], axis=-1)[:, 0]
    if bidirectional:
        passage_scores = scores[:, :b].T  # [b passages, b questions]
        loss = loss - jnp.diagonal(jax.nn.log_softmax(passage_scores, axis=-1))
    correct = jnp.argmax(scores, axis=-1) == labels
    return loss, correct
