"""Meshes, T5X logical axis rules and shardings; multi-host initialisation.

One gin file runs anywhere: the mesh is `(data, model)` with `-1` meaning "all remaining devices",
parameters and activations carry logical axis names, and the rules below map those names onto the
mesh axes (T5X's `standard_logical_axis_rules`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vertjax import errors

LogicalRules = Sequence[tuple[str, str | None]]


def standard_logical_axis_rules(*, parameter_partitioning_dims: int = 1) -> LogicalRules:
    """T5X's default rules: batch over `data`, heads/mlp/vocab over `model`.

    With `parameter_partitioning_dims=2` the `embed` dimension of parameters is sharded over
    `data` too (ZeRO-3 / fully-sharded style), as T5X does for its largest models.
    """
    rules: list[tuple[str, str | None]] = [
        ("batch", "data"),
        ("vocab", "model"),
        ("mlp", "model"),
        ("heads", "model"),
        ("joined_kv", "model"),
        ("kv", None),
        ("length", None),
        ("relpos_buckets", None),
        ("projection", None),
        ("abspos_buckets", None),
        # The stacked-layer axis of `scan_layers` params: replicated, so each layer's slice is
        # sharded exactly as the unscanned layer's params are.
        ("layers", None),
    ]
    rules.append(("embed", "data" if parameter_partitioning_dims == 2 else None))
    return tuple(rules)


def create_mesh(
    mesh_shape: Sequence[int] = (-1, 1), *, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A `(data, model)` mesh; one `-1` entry takes all devices not used by the other axis."""
    devices = list(devices if devices is not None else jax.devices())
    shape = list(mesh_shape)
    if len(shape) != 2:
        raise errors.ConfigError(f"mesh_shape must be (data, model), got {tuple(mesh_shape)}")
    if shape.count(-1) > 1:
        raise errors.ConfigError(f"mesh_shape {tuple(mesh_shape)} has more than one -1")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1]))
        shape[shape.index(-1)] = len(devices) // max(known, 1)
    if int(np.prod(shape)) != len(devices):
        raise errors.ConfigError(
            f"mesh_shape {tuple(mesh_shape)} needs {int(np.prod(shape))} devices, "
            f"but {len(devices)} are available"
        )
    device_array = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(device_array, ("data", "model"))


def logical_to_shardings(logical_specs: Any, mesh: Mesh, rules: LogicalRules) -> Any:
    """PartitionSpecs of logical names → NamedShardings on `mesh`."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def opt_state_shardings(
    abstract_opt_state: Any, abstract_params: Any, param_shardings: Any, mesh: Mesh
) -> Any:
    """Shards each optimizer-state leaf like the parameter it belongs to.

    optax keeps per-parameter state in sub-trees whose key path ends with the parameter's path;
    a leaf of the same shape as that parameter (Adam moments, Adafactor's unfactored v) takes the
    parameter's sharding. Everything else (counts, Adafactor's factored row/column statistics,
    which are small) is replicated.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    by_path = {}
    for (path, leaf), sharding in zip(
        jax.tree_util.tree_leaves_with_path(abstract_params),
        jax.tree.leaves(param_shardings),
        strict=True,
    ):
        by_path[_path_names(path)] = (leaf.shape, sharding)

    def shard_leaf(path, leaf):
        names = _path_names(path)
        for start in range(len(names)):
            match = by_path.get(names[start:])
            if match is not None:
                shape, sharding = match
                return sharding if tuple(leaf.shape) == tuple(shape) else replicated
        return replicated

    return jax.tree_util.tree_map_with_path(shard_leaf, abstract_opt_state)


def _path_names(path: Sequence[Any]) -> tuple[str, ...]:
    names = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                names.append(str(getattr(entry, attr)))
                break
    return tuple(names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Examples split over the `data` axis, replicated over `model`."""
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's slice of the batch into one globally sharded array per feature."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in local_batch.items()
    }


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    auto: bool = False,
) -> None:
    """`jax.distributed.initialize` for multi-host runs; a no-op for a single process.

    On TPU pods and SLURM/Open MPI clusters JAX discovers everything itself: call with no
    arguments and `auto=True`. Elsewhere (plain GPU hosts, tests) give address, count and id.
    """
    explicit = coordinator_address is not None or num_processes is not None
    if not (explicit or auto) or (num_processes is not None and num_processes <= 1):
        return
    if jax.distributed.is_initialized():
        return
    logging.info(
        "jax.distributed.initialize(%s, num_processes=%s, process_id=%s)",
        coordinator_address,
        num_processes,
        process_id,
    )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
