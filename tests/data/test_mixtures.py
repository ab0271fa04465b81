"""Tests of vertjax.data.mixtures: domain/general mixtures by rate, the staged schedule, the gin."""

from __future__ import annotations

import itertools
import math
import uuid

import gin
import numpy as np
import pytest
import seqio
from conftest import tiny_corpus_records

from vertjax import errors, gin_utils, io_utils
from vertjax.data import mixtures, pipeline


def _name(prefix: str) -> str:
    """A fresh registry name: seqio's registries are process-global."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def split_files(tmp_path):
    """Domain and general passage JSONL (train + validation), different texts."""
    domain = tiny_corpus_records(40, seed=1)
    general = [
        {**r, "text": r["text"].upper(), "id": f"g{i}"}
        for i, r in enumerate(tiny_corpus_records(40, seed=2))
    ]
    files = {}
    for role, records in (("domain", domain), ("general", general)):
        files[role] = {}
        for split, part in (("train", records[:30]), ("validation", records[30:])):
            path = tmp_path / f"{role}_{split}.jsonl"
            io_utils.write_jsonl(path, part)
            files[role][split] = str(path)
    return files


def _register(split_files, tiny_vocab, *, rate, name=None, tasks=None):
    tasks = tasks or (_name("dom"), _name("gen"))
    return mixtures.domain_general_mixture(
        name=name or _name("mix"),
        domain_files=split_files["domain"],
        general_files=split_files["general"],
        domain_rate=rate,
        vocab_path=tiny_vocab,
        domain_task=tasks[0],
        general_task=tasks[1],
    )


def test_mixture_rates_follow_domain_rate(split_files, tiny_vocab):
    tasks = (_name("dom"), _name("gen"))
    mix, dom, gen = _register(split_files, tiny_vocab, rate=0.25, tasks=tasks)
    assert (dom, gen) == tasks
    mixture = seqio.get_mixture_or_task(mix)
    assert mixture.get_rate(seqio.get_mixture_or_task(dom)) == pytest.approx(0.25)
    assert mixture.get_rate(seqio.get_mixture_or_task(gen)) == pytest.approx(0.75)
    # Every rate of a sweep shares the two tasks; rates 0 and 1 keep only the positive one.
    for rate, kept in ((0.0, gen), (1.0, dom)):
        only = _register(split_files, tiny_vocab, rate=rate, tasks=tasks)[0]
        assert [t.name for t in seqio.get_mixture_or_task(only).tasks] == [kept]


def test_reregistration_is_idempotent_but_a_new_rate_needs_a_new_name(split_files, tiny_vocab):
    tasks, name = (_name("dom"), _name("gen")), _name("mix")
    first = _register(split_files, tiny_vocab, rate=0.5, name=name, tasks=tasks)
    assert _register(split_files, tiny_vocab, rate=0.5, name=name, tasks=tasks) == first
    with pytest.raises(errors.ConfigError, match="different rates"):
        _register(split_files, tiny_vocab, rate=0.75, name=name, tasks=tasks)


@pytest.mark.parametrize("rate", [-0.1, 1.5, math.nan, True, "0.5"])
def test_bad_domain_rate_is_a_config_error(split_files, tiny_vocab, rate):
    with pytest.raises(errors.ConfigError, match="DOMAIN_RATE must be in"):
        _register(split_files, tiny_vocab, rate=rate)


def test_bad_objective_and_missing_file(split_files, tiny_vocab, tmp_path):
    with pytest.raises(errors.ConfigError, match="LM objective"):
        mixtures.domain_general_mixture(
            name=_name("mix"),
            domain_files=split_files["domain"],
            general_files=split_files["general"],
            domain_rate=0.5,
            vocab_path=tiny_vocab,
            objective="seq2seq",
        )
    missing = {"train": str(tmp_path / "nope.jsonl")}
    with pytest.raises(errors.DataError, match="nope.jsonl"):
        mixtures.domain_general_mixture(
            name=_name("mix"),
            domain_files=missing,
            general_files=split_files["general"],
            domain_rate=0.5,
            vocab_path=tiny_vocab,
            domain_task=_name("dom"),
            general_task=_name("gen"),
        )


class _CountingSource:
    """Batches {'source': tag, 'index': i} from `start_batch` on; records how it was asked."""

    def __init__(self, tag: int):
        self.tag = tag
        self.calls: list[dict[str, int]] = []

    def iterator(self, *, start_batch: int, shard_id: int, num_shards: int):
        self.calls.append(
            {"start_batch": start_batch, "shard_id": shard_id, "num_shards": num_shards}
        )
        for i in itertools.count(start_batch):
            yield {"source": np.int32(self.tag), "index": np.int32(i)}


def _take(iterator, n):
    return [(int(b["source"]), int(b["index"])) for b in itertools.islice(iterator, n)]


def test_staged_schedule_is_general_first_then_mixture_and_resumes_exactly():
    general, mixture = _CountingSource(0), _CountingSource(1)
    schedule = mixtures.staged_schedule(general=general, mixture=mixture, general_steps=3)
    full = _take(schedule.iterator(start_batch=0, shard_id=1, num_shards=2), 7)
    assert full == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert general.calls == [{"start_batch": 0, "shard_id": 1, "num_shards": 2}]
    assert mixture.calls == [{"start_batch": 0, "shard_id": 1, "num_shards": 2}]
    for start in range(7):
        resumed = schedule.iterator(start_batch=start, shard_id=1, num_shards=2)
        assert _take(resumed, 7 - start) == full[start:], start


def test_staged_schedule_builds_the_mixture_only_when_reached():
    general, mixture = _CountingSource(0), _CountingSource(1)
    iterator = mixtures.staged_schedule(
        general=general, mixture=mixture, general_steps=2
    ).iterator()
    _take(iterator, 2)
    assert mixture.calls == []
    _take(iterator, 1)
    assert len(mixture.calls) == 1
    without = mixtures.staged_schedule(general=general, mixture=mixture, general_steps=0)
    assert _take(without.iterator(start_batch=5), 2) == [(1, 5), (1, 6)]


@pytest.mark.parametrize("steps", [-1, 1.5, True, None])
def test_staged_schedule_rejects_bad_general_steps(steps):
    with pytest.raises(errors.ConfigError, match="general_steps"):
        mixtures.staged_schedule(
            general=_CountingSource(0), mixture=_CountingSource(1), general_steps=steps
        )
    schedule = mixtures.staged_schedule(
        general=_CountingSource(0), mixture=_CountingSource(1), general_steps=1
    )
    with pytest.raises(errors.ConfigError, match="negative"):
        schedule.iterator(start_batch=-1)


def test_pretrain_mixture_gin_trains_on_general_then_the_mixture(split_files, tiny_vocab):
    """The run gin registers the tasks and binds the staged schedule over real seqio data."""
    mix, dom, gen = _name("gin_mix"), _name("gin_dom"), _name("gin_gen")
    lengths = {"inputs": 32, "targets": 8}
    bindings = {
        "MODEL_DIR": "'unused'",
        "TRAIN_STEPS": 4,
        "TASK_FEATURE_LENGTHS": lengths,
        "BATCH_SIZE": 2,
        "VOCAB": repr(str(tiny_vocab)),
        "DOMAIN_FILES": split_files["domain"],
        "GENERAL_FILES": split_files["general"],
        "DOMAIN_RATE": 1.0,
        "MIXTURE_NAME": repr(mix),
        "DOMAIN_TASK_NAME": repr(dom),
        "GENERAL_TASK_NAME": repr(gen),
        "STAGED_GENERAL_STEPS": 2,
    }
    try:
        gin_utils.parse_gin(
            gin_files=["models/t5_1_1/tiny.gin", "runs/pretrain_mixture.gin"],
            gin_bindings=[f"{k}={v}" for k, v in bindings.items()],
        )
        gin_utils.check_required_macros()
        train_data = gin.query_parameter("trainer.train.train_data").scoped_configurable_fn()
    finally:
        gin.clear_config()
    assert isinstance(train_data, mixtures.StagedSchedule)
    assert [s.mixture_or_task_name for s in (train_data.general, train_data.mixture)] == [gen, mix]
    batches = list(
        itertools.islice(train_data.iterator(start_batch=0, shard_id=0, num_shards=1), 3)
    )

    def first_batches(name, n):
        dataset = pipeline.get_dataset(
            mixture_or_task_name=name, task_feature_lengths=lengths, batch_size=2, seed=0
        )
        return list(dataset.take(n).as_numpy_iterator())

    expected = first_batches(gen, 2) + first_batches(mix, 1)
    for got, want in zip(batches, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert [t.name for t in seqio.get_mixture_or_task(mix).tasks] == [dom]
