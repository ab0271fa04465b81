"""seqio Task and Mixture registration from JSONL files, idempotent and gin-callable.

A task reads one JSONL file per split and applies one objective (`KINDS`):
- 'span_corruption' / 'prefix_lm': records `{id, text, ...}` (passages), text in `text_key`;
- 'seq2seq': records with `inputs_key` and `targets_key` (instruction tuning, NLI, ...).
Every task emits `{inputs, targets}` tokenized with the vocab and ending in EOS, so any tasks
can share a Mixture, whose rates are explicit (relative example counts, as in seqio).

Registering a name again with the same spec returns the registered task; with a different spec it
is a `ConfigError` (a silently replaced task would change a running mixture). Gin files register
tasks through `register_from_config`, which the trainer calls before building its dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import gin
import seqio

from vertjax import errors, io_utils
from vertjax.data import preprocessors, vocab

KINDS = ("span_corruption", "prefix_lm", "seq2seq")
SHUFFLE_BUFFER_SIZE = 1_000  # seqio's default; the JSONL source also shuffles whole files
_VALID_NAME = re.compile(r"^[\w.:]+$")


@dataclasses.dataclass(frozen=True)
class JsonlTaskSpec:
    """Everything that defines a registered JSONL task (compared on re-registration)."""

    split_files: tuple[tuple[str, str], ...]
    vocab_path: str
    kind: str
    extra_ids: int
    text_key: str
    inputs_key: str
    targets_key: str
    noise_density: float
    mean_noise_span_length: float
    shuffle_buffer_size: int


_TASK_SPECS: dict[str, JsonlTaskSpec] = {}
_MIXTURE_SPECS: dict[str, tuple[tuple[str, float], ...]] = {}


def _check_name(name: str) -> None:
    if not _VALID_NAME.match(name):
        raise errors.ConfigError(f"task/mixture name {name!r} may only hold letters, digits, _ . :")


def _absolute(path: str | os.PathLike) -> str:
    return str(pathlib.Path(path).expanduser().resolve())


def _task_preprocessors(spec: JsonlTaskSpec) -> list[Any]:
    tokenize = functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False)
    if spec.kind == "seq2seq":
        rekey = {"inputs": spec.inputs_key, "targets": spec.targets_key}
        return [
            functools.partial(seqio.preprocessors.rekey, key_map=rekey),
            tokenize,
            seqio.preprocessors.append_eos_after_trim,
        ]
    if spec.kind == "span_corruption":
        objective = functools.partial(
            preprocessors.span_corruption,
            noise_density=spec.noise_density,
            mean_noise_span_length=spec.mean_noise_span_length,
        )
    else:
        objective = preprocessors.prefix_lm
    return [
        functools.partial(seqio.preprocessors.rekey, key_map={"targets": spec.text_key}),
        tokenize,
        objective,
        seqio.preprocessors.append_eos_after_trim,
    ]


def register_jsonl_task(
    name: str,
    *,
    split_files: Mapping[str, str | os.PathLike],
    vocab_path: str | os.PathLike,
    kind: str,
    extra_ids: int = vocab.DEFAULT_EXTRA_IDS,
    text_key: str = "text",
    inputs_key: str = "inputs",
    targets_key: str = "targets",
    noise_density: float = preprocessors.NOISE_DENSITY,
    mean_noise_span_length: float = preprocessors.MEAN_NOISE_SPAN_LENGTH,
    shuffle_buffer_size: int = SHUFFLE_BUFFER_SIZE,
) -> seqio.Task:
    """Registers (or returns the identical, already registered) seqio Task over JSONL files.

    Args:
      name: the seqio task name (letters, digits, `_ . :`).
      split_files: split -> JSONL path, e.g. {'train': 'train.jsonl', 'validation': 'dev.jsonl'};
        files must exist now, their records are read when a dataset is first built.
      vocab_path: a `vertjax vocab` directory or its spm.model.
      kind: one of `KINDS`.
      text_key / inputs_key / targets_key: record fields read for LM / seq2seq kinds.
      noise_density / mean_noise_span_length: span corruption parameters (T5 defaults).
      shuffle_buffer_size: seqio's post-preprocessing shuffle buffer.
    """
    _check_name(name)
    if kind not in KINDS:
        raise errors.ConfigError(f"task {name!r}: unknown kind {kind!r} (choose from {KINDS})")
    if not split_files:
        raise errors.ConfigError(f"task {name!r}: split_files is empty")
    for split, path in split_files.items():
        if not pathlib.Path(path).is_file():
            raise errors.DataError(f"task {name!r}, split {split!r}: file not found", path=path)
    model_path = vocab.resolve_model_path(vocab_path)
    spec = JsonlTaskSpec(
        split_files=tuple(sorted((s, _absolute(p)) for s, p in split_files.items())),
        vocab_path=_absolute(model_path),
        kind=kind,
        extra_ids=extra_ids,
        text_key=text_key,
        inputs_key=inputs_key,
        targets_key=targets_key,
        noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length,
        shuffle_buffer_size=shuffle_buffer_size,
    )
    if name in seqio.TaskRegistry.names():
        if _TASK_SPECS.get(name) == spec:
            return seqio.TaskRegistry.get(name)
        raise errors.ConfigError(
            f"task {name!r} is already registered with a different spec; use another name"
        )
    vocabulary = vocab.load_vocab(model_path, extra_ids=extra_ids)
    keys = (inputs_key, targets_key) if kind == "seq2seq" else (text_key,)
    output_features = {
        "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
        "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
    }
    task = seqio.TaskRegistry.add(
        name,
        source=preprocessors.JsonlDataSource(split_files=dict(spec.split_files), keys=keys),
        output_features=output_features,
        preprocessors=_task_preprocessors(spec),
        shuffle_buffer_size=shuffle_buffer_size,
    )
    _TASK_SPECS[name] = spec
    return task


def register_mixture(name: str, *, rates: Mapping[str, float]) -> seqio.Mixture:
    """Registers (or returns the identical, already registered) Mixture of tasks with rates.

    Rates are relative example counts (normalised by seqio), e.g. {'domain': 0.5, 'general': 0.5}.
    """
    _check_name(name)
    if not rates:
        raise errors.ConfigError(f"mixture {name!r}: no tasks given")
    known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
    for task_name, rate in rates.items():
        if task_name not in known:
            raise errors.ConfigError(
                f"mixture {name!r}: unknown task {task_name!r} (registered: "
                f"{', '.join(sorted(known)) or 'none'})"
            )
        if (
            isinstance(rate, bool)
            or not isinstance(rate, int | float)
            or not (math.isfinite(rate) and rate > 0)
        ):
            raise errors.ConfigError(
                f"mixture {name!r}: rate of {task_name!r} must be a positive number, got {rate!r}"
            )
    spec = tuple(sorted((t, float(r)) for t, r in rates.items()))
    if name in seqio.MixtureRegistry.names():
        if _MIXTURE_SPECS.get(name) == spec:
            return seqio.MixtureRegistry.get(name)
        raise errors.ConfigError(
            f"mixture {name!r} is already registered with different rates; use another name"
        )
    mixture = seqio.MixtureRegistry.add(name, list(spec))
    _MIXTURE_SPECS[name] = spec
    return mixture


def check_targets_fit(
    mixture_or_task_name: str, *, split: str, targets_length: int, max_records: int = 50_000
) -> None:
    """Raises `ConfigError` if a target of a seq2seq JSONL task would be cut by trimming.

    T5 trims targets to the feature length silently, which is right for text but wrong for
    classification labels (NLI's `entailment`): the model would learn a cut label while a scorer
    scores the whole one plus EOS. Reads the distinct targets of the first `max_records` records
    of every seq2seq JSONL task in the mixture.
    """
    if mixture_or_task_name in seqio.MixtureRegistry.names():
        names = [
            t.name for t in seqio.get_subtasks(seqio.get_mixture_or_task(mixture_or_task_name))
        ]
    else:
        names = [mixture_or_task_name]
    for name in names:
        spec = _TASK_SPECS.get(name)
        if spec is None or spec.kind != "seq2seq" or split not in dict(spec.split_files):
            continue
        path = dict(spec.split_files)[split]
        targets = set()
        for index, record in enumerate(
            io_utils.read_jsonl(path, required_keys=(spec.targets_key,))
        ):
            if index >= max_records:
                break
            targets.add(str(record[spec.targets_key]))
        vocabulary = vocab.load_vocab(spec.vocab_path, extra_ids=spec.extra_ids)
        for target in sorted(targets):
            length = len(vocabulary.encode(target)) + 1  # + EOS
            if length > targets_length:
                raise errors.ConfigError(
                    f"task {name!r}: target {target[:40]!r} is {length} tokens with EOS under "
                    f"{spec.vocab_path}, but the targets length is {targets_length}: it would be "
                    f"cut (raise TASK_FEATURE_LENGTHS['targets'] to at least {length})"
                )


@gin.configurable(module="vertjax.data.tasks")
def register_from_config(
    *,
    vocab_path: str | None = None,
    tasks: Mapping[str, Mapping[str, Any]] | None = None,
    mixtures: Mapping[str, Mapping[str, float]] | None = None,
) -> list[str]:
    """Registers tasks then mixtures described in gin; returns the registered names.

    Example gin:
      tasks.register_from_config.vocab_path = %VOCAB
      tasks.register_from_config.tasks = {
          'domain_sc': {'kind': 'span_corruption', 'split_files': {'train': %DOMAIN_JSONL}},
          'general_sc': {'kind': 'span_corruption', 'split_files': {'train': %GENERAL_JSONL}},
      }
      tasks.register_from_config.mixtures = {'mix': {'domain_sc': 0.5, 'general_sc': 0.5}}

    Each task dict takes the keyword arguments of `register_jsonl_task`; `vocab_path` is the
    default for tasks that don't name their own.
    """
    names = []
    for name, task_kwargs in (tasks or {}).items():
        kwargs = dict(task_kwargs)
        kwargs.setdefault("vocab_path", vocab_path)
        if kwargs["vocab_path"] is None:
            raise errors.ConfigError(f"task {name!r}: no vocab_path (set it or the default)")
        try:
            register_jsonl_task(name, **kwargs)
        except TypeError as e:
            raise errors.ConfigError(f"task {name!r}: {e}") from None
        names.append(name)
    for name, rates in (mixtures or {}).items():
        register_mixture(name, rates=rates)
        names.append(name)
    return names
