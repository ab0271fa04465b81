"""Checkpoints through orbax: params, optimizer state and the data-iterator position.

Layout of a run directory: `MODEL_DIR/checkpoint_<step>/{params,opt_state,data}`; the model's
configs beside them are `restore.py`'s. orbax writes each step to a temporary directory and
renames it when complete, so a checkpoint left half-written by a kill is never listed, never
loaded. This module restores into given abstract params and knows no model classes.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import orbax.checkpoint as ocp

from vertjax import errors

PathLike = str | os.PathLike
STEP_PREFIX = "checkpoint"


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


def restore_params(model_dir: PathLike, step: int, *, abstract_params: Any) -> Any:
    """The params of `model_dir`'s checkpoint `step` (see `resolve_checkpoint`), restored like
    `abstract_params` (ShapeDtypeStructs, with shardings where they matter)."""
    manager = CheckpointManager(model_dir, read_only=True)
    try:
        params, _, _ = manager.restore(step, abstract_params=abstract_params)
    finally:
        manager.close()
    logging.info("loaded params from %s step %d", model_dir, step)
    return params
