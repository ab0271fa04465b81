"""`EncoderDecoderModel`: the T5 module plus its loss, scoring and initialisation (T5X's models.py).

The trainer, `vertjax eval ppl`, the NLI scorer and decoding all go through this class, so loss
normalisation and masking are defined once. `load_pretrained` is the one way to open a trained
checkpoint together with its SentencePiece vocab (callers hold the result as a
`vertjax.generators.t5.T5Client`), so every caller refuses a vocab that does not fit the model the
same way.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vertjax.models import losses, t5

if TYPE_CHECKING:
    import seqio

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

    def save_config(self, model_dir: str) -> None:
        from vertjax.train import checkpoints

        checkpoints.save_model_config(model_dir, self.config)

    def load_initial_params(self, path: str, *, abstract_params: Any) -> Any:
        """Params of another run or a converted checkpoint, cast to this model's dtype.

        Only the config fields that fix parameter shapes must match (`T5Config.param_mismatches`):
        dropout, dtype and the like are the new run's own.
        """
        from vertjax import errors
        from vertjax.train import checkpoints

        model_dir, _ = checkpoints.resolve_checkpoint(path)
        config = checkpoints.load_model_config(model_dir)
        mismatches = self.config.param_mismatches(config)
        if mismatches:  # checked before restoring: orbax's shape errors say less
            fields = ", ".join(
                f"{k} {theirs!r} (configured: {mine!r})" for k, (mine, theirs) in mismatches.items()
            )
            raise errors.CheckpointError(
                f"{path}: the checkpoint's model has another shape: {fields}"
            )
        _, params = checkpoints.load_params(path, abstract_params=abstract_params)
        return params

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
        correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
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


@dataclasses.dataclass(frozen=True)
class LoadedT5:
    """A checkpoint opened for inference: the model, its params and the vocab it reads.

    Attributes:
      model: the `EncoderDecoderModel` built from the run's `model_config.json`.
      params: the restored params (host-local arrays on the default device).
      vocabulary: the seqio SentencePiece vocabulary (with its extra ids).
      model_dir: the run directory the checkpoint belongs to.
      step: the step that was loaded (the latest one when a run dir was given).
    """

    model: EncoderDecoderModel
    params: Any
    vocabulary: seqio.Vocabulary
    model_dir: pathlib.Path
    step: int


def load_pretrained(checkpoint: str | os.PathLike, vocab: str | os.PathLike) -> LoadedT5:
    """Loads a run dir (latest step) or `checkpoint_<step>` dir and its SentencePiece vocab.

    The vocab is checked against the model's embedding table before the params are restored, so a
    wrong vocab is one `ConfigError` naming both paths instead of out-of-range token ids later.
    """
    from vertjax.data import vocab as vocab_lib
    from vertjax.train import checkpoints

    model_dir, step = checkpoints.resolve_checkpoint(checkpoint)
    config = checkpoints.load_model_config(model_dir)
    vocabulary = vocab_lib.load_vocab(vocab)
    vocab_lib.check_fits_model(
        vocabulary, config.vocab_size, vocab_path=vocab, model=f"the model in {checkpoint}"
    )
    step_dir = model_dir / f"{checkpoints.STEP_PREFIX}_{step}"  # the step resolved above
    _, params = checkpoints.load_params(step_dir)
    return LoadedT5(
        model=EncoderDecoderModel(config),
        params=params,
        vocabulary=vocabulary,
        model_dir=model_dir,
        step=step,
    )
