"""Moves T5 params between the unscanned layout (`<stack>/layers_<i>/...`, one sub-tree per layer)
and the `scan_layers` layout (`<stack>/layers/...`, every leaf stacked over a leading layer axis).

The functions are pure tree rewrites and work at any depth, so the same call converts an
encoder-decoder's params, a retriever's towers or an NLI classifier's encoder. How leaves are
stacked and split is a parameter: arrays by default, `jax.ShapeDtypeStruct`s (with shardings) when
`train/restore.py` plans a restore in the other layout.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from vertjax.models import t5

SCANNED_KEY = t5.LAYERS_AXIS
_LAYER_KEY = re.compile(r"layers_(\d+)$")

Stack = Callable[[Sequence[Any]], Any]
Unstack = Callable[[Any], Sequence[Any]]


def _stack_arrays(leaves: Sequence[Any]) -> Any:
    return jnp.stack([jnp.asarray(x) for x in leaves])


def _unstack_arrays(leaf: Any) -> Sequence[Any]:
    return [leaf[i] for i in range(leaf.shape[0])]


def _layer_indices(tree: Mapping[str, Any]) -> list[int] | None:
    """The `i`s of a dict whose `layers_<i>` keys form a stack `0..n-1`, else None."""
    found = sorted(int(m.group(1)) for k in tree if (m := _LAYER_KEY.match(str(k))))
    return found if found and found == list(range(len(found))) else None


def is_scanned(params: Any) -> bool | None:
    """True if `params` hold a scanned layer stack, False if per-layer ones, None if neither."""
    if not isinstance(params, Mapping):
        return None
    if SCANNED_KEY in params and isinstance(params[SCANNED_KEY], Mapping):
        return True
    if _layer_indices(params):
        return False
    for value in params.values():
        found = is_scanned(value)
        if found is not None:
            return found
    return None


def to_scanned(params: Any, *, stack: Stack = _stack_arrays) -> Any:
    """Every `layers_0..layers_{n-1}` group becomes one `layers` sub-tree of stacked leaves."""
    if not isinstance(params, Mapping):
        return params
    indices = _layer_indices(params)
    out = {k: to_scanned(v, stack=stack) for k, v in params.items() if not _LAYER_KEY.match(str(k))}
    if indices:
        per_layer = [params[f"layers_{i}"] for i in indices]
        out[SCANNED_KEY] = jax.tree.map(lambda *leaves: stack(leaves), *per_layer)
    return out


def to_unscanned(params: Any, *, unstack: Unstack = _unstack_arrays) -> Any:
    """Every stacked `layers` sub-tree becomes `layers_0..layers_{n-1}` (the inverse of
    `to_scanned`)."""
    if not isinstance(params, Mapping):
        return params
    out = {k: to_unscanned(v, unstack=unstack) for k, v in params.items() if k != SCANNED_KEY}
    stacked = params.get(SCANNED_KEY)
    if isinstance(stacked, Mapping):
        leaves, treedef = jax.tree.flatten(stacked)
        split = [unstack(leaf) for leaf in leaves]
        for i in range(len(split[0]) if split else 0):
            out[f"layers_{i}"] = jax.tree.unflatten(treedef, [s[i] for s in split])
    return out


def to_layout(
    params: Any,
    scan_layers: bool,
    *,
    stack: Stack = _stack_arrays,
    unstack: Unstack = _unstack_arrays,
) -> Any:
    """`params` in the layout of a model with `scan_layers` (unchanged when already in it)."""
    found = is_scanned(params)
    if found is None or found == scan_layers:
        return params
    return to_scanned(params, stack=stack) if scan_layers else to_unscanned(params, unstack=unstack)
