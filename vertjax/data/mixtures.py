"""Domain + general pretraining data: mixtures by domain rate, and a staged schedule.

Continued pretraining mixes general text into domain text so the model keeps its general ability
(the seed's XuanYuan / BloombergGPT recipe). `domain_general_mixture` registers a domain and a
general task from JSONL files and a seqio Mixture with `domain_rate` for the domain task and
`1 - domain_rate` for the general one; gin files bind it (`runs/pretrain_mixture.gin`,
`DOMAIN_RATE = 0.5`). `staged_schedule` wraps two data sources into one that yields general batches
first and mixture batches after, resuming exactly at any batch position.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import numpy as np

from vertjax import errors

Batch = Mapping[str, np.ndarray]


class DataSource(Protocol):
    """The trainer's data protocol (`vertjax.train.trainer.DataSource`)."""

    def iterator(self, *, start_batch: int, shard_id: int, num_shards: int) -> Iterator[Batch]: ...


def rate_suffix(domain_rate: float) -> str:
    """A name-safe tag for a rate, e.g. 0.25 -> 'd025' (distinct mixtures per rate)."""
    return f"d{round(domain_rate * 100):03d}"


def domain_general_mixture(
    *,
    name: str,
    domain_files: Mapping[str, str | os.PathLike],
    general_files: Mapping[str, str | os.PathLike],
    domain_rate: float,
    vocab_path: str | os.PathLike,
    objective: str = "span_corruption",
    domain_task: str = "domain_span_corruption",
    general_task: str = "general_span_corruption",
    task_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Registers the domain task, the general task and their mixture; returns the three names.

    Args:
      name: the mixture name (what `MIXTURE_OR_TASK_NAME` trains on).
      domain_files / general_files: split -> passage JSONL (`train`, `validation`, ...).
      domain_rate: the share of domain examples in [0, 1]; general gets `1 - domain_rate`. At 0 or
        1 the mixture holds only the task with a positive rate (seqio rates must be positive), so
        every rate trains through the same mixture name.
      vocab_path: a `vertjax vocab` directory or its spm.model.
      objective: a `vertjax.data.tasks.KINDS` LM objective, e.g. 'span_corruption', 'prefix_lm'.
      domain_task / general_task: the task names (shared by every rate's mixture).
      task_options: further `register_jsonl_task` keyword arguments for both tasks.

    Returns:
      [mixture name, domain task name, general task name].
    """
    from vertjax.data import tasks

    if (
        isinstance(domain_rate, bool)
        or not isinstance(domain_rate, int | float)
        or not (math.isfinite(domain_rate) and 0.0 <= domain_rate <= 1.0)
    ):
        raise errors.ConfigError(
            f"mixture {name!r}: DOMAIN_RATE must be in [0, 1], got {domain_rate!r}"
        )
    if objective == "seq2seq":
        raise errors.ConfigError(
            f"mixture {name!r}: objective must be an LM objective over passages, not 'seq2seq'"
        )
    options = dict(task_options or {})
    for task_name, files in ((domain_task, domain_files), (general_task, general_files)):
        tasks.register_jsonl_task(
            task_name, split_files=files, vocab_path=vocab_path, kind=objective, **options
        )
    rates = {domain_task: float(domain_rate), general_task: 1.0 - float(domain_rate)}
    tasks.register_mixture(name, rates={t: r for t, r in rates.items() if r > 0.0})
    return [name, domain_task, general_task]


@dataclasses.dataclass(frozen=True)
class StagedSchedule:
    """General-only batches for the first `general_steps` batches, then the mixture's batches.

    Both sources start at their batch 0 when their stage starts, so a run that restarts at batch
    `start_batch` sees exactly the batches an uninterrupted run would have seen.
    """

    general: DataSource
    mixture: DataSource
    general_steps: int

    def __post_init__(self) -> None:
        steps = self.general_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise errors.ConfigError(
                f"staged schedule: general_steps must be a non-negative integer, got {steps!r}"
            )

    def iterator(
        self, *, start_batch: int = 0, shard_id: int = 0, num_shards: int = 1
    ) -> Iterator[Batch]:
        """Batches from position `start_batch` on (general stage, then mixture stage)."""
        if start_batch < 0:
            raise errors.ConfigError(f"staged schedule: start_batch {start_batch} is negative")
        shard = {"shard_id": shard_id, "num_shards": num_shards}
        if start_batch >= self.general_steps:
            return self.mixture.iterator(start_batch=start_batch - self.general_steps, **shard)
        general = itertools.islice(
            self.general.iterator(start_batch=start_batch, **shard),
            self.general_steps - start_batch,
        )
        return itertools.chain(general, _lazy(self.mixture, shard))


def _lazy(source: DataSource, shard: Mapping[str, int]) -> Iterator[Batch]:
    """The source's batches from 0, built only when the first one is asked for."""
    yield from source.iterator(start_batch=0, **shard)


def staged_schedule(
    *, general: DataSource, mixture: DataSource, general_steps: int
) -> StagedSchedule:
    """The gin-facing constructor of a `StagedSchedule` (general_steps=0: the mixture alone)."""
    return StagedSchedule(general=general, mixture=mixture, general_steps=general_steps)
