"""Dual encoders for dense retrieval: GTR (one shared T5 encoder) and DPR (two towers).

A tower embeds tokens with the T5 encoder, mean-pools over non-padding tokens, projects linearly
and L2-normalises (GTR). A tower's parameters keep T5X names (`token_embedder`, `encoder`,
`projection`), so the encoder of any vertjax/HF T5 checkpoint loads into it directly. GTR has one
tower (`tower/...`); DPR has `question_tower/...` and `passage_tower/...`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vertjax.models import encoder_decoder, layers, losses, t5, t5_encoder

Array = jax.Array
# Mean pairwise cosine of pooled encoder states (random probe inputs) above which an initial
# encoder counts as collapsed: a random T5 encoder gives ~0.3 here.
COLLAPSED_COSINE = 0.95


class EncoderTower(nn.Module):
    """T5 encoder → masked mean pooling → projection → L2 normalisation."""

    config: t5.T5Config
    projection_dim: int

    def setup(self) -> None:
        self.token_embedder, self.encoder = t5_encoder.embedder_and_encoder(self.config)
        self.projection = layers.Dense(
            self.projection_dim, ("embed", "projection"), dtype=jnp.float32
        )

    def __call__(self, tokens: Array, *, enable_dropout: bool = False) -> Array:
        hidden = self.encoder(tokens, enable_dropout=enable_dropout).astype(jnp.float32)
        mask = (tokens > 0).astype(jnp.float32)[..., None]
        pooled = jnp.sum(hidden * mask, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
        projected = self.projection(pooled)
        return projected / jnp.maximum(jnp.linalg.norm(projected, axis=-1, keepdims=True), 1e-12)


class GTR(nn.Module):
    """One tower for questions and passages."""

    config: t5.T5Config
    projection_dim: int = 768

    def setup(self) -> None:
        self.tower = EncoderTower(self.config, self.projection_dim)

    def encode_questions(self, tokens: Array, *, enable_dropout: bool = False) -> Array:
        return self.tower(tokens, enable_dropout=enable_dropout)

    def encode_passages(self, tokens: Array, *, enable_dropout: bool = False) -> Array:
        return self.tower(tokens, enable_dropout=enable_dropout)

    def __call__(self, questions: Array, passages: Array, *, enable_dropout: bool = False):
        return (
            self.encode_questions(questions, enable_dropout=enable_dropout),
            self.encode_passages(passages, enable_dropout=enable_dropout),
        )


class DPR(nn.Module):
    """Separate question and passage towers (same architecture, separate weights)."""

    config: t5.T5Config
    projection_dim: int = 768

    def setup(self) -> None:
        self.question_tower = EncoderTower(self.config, self.projection_dim)
        self.passage_tower = EncoderTower(self.config, self.projection_dim)

    def encode_questions(self, tokens: Array, *, enable_dropout: bool = False) -> Array:
        return self.question_tower(tokens, enable_dropout=enable_dropout)

    def encode_passages(self, tokens: Array, *, enable_dropout: bool = False) -> Array:
        return self.passage_tower(tokens, enable_dropout=enable_dropout)

    def __call__(self, questions: Array, passages: Array, *, enable_dropout: bool = False):
        return (
            self.encode_questions(questions, enable_dropout=enable_dropout),
            self.encode_passages(passages, enable_dropout=enable_dropout),
        )


LOGIT_SCALE_PARAM = "log_logit_scale"
MAX_LOGIT_SCALE = 100.0


@dataclasses.dataclass(frozen=True)
class DualEncoderModel:
    """Contrastive training and encoding for GTR (`shared=True`) or DPR (`shared=False`).

    Batches hold `question_tokens [b, lq]` and `passage_tokens [b * (1 + n), lp]`: the first b
    passages are the positives, the rest mined hard negatives. Under a data-parallel mesh the batch
    is one global array, so the score matrix covers every device's passages (cross-device negatives).
    The loss is t5x_retrieval's: in-batch softmax over cosine * `logit_scale`, question -> passage
    plus passage -> question (`bidirectional`).

    Attributes:
      logit_scale: cosine similarities are multiplied by this (t5x_retrieval: 100); the initial
        value when `learnable_logit_scale` (then learned in log space, capped at 100 as CLIP).
      bidirectional: add the passage -> question softmax loss.
    """

    config: t5.T5Config
    projection_dim: int = 768
    shared: bool = True
    logit_scale: float = 100.0
    learnable_logit_scale: bool = False
    bidirectional: bool = True

    @property
    def module(self) -> nn.Module:
        cls = GTR if self.shared else DPR
        return cls(self.config, self.projection_dim)

    @property
    def uses_dropout(self) -> bool:
        return self.config.dropout_rate > 0

    @property
    def loss_couples_examples(self) -> bool:
        """Each example's loss depends on the others (in-batch negatives), so the batch cannot
        be split into microbatches without changing the loss."""
        return True

    def _dummy(self) -> tuple[Array, Array]:
        return jnp.ones((1, 4), jnp.int32), jnp.ones((1, 4), jnp.int32)

    def _init_variables(self, rng: Array) -> Any:
        variables = self.module.init(rng, *self._dummy())
        params = dict(variables["params"])
        if self.learnable_logit_scale:
            params[LOGIT_SCALE_PARAM] = nn.LogicallyPartitioned(
                jnp.asarray(np.log(self.logit_scale), jnp.float32), ()
            )
        return params

    def init_params(self, rng: Array) -> Any:
        return encoder_decoder._unbox(self._init_variables(rng))

    def abstract_params(self) -> Any:
        return encoder_decoder._unbox(jax.eval_shape(self._init_variables, jax.random.key(0)))

    def logical_param_axes(self) -> Any:
        return nn.get_partition_spec(jax.eval_shape(self._init_variables, jax.random.key(0)))

    def _module_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k != LOGIT_SCALE_PARAM}

    def encode(self, params: Any, tokens: Array, *, kind: str) -> Array:
        """Normalised embeddings `[b, projection_dim]` of questions or passages."""
        method = "encode_questions" if kind == "question" else "encode_passages"
        return self.module.apply({"params": self._module_params(params)}, tokens, method=method)

    def loss_fn(
        self, params: Any, batch: Mapping[str, Array], *, dropout_rng: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
        q, p = self.module.apply(
            {"params": self._module_params(params)},
            batch["question_tokens"],
            batch["passage_tokens"],
            enable_dropout=dropout_rng is not None,
            rngs=rngs,
        )
        if self.learnable_logit_scale:
            scale = jnp.minimum(jnp.exp(params[LOGIT_SCALE_PARAM]), MAX_LOGIT_SCALE)
        else:
            scale = jnp.float32(self.logit_scale)
        per_example, correct = losses.in_batch_softmax_loss(
            q, p, logit_scale=scale, bidirectional=self.bidirectional
        )
        n = jnp.float32(q.shape[0])
        loss = jnp.mean(per_example)
        metrics = {
            "loss_sum": jnp.sum(per_example),
            "nll_sum": jnp.sum(per_example),
            "z_loss_sum": jnp.float32(0.0),
            "correct_sum": jnp.sum(correct.astype(jnp.float32)),
            "num_tokens": n,
            "num_examples": n,
            "logit_scale": scale,
        }
        return loss, metrics

    def pooled_cosine(
        self, params: Any, *, num: int = 16, length: int = 32, seed: int = 0
    ) -> float:
        """Mean pairwise cosine of the mean-pooled encoder states (before the projection) of `num`
        random token sequences: near 1 when the encoder ignores its input (a collapsed start)."""
        rng = np.random.default_rng(seed)
        tokens = jnp.asarray(rng.integers(3, self.config.vocab_size, (num, length)), jnp.int32)
        tower = "tower" if self.shared else "passage_tower"

        def pooled(module: nn.Module, x: Array) -> Array:
            return getattr(module, tower).encoder(x, enable_dropout=False).mean(axis=1)

        # jitted: under the trainer's mesh the encoder's sharding constraints need a traced call
        apply = jax.jit(lambda p, x: self.module.apply({"params": p}, x, method=pooled))
        vectors = np.asarray(apply(self._module_params(params), tokens), np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
        sims = vectors @ vectors.T
        return float(sims[~np.eye(num, dtype=bool)].mean())
