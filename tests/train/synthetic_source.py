"""Test helpers for the trainer: a deterministic numpy `DataSource` and a tiny T5 config.

Shared by the tests in tests/train and by the scripts those tests run in subprocesses (fake CPU
devices, `jax.distributed`), which put this directory on `sys.path` themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vertjax.models import encoder_decoder, t5

VOCAB_SIZE = 128
INPUT_LENGTH = 16
TARGET_LENGTH = 8


def tiny_config(**overrides) -> t5.T5Config:
    """emb 32, 4 heads x 8, mlp 64, 2+2 layers, vocab 128: every sharded dim divides by 4 and 8."""
    fields = dict(
        vocab_size=VOCAB_SIZE,
        emb_dim=32,
        num_heads=4,
        head_dim=8,
        mlp_dim=64,
        num_encoder_layers=2,
        num_decoder_layers=2,
        dropout_rate=0.0,
        dtype="float32",
    )
    fields.update(overrides)
    return t5.T5Config(**fields)


def tiny_model(**overrides) -> encoder_decoder.EncoderDecoderModel:
    return encoder_decoder.EncoderDecoderModel(config=tiny_config(**overrides))


class SyntheticSource:
    """Batch `i` is a pure function of (seed, i): a copy task the tiny model learns quickly.

    Each process reads rows `[shard_id * B / n, (shard_id + 1) * B / n)` of the global batch, so
    any process count sees the same global batches. `poison_batch` puts an infinite loss weight in
    that batch (a data bug the NaN guard must catch).
    """

    def __init__(self, *, batch_size: int = 8, seed: int = 0, poison_batch: int | None = None):
        self.batch_size = batch_size
        self.seed = seed
        self.poison_batch = poison_batch

    def global_batch(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        inputs = rng.integers(3, VOCAB_SIZE, size=(self.batch_size, INPUT_LENGTH), dtype=np.int32)
        targets = inputs[:, :TARGET_LENGTH].copy()
        targets[:, -1] = 1  # EOS
        lengths = rng.integers(TARGET_LENGTH // 2, TARGET_LENGTH + 1, size=(self.batch_size, 1))
        targets = np.where(np.arange(TARGET_LENGTH)[None, :] < lengths, targets, 0)
        decoder_inputs = np.concatenate(
            [np.zeros((self.batch_size, 1), np.int32), targets[:, :-1]], axis=1
        )
        weights = (targets > 0).astype(np.float32)
        if index == self.poison_batch:
            weights[0, 0] = np.inf
        return {
            "encoder_input_tokens": inputs,
            "decoder_input_tokens": decoder_inputs.astype(np.int32),
            "decoder_target_tokens": targets.astype(np.int32),
            "decoder_loss_weights": weights,
        }

    def iterator(
        self, *, start_batch: int = 0, shard_id: int = 0, num_shards: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        if self.batch_size % num_shards:
            raise ValueError(f"batch {self.batch_size} does not split into {num_shards} shards")
        rows = self.batch_size // num_shards
        index = start_batch
        while True:
            batch = self.global_batch(index)
            yield {k: v[shard_id * rows : (shard_id + 1) * rows] for k, v in batch.items()}
            index += 1


class FiniteSource(SyntheticSource):
    """The first `num_batches` batches only (eval sets, running out of data)."""

    def __init__(self, *, num_batches: int, **kwargs):
        super().__init__(**kwargs)
        self.num_batches = num_batches

    def iterator(
        self, *, start_batch: int = 0, shard_id: int = 0, num_shards: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        batches = super().iterator(
            start_batch=start_batch, shard_id=shard_id, num_shards=num_shards
        )
        for _ in range(max(self.num_batches - start_batch, 0)):
            yield next(batches)
