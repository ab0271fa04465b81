"""The hybrid-tuning experiment's settings: one frozen dataclass that the scale gins bind.

`tiny.gin` / `full.gin` import this module (run.py puts this folder on `sys.path`) and bind every
field as `hybrid_settings.HybridSettings.FIELD = VALUE`; the command line overrides a field with
`--gin.HybridSettings.FIELD=VALUE`. A misspelt field is a gin error at parse time (the old loose
`HYBRID_*` macros took any name and ignored it), and `settings()` checks each field's type and range.
The shared training macros (`TASK_FEATURE_LENGTHS`, `BATCH_SIZE`, `SEED`) stay macros: every
training stage binds them too.
"""

from __future__ import annotations

import dataclasses

from vertjax import errors, gin_utils


@dataclasses.dataclass(frozen=True, kw_only=True)
class HybridSettings:
    """What `run.py` builds and trains, beside the scale gin's model and training settings."""

    domain_pack: str
    """Pack of the domain (`vertjax.data.packs`): its passages, KG and synthesized instructions."""
    general_pack: str
    """Pack of the general text the general model and both arms' general span corruption read."""
    general_source: str | None
    """Source folder of the general pack (a tfds data_dir for `tfds:NAME`); None: embedded pack."""
    wordnet_pack: str
    """Pack the general instructions ("Define the word X.") are parsed from."""
    max_documents: int | None
    """Documents read per pack (None: all)."""
    vocab: str | None
    """An existing spm.model / vocab folder instead of training one here."""
    vocab_size: int
    """SentencePiece pieces of the vocabulary trained here (+100 sentinels)."""
    vocab_sentences: int
    """Sentences sampled to train the vocabulary."""
    general_checkpoint: str | None
    """Run dir of an existing general model; None: train it here (`general_steps`)."""
    general_steps: int
    """Steps of the general model (span corruption on general text, from scratch)."""
    stage1_steps: int
    """Arm A, stage 1: steps of continued pretraining (domain + general span corruption)."""
    stage2_steps: int
    """Arm A, stage 2: steps of instruction tuning. Arm B's steps follow from A's target tokens."""
    domain_rate: float
    """Domain share of stage 1's span-corruption mixture, in [0, 1]."""
    self_instruct_target: int
    """Self-Instruct records to synthesize for the domain."""
    self_kg_entities: int | None
    """KG entities Self-KG asks about (None: every entity)."""
    self_qa_passages: int | None
    """The first N train passages Self-QA reads (None: all)."""
    wordnet_lemmas: int
    """WordNet lemmas turned into general instructions."""
    heldout_fraction: float
    """Share of instruction groups held out for evaluation, in (0, 1)."""
    eval_examples: int
    """Validation span-corruption examples per pack for the PPL."""
    eval_instructions: int
    """Held-out domain instructions scored by ROUGE-L."""
    eval_batch_size: int
    """Batch size of the evaluation (PPL and greedy decoding)."""
    max_decode_length: int
    """Most tokens decoded per held-out instruction."""
    bootstrap: int
    """Resamples of the paired bootstrap interval for B - A."""

    def __post_init__(self) -> None:
        positive = (
            "vocab_size vocab_sentences general_steps stage1_steps stage2_steps "
            "self_instruct_target wordnet_lemmas eval_examples eval_instructions "
            "eval_batch_size max_decode_length bootstrap max_documents self_kg_entities "
            "self_qa_passages"
        )
        for name in positive.split():
            value = getattr(self, name)
            if value is not None and value < 1:
                raise _bad(name, value, "must be at least 1")
        if not 0.0 <= self.domain_rate <= 1.0:
            raise _bad("domain_rate", self.domain_rate, "must lie in [0, 1]")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise _bad("heldout_fraction", self.heldout_fraction, "must lie in (0, 1)")


def _bad(name: str, value: object, why: str) -> errors.ConfigError:
    return errors.ConfigError(f"gin: HybridSettings.{name} = {value!r} {why}")


def settings() -> HybridSettings:
    """The settings the parsed gin files bind (ConfigError naming a missing or bad field)."""
    return gin_utils.configured_dataclass(HybridSettings)
