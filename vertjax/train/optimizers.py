"""Optimizers and learning-rate schedules (optax), named for gin.

`adafactor` reproduces T5X's default (factored second moments, decay 0.8, update clipping 1.0,
updates scaled by the parameter's RMS, no momentum) so T5X recipes and learning rates carry over.
`adamw` decays only weight matrices by default (`decay_mask`): norm scales, relative-position
tables, biases and temperature/logit-scale parameters are left alone, as BERT/T5X recipes do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

# Leaf names that never get weight decay even when they are matrices: the relative-position
# bias table `[heads, buckets]` is a learned lookup, not a projection.
NO_DECAY_NAMES = frozenset({"rel_embedding"})
# Leaf-name fragments of scalar-like parameters (norm scales, biases, temperatures, logit scales).
NO_DECAY_FRAGMENTS = ("scale", "bias", "temperature")


def _leaf_name(path: tuple[Any, ...]) -> str:
    last = path[-1] if path else ""
    return str(getattr(last, "key", getattr(last, "name", last)))


def decays(name: str, ndim: int) -> bool:
    """Whether a parameter named `name` (its leaf name) with `ndim` dimensions is decayed."""
    lowered = name.lower()
    return (
        ndim >= 2
        and lowered not in NO_DECAY_NAMES
        and not any(f in lowered for f in NO_DECAY_FRAGMENTS)
    )


def decay_mask(params: Any) -> Any:
    """The standard weight-decay mask: True for kernels and embeddings, False for RMSNorm
    scales, relative-position tables, biases and temperature/logit-scale parameters."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: decays(_leaf_name(path), getattr(x, "ndim", 0)), params
    )


def rsqrt_schedule(
    *, base_learning_rate: float = 1.0, warmup_steps: int = 10_000
) -> optax.Schedule:
    """T5's `base / sqrt(max(step, warmup))`: constant during warm-up, then inverse square root."""

    def schedule(step):
        import jax.numpy as jnp

        return base_learning_rate / jnp.sqrt(jnp.maximum(step.astype(jnp.float32), warmup_steps))

    return schedule


def constant_schedule(*, learning_rate: float) -> optax.Schedule:
    return optax.constant_schedule(learning_rate)


def warmup_cosine_schedule(
    *, peak_learning_rate: float, warmup_steps: int, total_steps: int, end_ratio: float = 0.0
) -> optax.Schedule:
    """Linear warm-up to the peak, cosine decay to `end_ratio * peak` at `total_steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak_learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=peak_learning_rate * end_ratio,
    )


def adafactor(
    *,
    learning_rate: optax.Schedule | float,
    decay_rate: float = 0.8,
    clipping_threshold: float | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    min_dim_size_to_factor: int = 128,
    weight_decay_rate: float | None = None,
) -> optax.GradientTransformation:
    """Adafactor as T5X configures it by default."""
    return optax.adafactor(
        learning_rate=learning_rate,
        min_dim_size_to_factor=min_dim_size_to_factor,
        decay_rate=decay_rate,
        multiply_by_parameter_scale=multiply_by_parameter_scale,
        clipping_threshold=clipping_threshold,
        momentum=None,
        weight_decay_rate=weight_decay_rate,
    )


def adamw(
    *,
    learning_rate: optax.Schedule | float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    max_grad_norm: float | None = 1.0,
    weight_decay_mask: Callable[[Any], Any] | Any | None = decay_mask,
) -> optax.GradientTransformation:
    """AdamW with optional global-norm gradient clipping.

    Args:
      weight_decay_mask: which parameters are decayed: a function params -> bool pytree, or such
        a pytree; `decay_mask` (the default) spares norm scales, relative-position tables,
        biases and temperatures; None decays every parameter.
    """
    chain = [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm else []
    chain.append(
        optax.adamw(
            learning_rate=learning_rate,
            b1=b1,
            b2=b2,
            eps=eps,
            weight_decay=weight_decay,
            mask=weight_decay_mask,
        )
    )
    return optax.chain(*chain)
