"""The training loop: jitted, sharded train/eval steps, metrics, NaN guard, checkpoints, resume.

`train(...)` is what `vertjax train --gin_file=...` runs (T5X's `train.train`). Re-running the same
command with the same `MODEL_DIR` resumes from the latest complete checkpoint, including the data
position, so a resumed run sees exactly the batches (and dropout keys) it would have seen.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vertjax import errors
from vertjax.train import checkpoints, metrics_writer, microbatches, partitioning, restore

Batch = Mapping[str, np.ndarray]


class TrainableModel(Protocol):
    """What the trainer needs of a model (`EncoderDecoderModel`, `DualEncoderModel`,
    `NLIClassifierModel`); its run-dir configs and warm start are `restore.py`'s."""

    def init_params(self, rng: jax.Array) -> Any: ...

    def abstract_params(self) -> Any: ...

    def logical_param_axes(self) -> Any: ...

    def loss_fn(
        self, params: Any, batch: Batch, *, dropout_rng: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

    @property
    def uses_dropout(self) -> bool: ...

    @property
    def config(self) -> Any:
        """The `T5Config` of the model's T5 stack (written to the run dir by `restore`)."""
        ...


class DataSource(Protocol):
    """Anything that yields numpy batches deterministically from a given batch position."""

    def iterator(self, *, start_batch: int, shard_id: int, num_shards: int) -> Iterator[Batch]: ...


@dataclasses.dataclass(frozen=True)
class TrainResult:
    step: int
    losses: dict[int, float]
    model_dir: str


@dataclasses.dataclass
class Steps:
    """The compiled step functions and the shardings they were compiled for."""

    train: Callable
    eval: Callable
    param_shardings: Any
    opt_shardings: Any


def build_steps(
    *,
    model: TrainableModel,
    optimizer: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    rules: partitioning.LogicalRules,
    dropout_seed: int,
    num_microbatches: int = 1,
    skip_nonfinite_updates: bool = False,
) -> Steps:
    """Jits the train and eval steps for `mesh`.

    The train step reports `finite`: loss, gradients' global norm and every updated parameter
    are finite. With `skip_nonfinite_updates` a step that is not keeps the previous params and
    optimizer state (optax's `apply_if_finite`, but also checking the updated params).
    """
    abstract_params = model.abstract_params()
    logical_axes = model.logical_param_axes()
    param_shardings = partitioning.logical_to_shardings(logical_axes, mesh, rules)
    abstract_opt = jax.eval_shape(optimizer.init, abstract_params)
    opt_shardings = partitioning.opt_state_shardings(
        abstract_opt, abstract_params, param_shardings, mesh
    )
    batch_sharding = partitioning.batch_sharding(mesh)
    replicated = partitioning.replicated(mesh)
    use_dropout = model.uses_dropout
    per_token_mean = getattr(model, "loss_normalizing_factor", None) is None

    def train_step(params, opt_state, batch, step):
        rng = jax.random.fold_in(jax.random.key(dropout_seed), step) if use_dropout else None
        loss, metrics, grads = microbatches.loss_and_grads(
            model.loss_fn,
            params,
            batch,
            dropout_rng=rng,
            num_microbatches=num_microbatches,
            per_token_mean=per_token_mean,
        )
        grad_norm = optax.global_norm(grads)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite(new_params)
        if skip_nonfinite_updates:
            keep = functools.partial(jnp.where, finite)
            new_params = jax.tree.map(keep, new_params, params)
            new_opt_state = jax.tree.map(keep, new_opt_state, opt_state)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, finite=finite)
        return new_params, new_opt_state, metrics

    def eval_step(params, batch):
        _, metrics = model.loss_fn(params, batch)
        return metrics

    train = jax.jit(
        train_step,
        in_shardings=(param_shardings, opt_shardings, batch_sharding, replicated),
        out_shardings=(param_shardings, opt_shardings, replicated),
        donate_argnums=(0, 1),
    )
    evaluate = jax.jit(
        eval_step, in_shardings=(param_shardings, batch_sharding), out_shardings=replicated
    )
    return Steps(train, evaluate, param_shardings, opt_shardings)


def _check_counts(**counts: tuple[Any, int]) -> None:
    """`ConfigError` naming `trainer.train.<name>` when a value (often a REQUIRED macro given on
    the command line, e.g. `--gin.TRAIN_STEPS=abc`) is not an integer >= its minimum."""
    for name, (value, minimum) in counts.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise errors.ConfigError(
                f"trainer.train.{name} = {value!r}: must be an integer >= {minimum}"
            )


def _all_finite(tree: Any) -> jax.Array:
    """True when every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _abstract_with_shardings(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def train(
    *,
    model_dir: str,
    model: TrainableModel,
    train_data: DataSource,
    optimizer: optax.GradientTransformation,
    learning_rate_fn: Callable[[int], Any] | None = None,
    total_steps: int,
    eval_data: DataSource | None = None,
    eval_period: int = 0,
    eval_batches: int = 10,
    checkpoint_period: int = 100,
    keep_checkpoints: int | None = 3,
    async_checkpointing: bool = False,
    mesh_shape: Sequence[int] = (-1, 1),
    parameter_partitioning_dims: int = 1,
    seed: int = 0,
    initial_checkpoint_path: str | None = None,
    log_period: int = 1,
    progress: bool = True,
    num_microbatches: int = 1,
    skip_nonfinite_updates: bool = False,
    max_consecutive_nonfinite: int = 10,
) -> TrainResult:
    """Trains `model` to `total_steps`, resuming from `model_dir` if it holds checkpoints.

    Args:
      model_dir: run directory (checkpoints, config.gin, metrics.jsonl, TensorBoard events).
      train_data / eval_data: deterministic batch sources (`vertjax.data.pipeline.DatasetConfig`).
      optimizer / learning_rate_fn: optax transformation and the schedule it uses (for logging).
      initial_checkpoint_path: params to start from (continued pretraining, fine-tuning) when
        `model_dir` has no checkpoint yet; the optimizer state starts fresh.
      mesh_shape: `(data, model)`; `-1` takes the remaining devices.
      log_period: metrics (and the non-finite check) come to the host every `log_period` steps
        and before every eval and checkpoint, so steps are dispatched without waiting.
      num_microbatches: split each batch into this many slices and accumulate their gradients
        (same update, less activation memory).
      skip_nonfinite_updates: a step whose loss, gradients or updated params are not finite
        leaves params and optimizer state unchanged (counted in `train/skipped_steps`);
        training stops after `max_consecutive_nonfinite` such steps in a row. False: the first
        one stops training. Either way no non-finite params are ever checkpointed.
    """
    _check_counts(
        total_steps=(total_steps, 0),
        eval_period=(eval_period, 0),
        eval_batches=(eval_batches, 1),
        checkpoint_period=(checkpoint_period, 1),
        log_period=(log_period, 1),
        num_microbatches=(num_microbatches, 1),
        max_consecutive_nonfinite=(max_consecutive_nonfinite, 1),
        seed=(seed, 0),
    )
    if not model_dir:
        raise errors.ConfigError("MODEL_DIR is not set (pass --gin.MODEL_DIR=...)")
    if num_microbatches > 1 and getattr(model, "loss_couples_examples", False):
        raise errors.ConfigError(
            f"trainer.train.num_microbatches = {num_microbatches} (NUM_MICROBATCHES): this"
            " model's loss compares each example with the rest of the batch (in-batch"
            " negatives), so microbatches would shrink the negatives and change the loss;"
            " train it with NUM_MICROBATCHES = 1 (a smaller BATCH_SIZE if memory is short)"
        )
    check_vocab_fits(model=model, data=train_data)
    if initial_checkpoint_path:  # before anything is written or restored
        from vertjax.train import run_vocab

        run_vocab.check_warm_start_vocab(
            initial_checkpoint_path, vocab=run_vocab.data_vocab(train_data)
        )
    model_dir = os.path.abspath(model_dir)
    pathlib.Path(model_dir).mkdir(parents=True, exist_ok=True)
    mesh = partitioning.create_mesh(mesh_shape)
    rules = partitioning.standard_logical_axis_rules(
        parameter_partitioning_dims=parameter_partitioning_dims
    )
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        steps = build_steps(
            model=model,
            optimizer=optimizer,
            mesh=mesh,
            rules=rules,
            dropout_seed=seed + 1,
            num_microbatches=num_microbatches,
            skip_nonfinite_updates=skip_nonfinite_updates,
        )
        manager = checkpoints.CheckpointManager(
            model_dir, max_to_keep=keep_checkpoints, async_save=async_checkpointing
        )
        try:
            return _run(
                model_dir=model_dir,
                model=model,
                steps=steps,
                manager=manager,
                mesh=mesh,
                optimizer=optimizer,
                learning_rate_fn=learning_rate_fn,
                train_data=train_data,
                eval_data=eval_data,
                eval_period=eval_period,
                eval_batches=eval_batches,
                total_steps=total_steps,
                checkpoint_period=checkpoint_period,
                seed=seed,
                initial_checkpoint_path=initial_checkpoint_path,
                log_period=log_period,
                progress=progress,
                guard=_NonFiniteGuard(
                    manager=manager,
                    skip=skip_nonfinite_updates,
                    max_consecutive=max_consecutive_nonfinite if skip_nonfinite_updates else 1,
                ),
            )
        finally:
            manager.wait_until_finished()
            manager.close()


def check_vocab_fits(*, model: Any, data: Any) -> None:
    """`ConfigError` naming the vocab when the task's vocab has ids beyond the model's embedding
    table (`VOCAB_SIZE` too small): such ids index past the table and training NaNs at step 1.

    Only for seqio-task data (`mixture_or_task_name`) and models with a `config.vocab_size`.
    """
    from vertjax.data import pipeline
    from vertjax.data import vocab as vocab_lib

    name = getattr(data, "mixture_or_task_name", None)
    model_vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(name, str) or not isinstance(model_vocab_size, int):
        return
    try:
        vocabulary = pipeline.get_vocabulary(name)
    except ValueError:  # not registered: reading the data reports that, naming the tasks known
        return
    path = getattr(vocabulary, "sentencepiece_model_file", None) or f"of task {name}"
    vocab_lib.check_fits_model(
        vocabulary, model_vocab_size, vocab_path=path, model="the model's VOCAB_SIZE"
    )


def _initial_state(*, model, steps, manager, optimizer, seed, initial_checkpoint_path, model_dir):
    """(params, opt_state, start_step, data_state): resumed, warm-started or fresh."""
    abstract_params = _abstract_with_shardings(model.abstract_params(), steps.param_shardings)
    abstract_opt = _abstract_with_shardings(
        jax.eval_shape(optimizer.init, model.abstract_params()),
        steps.opt_shardings,
    )
    latest = manager.latest_step()
    if latest is not None:
        logging.info("resuming %s from step %d", model_dir, latest)
        restore.check_resume_layout(model_dir, model.config)
        params, opt_state, data_state = manager.restore(
            latest, abstract_params=abstract_params, abstract_opt_state=abstract_opt
        )
        return params, opt_state, latest, data_state
    if initial_checkpoint_path:
        params = restore.warm_start(model, initial_checkpoint_path, abstract_params=abstract_params)
    else:
        init = jax.jit(model.init_params, out_shardings=steps.param_shardings)
        params = init(jax.random.key(seed))
    opt_state = jax.jit(optimizer.init, out_shardings=steps.opt_shardings)(params)
    return params, opt_state, 0, {}


def _run(
    *,
    model_dir,
    model,
    steps,
    manager,
    mesh,
    optimizer,
    learning_rate_fn,
    train_data,
    eval_data,
    eval_period,
    eval_batches,
    total_steps,
    checkpoint_period,
    seed,
    initial_checkpoint_path,
    log_period,
    progress,
    guard,
) -> TrainResult:
    from tqdm import tqdm

    say = _status_printer(progress)
    say("vertjax train: restoring or initialising the params ...")
    params, opt_state, step, data_state = _initial_state(
        model=model,
        steps=steps,
        manager=manager,
        optimizer=optimizer,
        seed=seed,
        initial_checkpoint_path=initial_checkpoint_path,
        model_dir=model_dir,
    )
    restore.save_config(model_dir, model)
    batches_consumed = int(data_state.get("batches_consumed", step))
    say(f"vertjax train: preparing the input pipeline at step {step} ...")
    batches = train_data.iterator(
        start_batch=batches_consumed,
        shard_id=jax.process_index(),
        num_shards=jax.process_count(),
    )
    writer = metrics_writer.MetricsWriter(model_dir, resume_step=step)
    losses: dict[int, float] = {}
    bar = tqdm(
        total=total_steps,
        initial=step,
        desc="train",
        unit="step",
        disable=not progress or jax.process_index() != 0,
    )
    pending: list[tuple[int, Any]] = []  # (step, metrics on the devices) not yet checked
    window_start = time.perf_counter()
    batch = _next_batch(batches, mesh) if step < total_steps else None
    if step < total_steps:
        say("vertjax train: compiling the train step (XLA; the first step waits for it) ...")
    try:
        while step < total_steps:
            if batch is None:
                raise errors.TrainingError(
                    f"training data ran out at step {step}; use num_epochs=None or fewer steps"
                )
            params, opt_state, metrics = steps.train(params, opt_state, batch, np.int32(step))
            step += 1
            batches_consumed += 1
            pending.append((step, metrics))
            # Put the next batch on the devices while this step runs.
            batch = _next_batch(batches, mesh) if step < total_steps else None
            log_now = step % log_period == 0 or step == total_steps
            eval_now = eval_data is not None and eval_period and step % eval_period == 0
            save_now = step % checkpoint_period == 0 or step == total_steps
            if not (log_now or eval_now or save_now):
                continue
            # Checked before anything reads the params: no non-finite params are evaluated or
            # checkpointed.
            fetched = jax.device_get([m for _, m in pending])
            step_time = (time.perf_counter() - window_start) / len(pending)
            for (at, _), values in zip(pending, fetched, strict=True):
                guard.check(at, values)
                losses[at] = float(values["loss"])
            bar.set_postfix(loss=f"{losses[step]:.4f}")
            bar.update(len(pending))
            pending.clear()
            if log_now:
                summary = _train_summary(fetched[-1], step_time, step, learning_rate_fn)
                writer.write(step, dict(summary, **guard.summary()))
            if eval_now:
                writer.write(step, evaluate(steps.eval, params, eval_data, eval_batches, mesh))
            if save_now:
                manager.save(
                    step,
                    params=params,
                    opt_state=opt_state,
                    data_state={"batches_consumed": batches_consumed},
                )
            window_start = time.perf_counter()
    finally:
        bar.close()
        writer.close()
    return TrainResult(step=step, losses=losses, model_dir=model_dir)


def _status_printer(progress: bool) -> Callable[[str], None]:
    """Prints start-up stages on stderr above the progress bar (process 0, with `progress`), so
    the seconds before the first step (restore, input pipeline, XLA compile) are not silent."""
    from tqdm import tqdm

    def say(text: str) -> None:
        if progress and jax.process_index() == 0:
            tqdm.write(text, file=sys.stderr)

    return say


def _next_batch(batches: Iterator[Batch], mesh) -> dict[str, jax.Array] | None:
    """The next batch, sharded onto the devices (transfer started), or None when data ran out."""
    try:
        local_batch = next(batches)
    except StopIteration:
        return None
    return partitioning.global_batch(dict(local_batch), mesh)


class _NonFiniteGuard:
    """Stops training at a non-finite step (or, when skipping, after `max_consecutive` in a row).

    Steps are checked before their params are evaluated or saved, so every checkpoint it names
    holds finite params.
    """

    def __init__(self, *, manager: checkpoints.CheckpointManager, skip: bool, max_consecutive: int):
        self.manager = manager
        self.skip = skip
        self.max_consecutive = max_consecutive
        self.streak = 0
        self.skipped = 0

    def check(self, step: int, metrics: Mapping[str, Any]) -> None:
        if bool(metrics["finite"]):
            self.streak = 0
            return
        self.streak += 1
        self.skipped += 1
        if self.streak < self.max_consecutive:
            logging.warning("step %d is not finite; its update was skipped", step)
            return
        loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
        if not math.isfinite(loss):
            what = f"loss is {loss} at step {step}"
        elif not math.isfinite(grad_norm):
            what = f"gradient norm is {grad_norm} at step {step} (loss {loss:.4g})"
        else:
            what = f"updated params are not finite at step {step} (loss {loss:.4g})"
        if self.skip:
            what += f", after {self.streak} non-finite steps in a row (all skipped)"
        latest = self.manager.latest_step()
        saved = (
            "no checkpoint was written"
            if latest is None
            else f"the last checkpoint is step {latest}, whose params are finite"
        )
        raise errors.TrainingError(f"{what}; {saved} (lower the learning rate or check the data)")

    def summary(self) -> dict[str, float]:
        return {"train/skipped_steps": float(self.skipped)} if self.skip else {}


def _train_summary(
    metrics: Mapping[str, Any], step_time: float, step: int, learning_rate_fn
) -> dict[str, float]:
    tokens = float(metrics["num_tokens"])
    summary = {
        "train/loss": float(metrics["loss"]),
        "train/z_loss": float(metrics["z_loss_sum"]) / max(tokens, 1.0),
        "train/accuracy": float(metrics["correct_sum"]) / max(tokens, 1.0),
        "train/grad_norm": float(metrics["grad_norm"]),
        "train/target_tokens": tokens,
        "timing/step_seconds": step_time,
        "timing/target_tokens_per_second": tokens / max(step_time, 1e-9),
    }
    if learning_rate_fn is not None:
        summary["train/learning_rate"] = float(learning_rate_fn(jnp.asarray(step - 1)))
    return summary


def evaluate(
    eval_step: Callable, params: Any, data: DataSource, num_batches: int | None, mesh
) -> dict[str, float]:
    """Loss, token accuracy and perplexity = exp(mean NLL per non-padding target token)."""
    totals: dict[str, float] = {}
    iterator = data.iterator(
        start_batch=0, shard_id=jax.process_index(), num_shards=jax.process_count()
    )
    for i, local_batch in enumerate(iterator):
        if num_batches is not None and i >= num_batches:
            break
        metrics = jax.device_get(
            eval_step(params, partitioning.global_batch(dict(local_batch), mesh))
        )
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    tokens = max(totals.get("num_tokens", 0.0), 1.0)
    nll = totals.get("nll_sum", 0.0) / tokens
    return {
        "eval/loss": nll,
        "eval/accuracy": totals.get("correct_sum", 0.0) / tokens,
        "eval/perplexity": float(math.exp(min(nll, 700.0))),
        "eval/target_tokens": totals.get("num_tokens", 0.0),
    }
