"""The training loop on a synthetic source: metrics, eval, NaN/inf guard, data exhaustion, errors."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import optax
import pytest
from synthetic_source import FiniteSource, SyntheticSource, tiny_model

from vertjax import errors
from vertjax.train import checkpoints, optimizers, trainer


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
    assert checkpoints.load_model_config(tmp_path) == tiny_model().config
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
    checkpoints.save_params(tmp_path / "other", config=other, params=params)
    with pytest.raises(errors.CheckpointError) as info:
        _train(tmp_path / "run", initial_checkpoint_path=str(tmp_path / "other"))
    message = str(info.value)
    assert str(tmp_path / "other") in message and "\n" not in message
    assert "cannot restore" in message or "does not match" in message


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
