"""Checkpoints: exact resume after a SIGKILL, half-written checkpoints never loaded, keep-N, errors."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from synthetic_source import SyntheticSource, tiny_model

from vertjax import errors
from vertjax.train import checkpoints, trainer

HERE = pathlib.Path(__file__).resolve().parent
TOTAL, PERIOD, HANG_AT_STEP = 20, 10, 14
# The trainer reads the next batch before it logs a step, so the step before the one whose
# batch hangs is the last one logged.
LAST_LOGGED = HANG_AT_STEP - 2

# Trains like `_train` below, but the data source blocks forever before step HANG_AT_STEP, so the
# test can SIGKILL the process at a known point: checkpoint 10 written, steps 11..12 logged.
KILLED_RUN = """
import sys, time
sys.path.insert(0, {here!r})
import optax
from synthetic_source import SyntheticSource, tiny_model
from vertjax.train import trainer


class Hangs(SyntheticSource):
    def global_batch(self, index):
        if index == {hang_at} - 1:
            time.sleep(3600)
        return super().global_batch(index)


trainer.train(
    model_dir=sys.argv[1], model=tiny_model(**{overrides!r}), train_data=Hangs(batch_size=8),
    optimizer=optax.adam(1e-2), total_steps={total}, checkpoint_period={period}, progress=False,
    num_microbatches={microbatches}, async_checkpointing={async_save},
)
"""
# The scale knobs of issue 17 at once (with 2 microbatches and async checkpointing): each must
# keep a killed run's resume bit-identical.
SCALE_KNOBS = {"remat_policy": "full", "scan_layers": True}


def _train(
    model_dir,
    *,
    total_steps=TOTAL,
    checkpoint_period=PERIOD,
    overrides=None,
    num_microbatches=1,
    async_checkpointing=False,
) -> trainer.TrainResult:
    return trainer.train(
        model_dir=str(model_dir),
        model=tiny_model(**(overrides or {})),
        train_data=SyntheticSource(batch_size=8),
        optimizer=optax.adam(1e-2),
        total_steps=total_steps,
        checkpoint_period=checkpoint_period,
        progress=False,
        num_microbatches=num_microbatches,
        async_checkpointing=async_checkpointing,
    )


def _logged_losses(model_dir) -> list[tuple[int, float]]:
    lines = (pathlib.Path(model_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r["train/loss"]) for r in map(json.loads, lines) if "train/loss" in r]


def _wait_for(predicate, proc, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the killed run never reached its kill point"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, num_microbatches, async_checkpointing",
    [({}, 1, False), (SCALE_KNOBS, 2, True)],
    ids=["plain", "scan+remat+microbatches+async"],
)
def test_sigkill_then_rerun_gives_the_same_loss_at_every_step(
    tmp_path, overrides, num_microbatches, async_checkpointing
):
    knobs = dict(
        overrides=overrides,
        num_microbatches=num_microbatches,
        async_checkpointing=async_checkpointing,
    )
    straight = _train(tmp_path / "straight", **knobs)

    run_dir = tmp_path / "killed"
    script = tmp_path / "killed_run.py"
    script.write_text(
        KILLED_RUN.format(
            here=str(HERE),
            hang_at=HANG_AT_STEP,
            total=TOTAL,
            period=PERIOD,
            overrides=overrides,
            microbatches=num_microbatches,
            async_save=async_checkpointing,
        ),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    try:
        _wait_for(
            lambda: (
                (run_dir / f"checkpoint_{PERIOD}").is_dir()
                and (run_dir / "metrics.jsonl").is_file()
                and f'"step": {LAST_LOGGED},' in (run_dir / "metrics.jsonl").read_text("utf-8")
            ),
            proc,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert [s for s, _ in _logged_losses(run_dir)] == list(range(1, LAST_LOGGED + 1))
    # A save the kill interrupted: orbax's temporary directory for a later step, full of junk.
    half_written = run_dir / f"checkpoint_{HANG_AT_STEP}.orbax-checkpoint-tmp-1234567"
    (half_written / "params").mkdir(parents=True)
    (half_written / "params" / "junk").write_bytes(b"\x00not a checkpoint")
    assert checkpoints.CheckpointManager(run_dir, read_only=True).all_steps() == [PERIOD]

    resumed = _train(run_dir, **knobs)
    assert sorted(resumed.losses) == list(range(PERIOD + 1, TOTAL + 1))  # restarted from 10
    for step in range(PERIOD + 1, TOTAL + 1):
        assert resumed.losses[step] == straight.losses[step], step
    # metrics.jsonl drops the killed run's steps 11..12 and reads as one clean history.
    assert _logged_losses(run_dir) == _logged_losses(tmp_path / "straight")
    assert not half_written.exists()
    assert checkpoints.CheckpointManager(run_dir, read_only=True).all_steps() == [PERIOD, TOTAL]


@pytest.mark.slow
def test_resume_in_process_is_exact_and_rerun_when_done_is_a_no_op(tmp_path):
    straight = _train(tmp_path / "straight", total_steps=6, checkpoint_period=3)
    _train(tmp_path / "resumed", total_steps=3, checkpoint_period=3)
    resumed = _train(tmp_path / "resumed", total_steps=6, checkpoint_period=3)
    assert resumed.losses == {s: straight.losses[s] for s in (4, 5, 6)}
    again = _train(tmp_path / "resumed", total_steps=6, checkpoint_period=3)
    assert again.step == 6 and again.losses == {}


def _tree(value: float) -> dict:
    return {"w": jnp.full((4, 2), value, jnp.float32), "b": jnp.arange(3, dtype=jnp.float32)}


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def test_temporary_checkpoint_dirs_are_never_listed_or_loaded(tmp_path):
    manager = checkpoints.CheckpointManager(tmp_path)
    manager.save(1, params=_tree(1.0), data_state={"batches_consumed": 1})
    manager.wait_until_finished()
    manager.close()
    (tmp_path / "checkpoint_30.orbax-checkpoint-tmp-42" / "params").mkdir(parents=True)

    reader = checkpoints.CheckpointManager(tmp_path, read_only=True)
    assert reader.latest_step() == 1
    params, opt_state, data = reader.restore(abstract_params=_abstract(_tree(0.0)))
    np.testing.assert_array_equal(params["w"], np.ones((4, 2)))
    assert opt_state is None
    assert data == {"batches_consumed": 1, "step": 1}


def test_keeps_the_last_n_checkpoints(tmp_path):
    manager = checkpoints.CheckpointManager(tmp_path, max_to_keep=2)
    for step in (1, 2, 3, 4):
        manager.save(step, params=_tree(float(step)))
    manager.wait_until_finished()
    assert manager.all_steps() == [3, 4]
    params, _, data = manager.restore(3, abstract_params=_abstract(_tree(0.0)))
    np.testing.assert_array_equal(params["w"], np.full((4, 2), 3.0))
    assert data["step"] == 3
    manager.close()


def test_restoring_into_a_different_model_is_a_checkpoint_error(tmp_path):
    manager = checkpoints.CheckpointManager(tmp_path)
    manager.save(1, params=_tree(1.0))
    manager.wait_until_finished()
    wrong = {"w": jax.ShapeDtypeStruct((5, 2), jnp.float32), "b": _abstract(_tree(0.0))["b"]}
    with pytest.raises(errors.CheckpointError, match="checkpoint_1: cannot restore"):
        manager.restore(1, abstract_params=wrong)
    manager.close()


def test_missing_or_empty_checkpoint_paths_are_named(tmp_path):
    with pytest.raises(errors.CheckpointError, match="checkpoint directory not found"):
        checkpoints.resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(errors.CheckpointError, match="checkpoint_7: checkpoint not found"):
        checkpoints.resolve_checkpoint(tmp_path / "checkpoint_7")
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.CheckpointError, match="no complete checkpoint"):
        checkpoints.resolve_checkpoint(tmp_path / "empty")
