"""`DatasetConfig`: the gin-facing description of a seqio data source for train and eval.

It plays T5X's `utils.DatasetConfig` role and implements the trainer's `DataSource` protocol: an
iterator of numpy batches that starts at any batch position (exact resume).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """A registered seqio task or mixture, read as batches of T5X encoder-decoder features.

    Attributes:
      mixture_or_task_name: a task/mixture registered with `vertjax.data.tasks`.
      task_feature_lengths: {'inputs': N, 'targets': M}.
      batch_size: the global batch size; each process reads batch_size / process_count.
      registered: what a gin registration call returned, e.g.
        `@tasks.register_from_config()` — binding it here makes gin run the registration before
        the dataset is read. Only used to name the registered tasks in error messages.
      targets_must_fit: refuse to start when a target would be trimmed (classification labels
        such as NLI's must be learned whole; see `tasks.check_targets_fit`).
    """

    mixture_or_task_name: str
    task_feature_lengths: Mapping[str, int]
    batch_size: int
    split: str = "train"
    shuffle: bool = True
    seed: int = 0
    pack: bool = True
    num_epochs: int | None = None
    registered: Sequence[str] | None = None
    targets_must_fit: bool = False

    def iterator(
        self, *, start_batch: int = 0, shard_id: int = 0, num_shards: int = 1
    ) -> Iterator[Mapping[str, np.ndarray]]:
        from vertjax.data import pipeline, tasks

        if self.targets_must_fit:
            tasks.check_targets_fit(
                self.mixture_or_task_name,
                split=self.split,
                targets_length=self.task_feature_lengths["targets"],
            )

        factory = functools.partial(
            pipeline.get_dataset,
            mixture_or_task_name=self.mixture_or_task_name,
            task_feature_lengths=dict(self.task_feature_lengths),
            split=self.split,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            pack=self.pack,
            num_epochs=self.num_epochs,
            shard_id=shard_id,
            num_shards=num_shards,
        )
        return pipeline.DataIterator(factory, start_batch=start_batch)

    def replace(self, **changes: Any) -> DatasetConfig:
        return dataclasses.replace(self, **changes)


def jsonl_task_spec(
    *, name: str, split_files: Mapping[str, str], kind: str = "span_corruption", **options: Any
) -> dict[str, dict[str, Any]]:
    """`{name: spec}` for `tasks.register_from_config(tasks=...)`; empty when no files are given.

    Lets a run gin register its task from `TRAIN_FILES` alone, while a task registered in Python
    needs no files at all.
    """
    if not split_files:
        return {}
    return {name: {"split_files": dict(split_files), "kind": kind, **options}}
