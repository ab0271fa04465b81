"""Loss and gradients of a batch, optionally accumulated over microbatches (T5X's
`num_microbatches`): the batch is split into equal slices run one after another, so activation
memory is that of one slice while the gradient stays the full-batch gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from vertjax import errors

LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _is_summed(name: str) -> bool:
    """Metrics that add up over examples (`*_sum`, `num_*`); the others are averaged."""
    return name.endswith("_sum") or name.startswith("num_")


def loss_and_grads(
    loss_fn: LossFn,
    params: Any,
    batch: Mapping[str, jax.Array],
    *,
    dropout_rng: jax.Array | None,
    num_microbatches: int = 1,
    per_token_mean: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    """(loss, metrics, grads) of `loss_fn` over `batch`, accumulated over `num_microbatches`.

    Args:
      loss_fn: `(params, batch, *, dropout_rng) -> (loss, metrics)`; metrics hold `num_tokens`.
      per_token_mean: the loss is a mean over `num_tokens` (the default T5 loss): microbatch
        losses and grads are combined weighted by their token counts, which equals the
        full-batch value. False: the loss is a sum over a fixed normaliser, so they are added.
      dropout_rng: folded with the microbatch index, so each slice draws its own dropout.

    Returns:
      The full-batch loss, metrics (sums added, other metrics averaged) and gradients.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if num_microbatches <= 1:
        (loss, metrics), grads = grad_fn(params, batch, dropout_rng=dropout_rng)
        return loss, metrics, grads
    batch_size = next(iter(batch.values())).shape[0]
    if batch_size % num_microbatches:
        raise errors.ConfigError(
            f"num_microbatches={num_microbatches} does not divide the batch size {batch_size}"
        )
    slices = {
        k: v.reshape(num_microbatches, batch_size // num_microbatches, *v.shape[1:])
        for k, v in batch.items()
    }

    def one(index, micro):
        rng = None if dropout_rng is None else jax.random.fold_in(dropout_rng, index)
        (loss, metrics), grads = grad_fn(params, micro, dropout_rng=rng)
        if per_token_mean and "num_tokens" not in metrics:
            raise errors.ConfigError(
                f"trainer.train.num_microbatches = {num_microbatches} (NUM_MICROBATCHES): the"
                " model's loss is a per-token mean but its metrics have no `num_tokens` to"
                f" weight the slices by (they hold {sorted(metrics)}); train it with"
                " NUM_MICROBATCHES = 1"
            )
        weight = metrics["num_tokens"] if per_token_mean else jnp.float32(1.0)
        grads = jax.tree.map(lambda g: g * weight.astype(g.dtype), grads)
        return loss * weight, weight, metrics, grads

    def body(carry, xs):
        index, micro = xs
        loss, weight, metrics, grads = one(index, micro)
        acc_loss, acc_weight, acc_metrics, acc_grads = carry
        return (
            acc_loss + loss,
            acc_weight + weight,
            jax.tree.map(jnp.add, acc_metrics, metrics),
            jax.tree.map(jnp.add, acc_grads, grads),
        ), None

    zeros = jax.tree.map(
        jnp.zeros_like,
        jax.eval_shape(one, 0, jax.tree.map(lambda v: v[0], slices)),
    )
    indices = jnp.arange(num_microbatches)
    (loss, weight, metrics, grads), _ = jax.lax.scan(body, zeros, (indices, slices))
    weight = jnp.maximum(weight, 1.0) if per_token_mean else jnp.float32(1.0)
    grads = jax.tree.map(lambda g: g / weight.astype(g.dtype), grads)
    metrics = {k: v if _is_summed(k) else v / num_microbatches for k, v in metrics.items()}
    return loss / weight, metrics, grads
