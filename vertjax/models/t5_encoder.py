"""The T5 encoder with its own token embedder, as the retriever towers and the NLI classifier hold
it, and warm-starting it from a T5 encoder-decoder checkpoint.

Both keep T5X's names (`token_embedder`, `encoder`) directly under their module, so any vertjax or
converted HF T5 checkpoint's encoder loads into them; only the heads on top differ.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from vertjax import errors
from vertjax.models import layers, t5


def embedder_and_encoder(config: t5.T5Config) -> tuple[layers.Embed, t5.Encoder]:
    """A token embedder and a T5 encoder reading through it; assign them in a module's `setup`
    as `self.token_embedder, self.encoder` (the checkpoint names)."""
    embedder = layers.Embed(
        num_embeddings=config.vocab_size, features=config.emb_dim, dtype=config.activation_dtype
    )
    return embedder, t5.Encoder(config, shared_embedding=embedder)


def pretrained_encoder(path: str, *, config: t5.T5Config, what: str) -> dict[str, Any]:
    """`{token_embedder, encoder}` params of the T5 checkpoint at `path`; a `CheckpointError` when
    its embedding width or vocab differs from `config` (`what` names the model being started)."""
    from vertjax.train import checkpoints

    source, params = checkpoints.load_params(path)
    if source.emb_dim != config.emb_dim or source.vocab_size != config.vocab_size:
        raise errors.CheckpointError(
            f"{path}: encoder shape (emb_dim {source.emb_dim}, vocab {source.vocab_size}) does "
            f"not match the {what}'s ({config.emb_dim}, {config.vocab_size})"
        )
    return {"token_embedder": params["token_embedder"], "encoder": params["encoder"]}


def place_like(params: Any, abstract_params: Any) -> Any:
    """`params` as fresh arrays with the dtypes and shardings of `abstract_params`."""
    return jax.tree.map(
        lambda x, a: jax.device_put(jnp.array(x, a.dtype, copy=True), a.sharding),
        params,
        abstract_params,
    )
