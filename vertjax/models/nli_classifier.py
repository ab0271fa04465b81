"""A T5-encoder NLI classifier with an alignment head: the classification mode of the TRUE judge.

The hypothesis and the premise are encoded separately by one shared T5 encoder (T5X names, so a
pretrained encoder-decoder's encoder loads into it). Each hypothesis token is softly aligned to the
premise tokens by dot products of a shared projection, compared with what it aligned to, and the
comparisons are pooled into 3-way logits (the attend-compare-aggregate head of Parikh et al.,
2016, "A Decomposable Attention Model for NLI"). A shared projection makes a token most similar to
itself, so the model starts out able to see word overlap and learns what overlap misses: negation,
swapped values, unsupported additions, synonyms. At tiny scale it learns in minutes where the
seq2seq T5 judge stays at chance (measured in experiments/nli_consistency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vertjax.models import encoder_decoder, layers, t5, t5_encoder

Array = jax.Array
LABELS = ("entailment", "neutral", "contradiction")


class AlignmentHead(nn.Module):
    """Attend (hypothesis → premise), compare, aggregate → `[b, num_labels]` logits."""

    hidden_dim: int
    num_labels: int

    @nn.compact
    def __call__(self, hyp: Array, hyp_mask: Array, prem: Array, prem_mask: Array) -> Array:
        dense = lambda n, name: layers.Dense(n, ("embed", "mlp"), dtype=jnp.float32, name=name)  # noqa: E731
        project = dense(self.hidden_dim, "align_projection")
        scores = jnp.einsum("bhd,bpd->bhp", project(hyp), project(prem)) / jnp.sqrt(
            jnp.float32(self.hidden_dim)
        )
        scores = jnp.where(prem_mask[:, None, :] > 0, scores, -1e9)
        aligned = jnp.einsum("bhp,bpd->bhd", jax.nn.softmax(scores, axis=-1), prem)
        best = jnp.max(scores, axis=-1, keepdims=True)
        compared = jnp.concatenate([hyp, aligned, hyp - aligned, hyp * aligned, best], axis=-1)
        compared = nn.relu(dense(self.hidden_dim, "compare_1")(compared))
        compared = nn.relu(dense(self.hidden_dim, "compare_2")(compared))
        mask = hyp_mask[..., None]
        summed = jnp.sum(compared * mask, axis=1)
        mean = summed / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
        most = jnp.max(jnp.where(mask > 0, compared, -1e9), axis=1)
        pooled = jnp.concatenate([mean, most], axis=-1)
        pooled = nn.relu(dense(self.hidden_dim, "aggregate")(pooled))
        return layers.Dense(self.num_labels, ("mlp", "vocab"), dtype=jnp.float32, name="logits")(
            pooled
        )


class AlignmentNLI(nn.Module):
    """Shared T5 encoder (+ its input embeddings) for both texts, then the alignment head."""

    config: t5.T5Config
    hidden_dim: int
    num_labels: int

    def setup(self) -> None:
        self.token_embedder, self.encoder = t5_encoder.embedder_and_encoder(self.config)
        self.head = AlignmentHead(self.hidden_dim, self.num_labels)

    def _features(self, tokens: Array, enable_dropout: bool) -> Array:
        hidden = self.encoder(tokens, enable_dropout=enable_dropout).astype(jnp.float32)
        return jnp.concatenate([hidden, self.token_embedder(tokens).astype(jnp.float32)], axis=-1)

    def __call__(self, hypothesis: Array, premise: Array, *, enable_dropout: bool = False):
        hyp_mask = (hypothesis > 0).astype(jnp.float32)
        prem_mask = (premise > 0).astype(jnp.float32)
        return self.head(
            self._features(hypothesis, enable_dropout),
            hyp_mask,
            self._features(premise, enable_dropout),
            prem_mask,
        )


@dataclasses.dataclass(frozen=True)
class NLIClassifierModel:
    """Training and scoring for `AlignmentNLI`; batches hold `hypothesis_tokens [b, lh]`,
    `premise_tokens [b, lp]` and `labels [b]` (indices into `labels`).

    `hypothesis_tokens` / `premise_tokens` are the text budgets (before EOS) it is trained with;
    they are saved with the run so `nli.Scorer` windows premises the same way.
    """

    config: t5.T5Config
    hidden_dim: int = 128
    labels: tuple[str, ...] = LABELS
    hypothesis_tokens: int = 40
    premise_tokens: int = 120

    @property
    def module(self) -> AlignmentNLI:
        return AlignmentNLI(self.config, self.hidden_dim, len(self.labels))

    @property
    def uses_dropout(self) -> bool:
        return self.config.dropout_rate > 0

    def _init_variables(self, rng: Array) -> Any:
        dummy = jnp.ones((1, 4), jnp.int32)
        return self.module.init(rng, dummy, dummy)["params"]

    def init_params(self, rng: Array) -> Any:
        return encoder_decoder._unbox(self._init_variables(rng))

    def abstract_params(self) -> Any:
        return encoder_decoder._unbox(jax.eval_shape(self._init_variables, jax.random.key(0)))

    def logical_param_axes(self) -> Any:
        return nn.get_partition_spec(jax.eval_shape(self._init_variables, jax.random.key(0)))

    def logits(self, params: Any, hypothesis: Array, premise: Array, **kwargs: Any) -> Array:
        return self.module.apply({"params": params}, hypothesis, premise, **kwargs)

    def log_probs(self, params: Any, batch: Mapping[str, Array]) -> Array:
        """log P(label) `[b, num_labels]` (no dropout)."""
        logits = self.logits(params, batch["hypothesis_tokens"], batch["premise_tokens"])
        return jax.nn.log_softmax(logits, axis=-1)

    def loss_fn(
        self, params: Any, batch: Mapping[str, Array], *, dropout_rng: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        logits = self.logits(
            params,
            batch["hypothesis_tokens"],
            batch["premise_tokens"],
            enable_dropout=dropout_rng is not None,
            rngs={"dropout": dropout_rng} if dropout_rng is not None else None,
        )
        labels = batch["labels"]
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
        n = jnp.float32(labels.shape[0])
        metrics = {
            "loss_sum": jnp.sum(per_example),
            "nll_sum": jnp.sum(per_example),
            "z_loss_sum": jnp.float32(0.0),
            "correct_sum": jnp.sum(correct),
            "num_tokens": n,
            "num_examples": n,
        }
        return jnp.mean(per_example), metrics
