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

from vertjax.models import scan_layout

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
    """Adafactor as T5X configures it by default.

    Its statistics are per parameter (factored moments, update clipping and scaling by the
    parameter's RMS), so `scan_layers` params (stacked under a `layers` key) get them per layer:
    each layer's slice is updated exactly as the unscanned model's `layers_<i>` would be.
    """
    return per_layer_when_scanned(
        optax.adafactor(
            learning_rate=learning_rate,
            min_dim_size_to_factor=min_dim_size_to_factor,
            decay_rate=decay_rate,
            multiply_by_parameter_scale=multiply_by_parameter_scale,
            clipping_threshold=clipping_threshold,
            momentum=None,
            weight_decay_rate=weight_decay_rate,
        )
    )


def _is_stacked(path: tuple[Any, ...]) -> bool:
    """Whether a param path runs through a `scan_layers` stack (`<stack>/layers/...`)."""
    return any(getattr(k, "key", None) == scan_layout.SCANNED_KEY for k in path)


def _has_stacked(tree: Any) -> bool:
    return any(_is_stacked(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree))


def per_layer_when_scanned(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx`, applied separately to each layer's slice of stacked `scan_layers` params (vmapped
    over their leading axis) and as is to every other param.

    Needed for transformations whose statistics span a whole parameter (Adafactor's block RMS);
    elementwise ones (Adam) are the same either way. Without stacked params the state is `tx`'s
    own, so unscanned runs and their checkpoints are unchanged.
    """
    per_layer = optax.GradientTransformation(
        init=jax.vmap(tx.init),
        update=lambda updates, state, params=None: jax.vmap(tx.update)(updates, state, params),
    )

    def labels(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "per_layer" if _is_stacked(path) else "whole", params
        )

    split = optax.multi_transform({"per_layer": per_layer, "whole": tx}, labels)

    def init(params: Any) -> Any:
        return split.init(params) if _has_stacked(params) else tx.init(params)

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        if _has_stacked(updates):
            return split.update(updates, state, params)
        return tx.update(updates, state, params)

    return optax.GradientTransformation(init, update)


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
