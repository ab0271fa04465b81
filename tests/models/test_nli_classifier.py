"""The T5-encoder NLI classifier: shapes, warm start from a T5 checkpoint, it learns, it saves."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import save_tiny_t5, tiny_t5_config

from vertjax import errors
from vertjax.models import nli_classifier
from vertjax.train import checkpoints, optimizers, restore, trainer


def _batch(labels, *, size=8, seed=0):
    """Hypotheses copied from the premise (label 0) or made of unrelated ids (label 1)."""
    rng = np.random.default_rng(seed)
    premise = rng.integers(3, 40, (size, 12))
    hypothesis = np.where((labels == 0)[:, None], premise[:, :6], rng.integers(40, 80, (size, 6)))
    return {
        "hypothesis_tokens": hypothesis.astype(np.int32),
        "premise_tokens": premise.astype(np.int32),
        "labels": labels.astype(np.int32),
    }


class _Source:
    def iterator(self, *, start_batch: int, shard_id: int, num_shards: int):
        index = start_batch
        while True:
            labels = (
                np.random.default_rng(index).integers(0, 2, 8) * 2
            )  # entailment | contradiction
            yield _batch(labels, seed=index)
            index += 1


def test_loss_and_log_probs_shapes():
    model = nli_classifier.NLIClassifierModel(tiny_t5_config(100), hidden_dim=16)
    params = model.init_params(jax.random.key(0))
    batch = _batch(np.array([0, 1, 2, 0, 1, 2, 0, 1]))
    loss, metrics = model.loss_fn(params, batch)
    assert np.isfinite(float(loss)) and float(metrics["num_examples"]) == 8
    log_probs = np.asarray(model.log_probs(params, batch))
    assert log_probs.shape == (8, 3)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, rtol=1e-5)


def test_warm_start_takes_the_t5_encoder_and_refuses_other_shapes(tmp_path):
    _, t5_params = save_tiny_t5(tmp_path / "t5", vocab_size=100)
    model = nli_classifier.NLIClassifierModel(tiny_t5_config(100), hidden_dim=16)
    params = restore.warm_start(
        model, str(tmp_path / "t5"), abstract_params=model.abstract_params()
    )
    np.testing.assert_array_equal(
        params["token_embedder"]["embedding"], t5_params["token_embedder"]["embedding"]
    )
    assert "head" in params
    other = nli_classifier.NLIClassifierModel(tiny_t5_config(120), hidden_dim=16)
    with pytest.raises(errors.CheckpointError, match="does not match"):
        restore.warm_start(other, str(tmp_path / "t5"), abstract_params=other.abstract_params())


def test_it_learns_to_tell_copied_from_unrelated_hypotheses_and_reloads(tmp_path):
    model = nli_classifier.NLIClassifierModel(tiny_t5_config(100), hidden_dim=16)
    result = trainer.train(
        model_dir=str(tmp_path / "run"),
        model=model,
        train_data=_Source(),
        optimizer=optimizers.adamw(learning_rate=0.01, weight_decay=0.0),
        total_steps=40,
        checkpoint_period=40,
        seed=0,
        progress=False,
    )
    losses = list(result.losses.values())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert restore.is_classifier_run(tmp_path / "run")
    loaded, params = restore.load_classifier(str(tmp_path / "run"))
    assert loaded == model
    held_out = _batch(np.array([0, 2] * 4), seed=999)
    predicted = np.argmax(np.asarray(loaded.log_probs(params, held_out)), axis=-1)
    assert np.mean(predicted == held_out["labels"]) >= 0.75
    assert checkpoints.resolve_checkpoint(tmp_path / "run")[1] == 40
