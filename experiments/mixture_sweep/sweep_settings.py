"""The mixture sweep's settings: one frozen dataclass that the scale gins bind.

`tiny.gin` / `full.gin` import this module and bind every field as
`sweep_settings.SweepSettings.FIELD = VALUE`; the command line overrides a field with
`--gin.SweepSettings.FIELD=VALUE`. run.py puts this folder on `sys.path` (and on the `PYTHONPATH`
of each point's `vertjax train`, which parses the same gin). A misspelt field is a gin error at
parse time (the old loose `SWEEP_*` macros took any name and ignored it), and `settings()` checks
each field's type and range. The shared training macros (`TASK_FEATURE_LENGTHS`, `BATCH_SIZE`,
`SEED`) stay macros: every point's training binds them too.
"""

from __future__ import annotations

import dataclasses

from vertjax import errors, gin_utils


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """The sweep's data, points and evaluation, beside the scale gin's model and training."""

    domain_pack: str
    """Pack of the domain text (`vertjax.data.packs`), e.g. 'python-stdlib' or 'folder'."""
    general_pack: str
    """Pack of the general text, e.g. 'general-wordnet' or 'tfds:c4/en'."""
    domain_source: str | None
    """Source of the domain pack (a folder for 'folder', a tfds data_dir); None: embedded pack."""
    general_source: str | None
    """Source of the general pack, as `domain_source`."""
    max_documents: int | None
    """Documents read per pack (None: all)."""
    vocab_size: int
    """SentencePiece pieces of the vocabulary trained on both packs (+100 sentinels)."""
    vocab_sentences: int
    """Sentences sampled to train the vocabulary."""
    rates: list[float]
    """Domain rates of the continued-pretraining points, each in [0, 1]."""
    general_steps: int
    """Steps of the general model (from scratch, general text only)."""
    point_steps: int
    """Steps of each point (continued from the general model, or from scratch)."""
    scratch_domain: bool
    """Whether to train the `scratch_domain` point (from scratch, domain text only)."""
    staged_rate: float | None
    """Domain rate of the staged point (general for `general_steps`, then the mixture); None: off."""
    eval_examples: int
    """Validation span-corruption examples per pack for the PPL."""
    eval_batch_size: int
    """Batch size of the PPL evaluation."""

    def __post_init__(self) -> None:
        counts = (
            "vocab_size vocab_sentences general_steps point_steps eval_examples eval_batch_size"
        )
        for name in counts.split():
            if getattr(self, name) < 1:
                raise _bad(name, getattr(self, name), "must be at least 1")
        if self.max_documents is not None and self.max_documents < 1:
            raise _bad("max_documents", self.max_documents, "must be at least 1 (or None)")
        if not self.rates or any(not 0.0 <= r <= 1.0 for r in self.rates):
            raise _bad("rates", self.rates, "must be a non-empty list of rates in [0, 1]")
        if self.staged_rate is not None and not 0.0 <= self.staged_rate <= 1.0:
            raise _bad("staged_rate", self.staged_rate, "must lie in [0, 1] (or be None)")


def _bad(name: str, value: object, why: str) -> errors.ConfigError:
    return errors.ConfigError(f"gin: SweepSettings.{name} = {value!r} {why}")


def settings() -> SweepSettings:
    """The settings the parsed gin files bind (ConfigError naming a missing or bad field)."""
    return gin_utils.configured_dataclass(SweepSettings)
