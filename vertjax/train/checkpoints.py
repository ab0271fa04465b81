"""Checkpoints through orbax: params, optimizer state and the data-iterator position.

Layout of a run directory: `MODEL_DIR/checkpoint_<step>/{params,opt_state,data}` plus
`MODEL_DIR/model_config.json` (the `T5Config`, so inference and conversion need no gin). orbax
writes each step to a temporary directory and renames it when complete, so a checkpoint left
half-written by a kill is never listed, never loaded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from vertjax import errors, io_utils
from vertjax.models import t5

PathLike = str | os.PathLike
STEP_PREFIX = "checkpoint"
MODEL_CONFIG_FILE = "model_config.json"


def save_model_config(model_dir: PathLike, config: t5.T5Config) -> None:
    """Writes the model hyper-parameters next to the checkpoints."""
    fields = dataclasses.asdict(config)
    fields["mlp_activations"] = list(config.mlp_activations)
    fields["dtype"] = str(np.dtype(config.activation_dtype).name)
    io_utils.atomic_write_json(pathlib.Path(model_dir) / MODEL_CONFIG_FILE, fields)


def load_model_config(model_dir: PathLike) -> t5.T5Config:
    """Reads `model_config.json` from a run dir (or from the parent of a checkpoint dir)."""
    model_dir = pathlib.Path(model_dir)
    for candidate in (model_dir / MODEL_CONFIG_FILE, model_dir.parent / MODEL_CONFIG_FILE):
        if candidate.is_file():
            fields = json.loads(candidate.read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(t5.T5Config)}
            unknown = sorted(set(fields) - known)
            if unknown:
                raise errors.CheckpointError(f"{candidate}: unknown model config keys {unknown}")
            fields["mlp_activations"] = tuple(fields.get("mlp_activations", ("gelu", "linear")))
            return t5.T5Config(**fields)
    raise errors.CheckpointError(
        f"{model_dir}: no {MODEL_CONFIG_FILE} (is this a vertjax run dir?)"
    )


class CheckpointManager:
    """Keeps the last N checkpoints of a run; `restore` gives state sharded like the target."""

    def __init__(
        self,
        directory: PathLike,
        *,
        max_to_keep: int | None = 3,
        async_save: bool = False,
        read_only: bool = False,
    ):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            step_prefix=STEP_PREFIX,
            enable_async_checkpointing=async_save,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("params", "opt_state", "data")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(
        self, step: int, *, params: Any, opt_state: Any = None, data_state: dict | None = None
    ) -> None:
        items = {
            "params": ocp.args.StandardSave(params),
            "data": ocp.args.JsonSave(dict(data_state or {}, step=int(step))),
        }
        if opt_state is not None:
            items["opt_state"] = ocp.args.StandardSave(opt_state)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(
        self, step: int | None = None, *, abstract_params: Any, abstract_opt_state: Any = None
    ) -> tuple[Any, Any, dict]:
        """Restores (params, opt_state or None, data_state) at `step` (default: the latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise errors.CheckpointError(f"{self.directory}: no complete checkpoint to restore")
        items = {
            "params": ocp.args.StandardRestore(abstract_params),
            "data": ocp.args.JsonRestore(),
        }
        if abstract_opt_state is not None:
            items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise errors.CheckpointError(
                f"{self.directory}/{STEP_PREFIX}_{step}: cannot restore ({e})"
            ) from None
        opt_state = restored["opt_state"] if abstract_opt_state is not None else None
        return restored["params"], opt_state, dict(restored["data"] or {})

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def resolve_checkpoint(path: PathLike) -> tuple[pathlib.Path, int]:
    """`MODEL_DIR` (latest step) or `MODEL_DIR/checkpoint_<step>` → (model_dir, step)."""
    path = pathlib.Path(path).absolute()
    if path.name.startswith(f"{STEP_PREFIX}_") and path.name[len(STEP_PREFIX) + 1 :].isdigit():
        if not path.is_dir():
            raise errors.CheckpointError(f"{path}: checkpoint not found")
        return path.parent, int(path.name[len(STEP_PREFIX) + 1 :])
    if not path.is_dir():
        raise errors.CheckpointError(f"{path}: checkpoint directory not found")
    manager = CheckpointManager(path, read_only=True)
    step = manager.latest_step()
    manager.close()
    if step is None:
        raise errors.CheckpointError(f"{path}: no complete checkpoint in this directory")
    return path, step


def load_params(path: PathLike, *, abstract_params: Any = None) -> tuple[t5.T5Config, Any]:
    """Loads (model config, params) from a run dir or a `checkpoint_<step>` dir.

    Without `abstract_params` the params come back as host-local arrays on the default device.
    """
    model_dir, step = resolve_checkpoint(path)
    config = load_model_config(model_dir)
    if abstract_params is None:
        abstract_params = abstract_params_for(config)
    manager = CheckpointManager(model_dir, read_only=True)
    try:
        params, _, _ = manager.restore(step, abstract_params=abstract_params)
    finally:
        manager.close()
    logging.info("loaded params from %s step %d", model_dir, step)
    return config, params


def save_params(model_dir: PathLike, *, config: t5.T5Config, params: Any, step: int = 0) -> None:
    """Writes a params-only checkpoint (conversion output, exported models)."""
    save_model_config(model_dir, config)
    manager = CheckpointManager(model_dir, max_to_keep=None)
    try:
        manager.save(step, params=params)
        manager.wait_until_finished()
    finally:
        manager.close()


def abstract_params_for(config: t5.T5Config) -> Any:
    """ShapeDtypeStructs of the model's params on this process's first device, for restoring.

    The explicit sharding lets orbax restore a checkpoint saved on another topology (a pod or a
    multi-device mesh) into one local process.
    """
    from vertjax.models import encoder_decoder  # local: avoids a cycle at import time

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
        encoder_decoder.abstract_params(config),
    )
