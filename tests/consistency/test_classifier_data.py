"""NLI pair batches for the classifier: deterministic, resumable, sharded, bad labels named."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vertjax import errors, io_utils
from vertjax.consistency import classifier_data


def _records(n=10):
    labels = ("entailment", "neutral", "contradiction")
    return [
        {
            "premise": f"The cache {i} is flushed.",
            "hypothesis": f"Cache {i}.",
            "label": labels[i % 3],
        }
        for i in range(n)
    ]


def test_batches_resume_exactly_and_shard(tmp_path, tiny_vocab):
    io_utils.write_jsonl(tmp_path / "train.jsonl", _records())
    source = classifier_data.NLIPairsDataSource(
        files=[tmp_path / "train.jsonl"], vocab=tiny_vocab, batch_size=4, premise_length=16
    )
    batches = list(itertools.islice(source.iterator(), 6))  # crosses two epochs of 10 records
    assert batches[0]["premise_tokens"].shape == (4, 16)
    assert batches[0]["hypothesis_tokens"].shape == (4, 48)
    assert set(np.concatenate([b["labels"] for b in batches[:3]][:3]).tolist()) <= {0, 1, 2}
    resumed = next(source.iterator(start_batch=4))
    for key in batches[4]:
        np.testing.assert_array_equal(resumed[key], batches[4][key])
    halves = [next(source.iterator(start_batch=4, shard_id=s, num_shards=2)) for s in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([h["labels"] for h in halves]), batches[4]["labels"]
    )
    ends = [row[row > 0][-1] for row in batches[0]["premise_tokens"]]
    assert all(end == 1 for end in ends)  # EOS closes every text


def test_bad_label_names_file_and_line(tmp_path, tiny_vocab):
    rows = _records(3)
    rows[1]["label"] = "maybe"
    io_utils.write_jsonl(tmp_path / "bad.jsonl", rows)
    source = classifier_data.NLIPairsDataSource(
        files=[tmp_path / "bad.jsonl"], vocab=tiny_vocab, batch_size=2
    )
    with pytest.raises(errors.DataError, match=r"bad\.jsonl:2: label 'maybe'"):
        next(source.iterator())
