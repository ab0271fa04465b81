"""Training/eval input pipeline: seqio task or mixture -> batched T5X encoder-decoder features.

`get_dataset` is what the trainer (and gin) calls; `DataIterator` wraps a dataset factory into an
iterator of numpy batches whose position (`state()`) is saved with each checkpoint. Restoring
rebuilds the same deterministic dataset and skips the batches already consumed, so a resumed run
sees exactly the examples an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gin
import numpy as np
import seqio
import tensorflow as tf

from vertjax import errors

DatasetFactory = Callable[[], tf.data.Dataset]


@gin.configurable(module="vertjax.data.pipeline")
def get_dataset(
    *,
    mixture_or_task_name: str,
    task_feature_lengths: Mapping[str, int],
    split: str = "train",
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    pack: bool = True,
    num_epochs: int | None = None,
    shard_id: int = 0,
    num_shards: int = 1,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Builds the model-feature dataset of a registered seqio task or mixture.

    Args:
      mixture_or_task_name: a name registered with `vertjax.data.tasks`.
      task_feature_lengths: {'inputs': N, 'targets': M}.
      split: the split to read.
      batch_size: the GLOBAL batch size (T5X convention); this shard yields batches of
        batch_size // num_shards. None: unbatched examples.
      shuffle: shuffle records and examples (training); False keeps file order (eval).
      seed: seeds shuffling, mixing and the objectives' randomness; always applied, so even
        unshuffled datasets are reproducible.
      pack: pack several examples per row (adds *_segment_ids and *_positions).
      num_epochs: passes over the data; None repeats forever.
      shard_id / num_shards: this host's slice of the examples (sharded before packing).
      drop_remainder: drop a last partial batch (static shapes for jit).

    Returns:
      A tf.data.Dataset of dicts: encoder_input_tokens, decoder_input_tokens,
      decoder_target_tokens, decoder_loss_weights (+ encoder/decoder_segment_ids and
      _positions when packed), int32 arrays of [batch, length].
    """
    if mixture_or_task_name not in seqio.TaskRegistry.names() and (
        mixture_or_task_name not in seqio.MixtureRegistry.names()
    ):
        known = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
        raise errors.ConfigError(
            f"unknown task or mixture {mixture_or_task_name!r} (registered: "
            f"{', '.join(known) or 'none'}; register it with vertjax.data.tasks)"
        )
    if not 0 <= shard_id < num_shards:
        raise errors.ConfigError(f"shard_id {shard_id} is not in [0, num_shards={num_shards})")
    per_shard_batch = None
    if batch_size is not None:
        if batch_size < 1 or batch_size % num_shards:
            raise errors.ConfigError(
                f"batch_size {batch_size} must be a positive multiple of num_shards {num_shards}"
            )
        per_shard_batch = batch_size // num_shards
    shard_info = seqio.ShardInfo(index=shard_id, num_shards=num_shards) if num_shards > 1 else None
    ds = seqio.get_dataset(
        mixture_or_task_name=mixture_or_task_name,
        task_feature_lengths=dict(task_feature_lengths),
        feature_converter=seqio.EncDecFeatureConverter(pack=pack),
        dataset_split=split,
        shuffle=shuffle,
        num_epochs=num_epochs,
        shard_info=shard_info,
        seed=seed,
        verbose=False,
    )
    if per_shard_batch is not None:
        ds = ds.batch(per_shard_batch, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def get_vocabulary(mixture_or_task_name: str) -> seqio.Vocabulary:
    """The targets vocabulary of a registered task or mixture (for decoding and the vocab size)."""
    provider = seqio.get_mixture_or_task(mixture_or_task_name)
    return provider.output_features["targets"].vocabulary


class DataIterator:
    """Numpy batches from a deterministic dataset, resumable at a batch count.

    Args:
      dataset_factory: builds the same dataset every call (e.g. a `functools.partial` of
        `get_dataset` with a fixed seed).
      start_batch: batches to skip first (what a restored `state()` holds).

    Restoring re-creates the dataset and `skip`s the consumed batches: exact, and cheap next to
    training, since tf.data only has to preprocess (not train on) the skipped batches.
    """

    def __init__(self, dataset_factory: DatasetFactory, start_batch: int = 0):
        self._factory = dataset_factory
        self._consumed = 0
        self._iterator: Iterator[dict[str, np.ndarray]] | None = None
        self.restore({"batches_consumed": start_batch})

    @property
    def batches_consumed(self) -> int:
        return self._consumed

    def state(self) -> dict[str, int]:
        """The position to save with a checkpoint."""
        return {"batches_consumed": self._consumed}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continues after `state['batches_consumed']` batches of a fresh dataset.

        The dataset is built on the next `next()`, so constructing then restoring builds it once.
        """
        consumed = state.get("batches_consumed") if isinstance(state, Mapping) else None
        if isinstance(consumed, np.ndarray | np.integer):
            consumed = int(consumed)
        if isinstance(consumed, bool) or not isinstance(consumed, int) or consumed < 0:
            raise errors.CheckpointError(
                f"data iterator state must hold a non-negative 'batches_consumed', got {state!r}"
            )
        self._consumed = consumed
        self._iterator = None

    def __iter__(self) -> DataIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iterator is None:
            dataset = self._factory()
            if self._consumed:
                dataset = dataset.skip(self._consumed)
            self._iterator = dataset.as_numpy_iterator()
        batch = next(self._iterator)
        self._consumed += 1
        return batch
