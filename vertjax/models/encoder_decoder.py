"""`EncoderDecoderModel`: the T5 module plus its loss, scoring and initialisation (T5X's models.py).

The trainer, `vertjax eval ppl`, the NLI scorer and decoding all go through this class, so loss
normalisation and masking are defined once. Opening a trained checkpoint is `train/restore.py`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vertjax.models import losses, t5

Array = jax.Array
Batch = Mapping[str, Array]

MODEL_FEATURES = (
    "encoder_input_tokens",
    "decoder_input_tokens",
    "decoder_target_tokens",
    "encoder_segment_ids",
    "decoder_segment_ids",
    "encoder_positions",
    "decoder_positions",
)


def _dummy_batch(batch_size: int = 1, length: int = 8) -> dict[str, Array]:
    ones = jnp.ones((batch_size, length), jnp.int32)
    return {
        "encoder_input_tokens": ones,
        "decoder_input_tokens": ones,
        "decoder_target_tokens": ones,
    }


def abstract_variables(config: t5.T5Config) -> Any:
    """Boxed (LogicallyPartitioned) abstract variables: shapes, dtypes and logical axes."""
    module = t5.Transformer(config)
    return jax.eval_shape(
        lambda rng: module.init(rng, **_dummy_batch(), enable_dropout=False), jax.random.key(0)
    )


def _unbox(tree: Any) -> Any:
    """Strips the logical-axis boxes (shardings come from `logical_param_axes`, not from here)."""
    return jax.tree.map(
        lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.meta.AxisMetadata) else x,
        tree,
        is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata),
    )


def abstract_params(config: t5.T5Config) -> Any:
    return _unbox(abstract_variables(config)["params"])


def logical_param_axes(config: t5.T5Config) -> Any:
    """A pytree like the params whose leaves are `PartitionSpec`s of logical axis names."""
    return nn.get_partition_spec(abstract_variables(config)["params"])


@dataclasses.dataclass(frozen=True)
class EncoderDecoderModel:
    """Loss and scoring for a T5 `Transformer`.

    Attributes:
      config: the T5 hyper-parameters.
      z_loss: weight of the log(Z)^2 auxiliary loss (T5X default 1e-4).
      label_smoothing: target smoothing mass.
      loss_normalizing_factor: divide the summed loss by this constant instead of by the number
        of target tokens (T5X's option for reproducing Mesh-TF training curves).
    """

    config: t5.T5Config
    z_loss: float = 1e-4
    label_smoothing: float = 0.0
    loss_normalizing_factor: float | None = None

    @property
    def module(self) -> t5.Transformer:
        return t5.Transformer(self.config)

    @property
    def uses_dropout(self) -> bool:
        return self.config.dropout_rate > 0

    def abstract_params(self) -> Any:
        return abstract_params(self.config)

    def logical_param_axes(self) -> Any:
        return logical_param_axes(self.config)

    def init_params(self, rng: Array) -> Any:
        variables = self.module.init(rng, **_dummy_batch(), enable_dropout=False)
        return _unbox(variables["params"])

    def logits(self, params: Any, batch: Batch, *, dropout_rng: Array | None = None) -> Array:
        inputs = {k: batch[k] for k in MODEL_FEATURES if k in batch}
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
        return self.module.apply(
            {"params": params}, **inputs, enable_dropout=dropout_rng is not None, rngs=rngs
        )

    def loss_fn(
        self, params: Any, batch: Batch, *, dropout_rng: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Mean loss per target token (or per `loss_normalizing_factor`) and summed metrics."""
        logits = self.logits(params, batch, dropout_rng=dropout_rng)
        targets = batch["decoder_target_tokens"]
        weights = batch.get("decoder_loss_weights")
        if weights is None:
            weights = (targets > 0).astype(jnp.float32)
        weights = weights.astype(jnp.float32)
        token_loss, token_z, nll = losses.cross_entropy_with_logits(
            logits, targets, z_loss=self.z_loss, label_smoothing=self.label_smoothing
        )
        num_tokens = jnp.sum(weights)
        denominator = (
            self.loss_normalizing_factor
            if self.loss_normalizing_factor is not None
            else jnp.maximum(num_tokens, 1.0)
        )
        loss = jnp.sum(token_loss * weights) / denominator
        # The target holds the top logit (a tie counts as correct): argmax's (value, index) reduce
        # over the vocabulary costs ~20x a max on XLA:CPU, ~1% of a train step.
        target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        correct = (target_logit >= jnp.max(logits, axis=-1)).astype(jnp.float32)
        metrics = {
            "loss_sum": jnp.sum(token_loss * weights),
            "z_loss_sum": jnp.sum(token_z * weights),
            "nll_sum": jnp.sum(nll * weights),
            "correct_sum": jnp.sum(correct * weights),
            "num_tokens": num_tokens,
            "num_examples": jnp.sum(jnp.any(targets > 0, axis=-1).astype(jnp.float32)),
        }
        return loss, metrics

    def score_batch(self, params: Any, batch: Batch) -> Array:
        """Sum of target-token log-likelihoods per example (no dropout), `[batch]`.

        For packed batches use `token_scores` and reduce by segment instead.
        """
        return jnp.sum(self.token_scores(params, batch), axis=-1)

    def token_scores(self, params: Any, batch: Batch) -> Array:
        """log p(target token) at each non-padding target position, 0 elsewhere."""
        logits = self.logits(params, batch)
        targets = batch["decoder_target_tokens"]
        weights = batch.get("decoder_loss_weights", (targets > 0).astype(jnp.float32))
        return losses.token_log_likelihood(logits, targets) * weights
