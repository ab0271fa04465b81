"""Tests of vertjax.data.pipeline: model features, packing, determinism, sharding, exact resume."""

from __future__ import annotations

import functools
import itertools
import json
import uuid

import gin
import numpy as np
import pytest

from vertjax import errors
from vertjax.data import pipeline, tasks

LENGTHS = {"inputs": 32, "targets": 16}
ENC_DEC_KEYS = {
    "encoder_input_tokens",
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_loss_weights",
}
PACKING_KEYS = {
    "encoder_segment_ids",
    "decoder_segment_ids",
    "encoder_positions",
    "decoder_positions",
}


@pytest.fixture
def lm_task(tiny_corpus_jsonl, tiny_vocab) -> str:
    """A span-corruption task over the tiny corpus (small shuffle buffer: fast first batch)."""
    name = f"pipe_sc_{uuid.uuid4().hex[:8]}"
    tasks.register_jsonl_task(
        name, split_files={"train": str(tiny_corpus_jsonl)}, vocab_path=tiny_vocab,
        kind="span_corruption", shuffle_buffer_size=64,
    )  # fmt: skip
    return name


def _pairs_task(tmp_path, tiny_vocab, *, split: str, n: int) -> str:
    """A seq2seq task of `n` short pairs {inputs: 'row i', targets: 'i ms'}."""
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"inputs": f"row {i}", "targets": f"{i} ms"}) + "\n" for i in range(n)),
        encoding="utf-8",
    )
    name = f"pipe_s2s_{uuid.uuid4().hex[:8]}"
    tasks.register_jsonl_task(
        name, split_files={split: str(path)}, vocab_path=tiny_vocab, kind="seq2seq",
        shuffle_buffer_size=64,
    )  # fmt: skip
    return name


def _batches(n: int, **kwargs) -> list[dict[str, np.ndarray]]:
    ds = pipeline.get_dataset(task_feature_lengths=LENGTHS, **kwargs)
    return list(itertools.islice(ds.as_numpy_iterator(), n))


def _equal(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        for x, y in zip(a, b, strict=True)
    )


def test_packed_batches_have_t5x_features(tmp_path, tiny_vocab):
    name = _pairs_task(tmp_path, tiny_vocab, split="train", n=40)
    (batch,) = _batches(1, mixture_or_task_name=name, batch_size=4, seed=1)
    assert set(batch) == ENC_DEC_KEYS | PACKING_KEYS
    assert batch["encoder_input_tokens"].shape == (4, 32)
    assert batch["decoder_target_tokens"].shape == (4, 16)
    assert all(v.dtype == np.int32 for v in batch.values())
    assert batch["encoder_segment_ids"].max() >= 2  # several examples share a row
    np.testing.assert_array_equal(
        batch["decoder_loss_weights"], (batch["decoder_target_tokens"] > 0).astype(np.int32)
    )
    seg, pos = batch["decoder_segment_ids"], batch["decoder_positions"]
    starts = (seg > 0) & (pos == 0)
    np.testing.assert_array_equal(batch["decoder_input_tokens"][starts], 0)  # shifted right
    (plain,) = _batches(1, mixture_or_task_name=name, batch_size=4, seed=1, pack=False)
    assert set(plain) == ENC_DEC_KEYS


def test_same_seed_same_batches_other_seed_differs(lm_task, tiny_corpus_jsonl, tiny_vocab):
    prefix = f"pipe_plm_{uuid.uuid4().hex[:8]}"
    tasks.register_jsonl_task(
        prefix, split_files={"train": str(tiny_corpus_jsonl)}, vocab_path=tiny_vocab,
        kind="prefix_lm", shuffle_buffer_size=64,
    )  # fmt: skip
    mix = f"pipe_mix_{uuid.uuid4().hex[:8]}"
    tasks.register_mixture(mix, rates={lm_task: 1.0, prefix: 1.0})
    first = _batches(3, mixture_or_task_name=mix, batch_size=4, seed=11)
    again = _batches(3, mixture_or_task_name=mix, batch_size=4, seed=11)
    other = _batches(3, mixture_or_task_name=mix, batch_size=4, seed=12)
    assert _equal(first, again) and not _equal(first, other)


def test_iterator_resume_is_exact(lm_task):
    factory = functools.partial(
        pipeline.get_dataset, mixture_or_task_name=lm_task, task_feature_lengths=LENGTHS,
        batch_size=4, seed=3,
    )  # fmt: skip
    fresh = pipeline.DataIterator(factory)
    straight = [next(fresh) for _ in range(20)]
    assert fresh.state() == {"batches_consumed": 20}

    resumed = pipeline.DataIterator(factory)
    resumed.restore({"batches_consumed": np.asarray(10)})  # as restored from a checkpoint
    assert resumed.state() == {"batches_consumed": 10}
    assert _equal([next(resumed) for _ in range(10)], straight[10:])
    assert resumed.state() == {"batches_consumed": 20}
    assert _equal(list(itertools.islice(pipeline.DataIterator(factory, 10), 10)), straight[10:])
    assert not _equal(straight[10:11], straight[11:12])
    with pytest.raises(errors.CheckpointError, match="batches_consumed"):
        resumed.restore({"step": 3})


def test_shards_split_the_examples(tmp_path, tiny_vocab):
    name = _pairs_task(tmp_path, tiny_vocab, split="validation", n=40)
    common = dict(mixture_or_task_name=name, split="validation", shuffle=False, pack=False)
    whole = _batches(100, batch_size=4, num_epochs=1, **common)
    assert len(whole) == 10
    halves = [
        _batches(100, batch_size=4, num_epochs=1, shard_id=i, num_shards=2, **common)
        for i in range(2)
    ]
    assert all(len(h) == 10 and h[0]["encoder_input_tokens"].shape == (2, 32) for h in halves)
    rows = np.concatenate([b["encoder_input_tokens"] for b in whole])
    for i, half in enumerate(halves):
        np.testing.assert_array_equal(
            np.concatenate([b["encoder_input_tokens"] for b in half]), rows[i::2]
        )


def test_bad_arguments(lm_task):
    with pytest.raises(errors.ConfigError, match="unknown task or mixture 'nope'"):
        pipeline.get_dataset(mixture_or_task_name="nope", task_feature_lengths=LENGTHS)
    with pytest.raises(errors.ConfigError, match="multiple of num_shards"):
        pipeline.get_dataset(
            mixture_or_task_name=lm_task, task_feature_lengths=LENGTHS, batch_size=3, num_shards=2
        )
    with pytest.raises(errors.ConfigError, match="shard_id 2"):
        pipeline.get_dataset(
            mixture_or_task_name=lm_task, task_feature_lengths=LENGTHS, shard_id=2, num_shards=2
        )
    with pytest.raises(errors.ConfigError, match="targets length to at least"):
        pipeline.get_dataset(
            mixture_or_task_name=lm_task, task_feature_lengths={"inputs": 64, "targets": 4}
        )


def test_gin_binds_get_dataset(lm_task):
    gin.clear_config()
    try:
        gin.parse_config(f"""
            import vertjax.data.pipeline
            vertjax.data.pipeline.get_dataset.mixture_or_task_name = '{lm_task}'
            vertjax.data.pipeline.get_dataset.task_feature_lengths = {{'inputs': 32, 'targets': 16}}
            vertjax.data.pipeline.get_dataset.batch_size = 2
        """)  # fmt: skip
        batch = next(pipeline.get_dataset().as_numpy_iterator())
    finally:
        gin.clear_config()
    assert batch["encoder_input_tokens"].shape == (2, 32)
    assert pipeline.get_vocabulary(lm_task).vocab_size == 400
