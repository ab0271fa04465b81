"""The training loop on a synthetic source: metrics, eval, NaN/inf guard, data exhaustion, errors."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from synthetic_source import FiniteSource, SyntheticSource, tiny_model

from vertjax import errors
from vertjax.train import checkpoints, optimizers, restore, trainer


def _train(model_dir, **overrides) -> trainer.TrainResult:
    kwargs = dict(
        model_dir=str(model_dir),
        model=tiny_model(),
        train_data=SyntheticSource(batch_size=8),
        optimizer=optax.adam(1e-2),
        total_steps=4,
        checkpoint_period=2,
        progress=False,
    )
    kwargs.update(overrides)
    return trainer.train(**kwargs)


def test_metrics_eval_and_checkpoints_of_a_short_run(tmp_path):
    schedule = optimizers.warmup_cosine_schedule(
        peak_learning_rate=1e-2, warmup_steps=2, total_steps=4
    )
    result = _train(
        tmp_path,
        optimizer=optax.adam(schedule),
        learning_rate_fn=schedule,
        eval_data=FiniteSource(num_batches=2, batch_size=8, seed=1),
        eval_period=2,
        keep_checkpoints=1,
    )
    assert result.step == 4 and sorted(result.losses) == [1, 2, 3, 4]
    assert all(math.isfinite(v) for v in result.losses.values())

    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in records if "train/loss" in r}
    evals = {r["step"]: r for r in records if "eval/loss" in r}
    assert sorted(train) == [1, 2, 3, 4] and sorted(evals) == [2, 4]
    assert train[3]["train/loss"] == pytest.approx(result.losses[3], rel=1e-6)
    for key in ("train/accuracy", "train/grad_norm", "timing/target_tokens_per_second"):
        assert key in train[1]
    assert 0.0 <= train[4]["train/accuracy"] <= 1.0
    assert train[2]["train/learning_rate"] == pytest.approx(float(schedule(1)))
    # 2 eval batches of 8 examples, 4..8 target tokens each (see SyntheticSource).
    assert 2 * 8 * 4 <= evals[4]["eval/target_tokens"] <= 2 * 8 * 8
    assert evals[4]["eval/perplexity"] == pytest.approx(math.exp(evals[4]["eval/loss"]))
    assert checkpoints.CheckpointManager(tmp_path, read_only=True).all_steps() == [4]
    assert restore.load_model_config(tmp_path) == tiny_model().config
    assert list(tmp_path.glob("events.out.tfevents.*"))  # TensorBoard


def test_huge_learning_rate_stops_with_the_step_named(tmp_path):
    with pytest.raises(errors.TrainingError) as info:
        _train(tmp_path, optimizer=optax.sgd(1e12), total_steps=10, checkpoint_period=1)
    message = str(info.value)
    step = int(message.split("at step ")[1].split(";")[0])
    assert message.startswith(("loss is nan at step", "loss is inf at step"))
    assert 2 <= step <= 10
    assert f"the last checkpoint is step {step - 1}" in message
    # The checkpoints before the divergence are intact and the diverged step was not saved.
    kept = checkpoints.CheckpointManager(tmp_path, read_only=True).all_steps()
    assert max(kept) == step - 1


def test_poisoned_batch_stops_at_its_step(tmp_path):
    with pytest.raises(errors.TrainingError, match=r"loss is (inf|nan) at step 3;"):
        _train(tmp_path, train_data=SyntheticSource(batch_size=8, poison_batch=2))
    assert checkpoints.CheckpointManager(tmp_path, read_only=True).all_steps() == [2]


def test_running_out_of_data_is_a_training_error(tmp_path):
    with pytest.raises(errors.TrainingError, match="training data ran out at step 2"):
        _train(tmp_path, train_data=FiniteSource(num_batches=2, batch_size=8), total_steps=3)


def test_no_model_dir_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="MODEL_DIR"):
        _train("")


def test_initial_checkpoint_of_another_model_is_refused(tmp_path):
    other = tiny_model(emb_dim=16).config
    params = tiny_model(emb_dim=16).init_params(jax.random.key(0))
    restore.save_params(tmp_path / "other", config=other, params=params)
    with pytest.raises(errors.CheckpointError) as info:
        _train(tmp_path / "run", initial_checkpoint_path=str(tmp_path / "other"))
    message = str(info.value)
    assert str(tmp_path / "other") in message and "\n" not in message
    assert "another shape: emb_dim 16 (configured: 32)" in message


def test_finetuning_with_dropout_starts_from_a_checkpoint_trained_without(tmp_path):
    # T5X's recipe: pretrain with dropout 0, fine-tune with 0.1; only shape fields must match.
    pretrained = tiny_model(dropout_rate=0.0)
    params = pretrained.init_params(jax.random.key(7))
    restore.save_params(tmp_path / "pretrained", config=pretrained.config, params=params)
    tuned = tiny_model(dropout_rate=0.1)
    started = restore.warm_start(
        tuned,
        str(tmp_path / "pretrained"),
        abstract_params=restore.abstract_params_for(tuned.config),
    )
    for got, want in zip(jax.tree.leaves(started), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    result = _train(
        tmp_path / "run",
        model=tuned,
        total_steps=2,
        initial_checkpoint_path=str(tmp_path / "pretrained"),
    )
    assert result.step == 2 and all(math.isfinite(v) for v in result.losses.values())
    assert restore.load_model_config(tmp_path / "run").dropout_rate == 0.1


@pytest.mark.slow
def test_scanned_and_unscanned_runs_warm_start_from_each_other_and_train_alike(tmp_path):
    """An unscanned checkpoint starts a scanned run (and back): same losses with an elementwise
    optimizer; resuming a run dir with the other layout is refused with SCAN_LAYERS named."""
    plain, scanned = tiny_model(), tiny_model(scan_layers=True)
    restore.save_params(
        tmp_path / "plain", config=plain.config, params=plain.init_params(jax.random.key(3))
    )
    kwargs = dict(total_steps=2, checkpoint_period=2)
    want = _train(tmp_path / "a", initial_checkpoint_path=str(tmp_path / "plain"), **kwargs)
    got = _train(
        tmp_path / "b", model=scanned, initial_checkpoint_path=str(tmp_path / "plain"), **kwargs
    )
    for step in (1, 2):
        assert got.losses[step] == pytest.approx(want.losses[step], abs=1e-5)
    # the scanned run's checkpoint starts an unscanned run at the scanned model's loss
    again = _train(tmp_path / "c", initial_checkpoint_path=str(tmp_path / "b"), **kwargs)
    config, params = restore.load_params(tmp_path / "b")
    assert config.scan_layers
    first_batch = SyntheticSource(batch_size=8).global_batch(0)
    scanned_loss, _ = scanned.loss_fn(params, first_batch)
    assert again.losses[1] == pytest.approx(float(scanned_loss), abs=1e-5)
    with pytest.raises(errors.CheckpointError, match="SCAN_LAYERS = True, this run has SCAN"):
        _train(tmp_path / "b", total_steps=4)


def _nan_update_at(count: int) -> optax.GradientTransformation:
    """SGD whose update number `count` (0-based) is NaN: finite loss, non-finite new params."""
    return optax.chain(
        optax.sgd(1e-2), optax.scale_by_schedule(lambda c: jnp.where(c == count, jnp.nan, 1.0))
    )


def test_non_finite_updated_params_are_never_checkpointed(tmp_path):
    # Step 2's loss is finite (computed before the update) but its update is NaN: a loss-only
    # check would save step 2's NaN params as the checkpoint it then calls intact.
    with pytest.raises(errors.TrainingError) as info:
        _train(tmp_path, optimizer=_nan_update_at(1), checkpoint_period=2)
    assert str(info.value).startswith("updated params are not finite at step 2 (loss ")
    assert "no checkpoint was written" in str(info.value)
    assert checkpoints.CheckpointManager(tmp_path, read_only=True).all_steps() == []


def test_skipping_non_finite_steps_keeps_training_on_finite_params(tmp_path):
    result = _train(
        tmp_path,
        train_data=SyntheticSource(batch_size=8, poison_batch=1),
        skip_nonfinite_updates=True,
    )
    assert result.step == 4 and not math.isfinite(result.losses[2])
    assert all(math.isfinite(result.losses[s]) for s in (1, 3, 4))
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train/skipped_steps"] for r in records if "train/loss" in r] == [0, 1, 1, 1]
    _, params = restore.load_params(tmp_path)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_skipping_stops_after_too_many_non_finite_steps_in_a_row(tmp_path):
    # A skipped step keeps the optimizer state, so this NaN update comes back every step.
    with pytest.raises(errors.TrainingError) as info:
        _train(
            tmp_path,
            optimizer=_nan_update_at(1),
            total_steps=8,
            checkpoint_period=1,
            skip_nonfinite_updates=True,
            max_consecutive_nonfinite=3,
        )
    assert str(info.value).startswith("updated params are not finite at step 4 (loss ")
    assert "3 non-finite steps in a row" in str(info.value)
    assert "the last checkpoint is step 3, whose params are finite" in str(info.value)


def test_metrics_come_to_the_host_at_the_log_period_and_catch_nan_before_saving(tmp_path):
    result = _train(tmp_path / "ok", total_steps=6, checkpoint_period=6, log_period=4)
    assert sorted(result.losses) == [1, 2, 3, 4, 5, 6]
    lines = (tmp_path / "ok" / "metrics.jsonl").read_text().splitlines()
    assert [r["step"] for r in map(json.loads, lines) if "train/loss" in r] == [4, 6]
    # Batch 2 (step 3) is poisoned; nothing is fetched until the checkpoint at step 4, which the
    # guard stops before it is written.
    with pytest.raises(errors.TrainingError, match=r"loss is (inf|nan) at step 3;"):
        _train(
            tmp_path / "nan",
            train_data=SyntheticSource(batch_size=8, poison_batch=2),
            log_period=4,
            checkpoint_period=2,
        )
    assert checkpoints.CheckpointManager(tmp_path / "nan", read_only=True).all_steps() == [2]


def test_microbatched_training_takes_the_full_batch_steps(tmp_path):
    whole = _train(tmp_path / "whole", total_steps=3)
    micro = _train(tmp_path / "micro", total_steps=3, num_microbatches=4)
    for step in (1, 2, 3):
        assert micro.losses[step] == pytest.approx(whole.losses[step], abs=1e-5)
    with pytest.raises(errors.ConfigError, match="num_microbatches=3 does not divide"):
        _train(tmp_path / "bad", num_microbatches=3)


def test_batches_are_a_pure_function_of_their_position():
    source = SyntheticSource(batch_size=4)
    whole = [next(source.iterator(start_batch=i)) for i in range(3)]
    stream = source.iterator()
    for expected in whole:
        got = next(stream)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
    halves = [next(source.iterator(start_batch=1, shard_id=i, num_shards=2)) for i in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([h["encoder_input_tokens"] for h in halves]),
        whole[1]["encoder_input_tokens"],
    )


def test_start_up_stages_are_announced_before_the_first_step(tmp_path, capsys):
    """The seconds before the progress bar moves (restore, input pipeline, XLA compile) are named
    on stderr; a rerun of a finished run compiles nothing and says so by not announcing it."""
    _train(tmp_path, total_steps=2, progress=True)
    err = capsys.readouterr().err
    stages = ("initialising the params", "preparing the input pipeline", "compiling the train step")
    positions = [err.find(stage) for stage in stages]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), err
    _train(tmp_path, total_steps=2, progress=True)
    assert "compiling the train step" not in capsys.readouterr().err
    _train(tmp_path / "quiet", total_steps=1)  # progress=False: nothing printed
    assert capsys.readouterr().err == ""
