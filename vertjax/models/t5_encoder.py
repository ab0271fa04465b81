"""The T5 encoder with its own token embedder, as the retriever towers and the NLI classifier hold
it (`train/restore.py` warm-starts it from a T5 encoder-decoder checkpoint).

Both keep T5X's names (`token_embedder`, `encoder`) directly under their module, so any vertjax or
converted HF T5 checkpoint's encoder loads into them; only the heads on top differ.
"""

from __future__ import annotations

from vertjax.models import layers, t5


def embedder_and_encoder(config: t5.T5Config) -> tuple[layers.Embed, t5.Encoder]:
    """A token embedder and a T5 encoder reading through it; assign them in a module's `setup`
    as `self.token_embedder, self.encoder` (the checkpoint names)."""
    embedder = layers.Embed(
        num_embeddings=config.vocab_size, features=config.emb_dim, dtype=config.activation_dtype
    )
    return embedder, t5.Encoder(config, shared_embedding=embedder)
