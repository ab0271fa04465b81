"""Passage encoding sharded over 4 fake CPU devices gives the 1-device embeddings, and resumes.

One subprocess with `--xla_force_host_platform_device_count=4` (the device count is fixed when
JAX starts) builds a dense index of 37 passages with batch size 6 (rounded up to 8, so the last
batch is zero-padded), records the sharding the jitted encoder really gets, and leaves an
encoding interrupted after 32 of 37 rows. This single-device test process then checks the
sharding, compares the embeddings with its own build and resumes the interrupted encoding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import make_retriever, tiny_corpus_records

from vertjax import io_utils
from vertjax.data import vocab as vocab_lib
from vertjax.retrieval import encode, store
from vertjax.train import restore

COUNT = 37
BATCH_SIZE = 6
DEVICES = 4
LENGTH = 24
SHARD_SIZE = 12
FINGERPRINT = "tiny-37"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from vertjax.data import vocab as vocab_lib
    from vertjax.train import restore
    from vertjax.retrieval import encode, store

    run, vocab_path, passages_path, index_dir, partial_dir, direct_path = sys.argv[1:]
    count, batch_size, length, shard_size = {count}, {batch_size}, {length}, {shard_size}


    class ShardingSpy:
        # Wraps the model: records the sharding the partitioner gives the tokens inside jit.
        def __init__(self, model):
            self.model, self.seen = model, []

        def encode(self, params, tokens, *, kind):
            jax.debug.inspect_array_sharding(tokens, callback=self.seen.append)
            return self.model.encode(params, tokens, kind=kind)


    class Interrupted(Exception):
        pass


    model, params = restore.load_dual_encoder(run)
    spy = ShardingSpy(model)
    batch_encoder = encode.BatchEncoder(spy, params, kind="passage", batch_size=batch_size)
    vocab = vocab_lib.load_vocab(vocab_path)
    passages = store.PassageStore.from_jsonl(passages_path)
    texts = [encode.passage_text(passages[r]) for r in range(count)]
    direct = batch_encoder(encode.tokenize(vocab, texts, length=length))
    sharding = spy.seen[0]
    result = {{
        "device_count": jax.device_count(),
        "mesh": dict(batch_encoder.mesh.shape),
        "batch_size": batch_encoder.batch_size,
        "traces": len(spy.seen),
        "tokens_fully_replicated": sharding.is_fully_replicated,
        "tokens_shard_shape": list(sharding.shard_shape((batch_encoder.batch_size, length))),
        "tokens_devices": len(sharding.device_set),
        "params_fully_replicated": all(
            leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(batch_encoder.params)
        ),
        "direct_shape": list(direct.shape),
    }}
    np.save(direct_path, direct)

    result["build"] = encode.build_index(
        passages=passages_path, out=index_dir, retriever=run, vocab=vocab_path, method="brute",
        passage_length=length, batch_size=batch_size, progress=False,
    )

    calls = []

    def flaky(tokens):
        calls.append(len(tokens))
        if len(calls) == 2:
            raise Interrupted
        return batch_encoder(tokens)

    flaky.batch_size = batch_encoder.batch_size
    try:
        encode.encode_passages(
            encoder=flaky, vocab=vocab, passages=passages, out_dir=partial_dir,
            dim=model.projection_dim, passage_length=length, shard_size=shard_size,
            rows_per_call=4 * batch_encoder.batch_size, fingerprint={fingerprint!r}, progress=False,
        )
    except Interrupted:
        result["interrupted_after_rows"] = calls[0]
    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory, tiny_vocab):
    """Runs the 4-device subprocess once; returns its paths and its RESULT dict."""
    root = tmp_path_factory.mktemp("four_devices")
    passages = root / "passages.jsonl"
    io_utils.write_jsonl(passages, tiny_corpus_records(COUNT))
    paths = {
        "run": make_retriever(root / "gtr"),
        "vocab": tiny_vocab,
        "passages": passages,
        "index": root / "index",
        "partial": root / "partial",
        "direct": root / "direct.npy",
    }
    script = SCRIPT.format(
        count=COUNT,
        batch_size=BATCH_SIZE,
        length=LENGTH,
        shard_size=SHARD_SIZE,
        fingerprint=FINGERPRINT,
    )
    env = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}",
        JAX_PLATFORMS="cpu",
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *(str(p) for p in paths.values())],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return paths, json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def one_device_index(four_devices, tmp_path_factory):
    """The same index built in this (single-device) process; returns its embeddings."""
    assert jax.device_count() == 1, "the baseline needs a single-device test process"
    paths, _ = four_devices
    out = tmp_path_factory.mktemp("one_device") / "index"
    summary = encode.build_index(
        passages=paths["passages"],
        out=out,
        retriever=paths["run"],
        vocab=paths["vocab"],
        method="brute",
        passage_length=LENGTH,
        batch_size=BATCH_SIZE,
        progress=False,
    )
    assert summary["status"] == "built" and summary["count"] == COUNT
    return np.array(store.open_embeddings(out / store.EMBEDDINGS_FILE))


def test_four_device_encoding_splits_the_batch_and_gives_the_one_device_embeddings(
    four_devices, one_device_index
):
    paths, result = four_devices
    assert result["device_count"] == DEVICES
    assert result["mesh"] == {"data": DEVICES, "model": 1}
    assert result["batch_size"] == 8  # 6 rounded up to a multiple of 4 devices
    assert result["traces"] == 1  # 5 batches, the last zero-padded: one fixed shape, one compile
    # Each device holds 2 of the 8 rows: a replicated batch would give [8, LENGTH] on every one.
    assert not result["tokens_fully_replicated"]
    assert result["tokens_shard_shape"] == [8 // DEVICES, LENGTH]
    assert result["tokens_devices"] == DEVICES
    assert result["params_fully_replicated"]
    assert result["direct_shape"] == [COUNT, 16]
    build = result["build"]
    assert build["status"] == "built" and build["count"] == COUNT
    assert build["resumed_from_row"] == 0

    sharded = np.array(store.open_embeddings(paths["index"] / store.EMBEDDINGS_FILE))
    assert sharded.shape == (COUNT, 16)
    np.testing.assert_allclose(sharded, one_device_index, atol=1e-5)
    np.testing.assert_allclose(np.load(paths["direct"]), one_device_index, atol=1e-5)
    # Every row is its own passage's: no padding row or repeated batch was written.
    assert len(np.unique(sharded.round(4), axis=0)) == COUNT


def test_interrupted_four_device_encoding_resumes_on_one_device(four_devices, one_device_index):
    paths, result = four_devices
    # The first call encoded 32 rows (batch 8 x 4); the second was interrupted. Only the two
    # complete 12-row shards were recorded, so rows 24..31 are encoded again.
    assert result["interrupted_after_rows"] == 32
    progress = store.read_progress(paths["partial"])
    assert progress["rows_done"] == 24

    model, params = restore.load_dual_encoder(str(paths["run"]))
    resumed_from = encode.encode_passages(
        encoder=encode.BatchEncoder(model, params, kind="passage", batch_size=BATCH_SIZE),
        vocab=vocab_lib.load_vocab(paths["vocab"]),
        passages=store.PassageStore.from_jsonl(paths["passages"]),
        out_dir=paths["partial"],
        dim=model.projection_dim,
        passage_length=LENGTH,
        shard_size=SHARD_SIZE,
        fingerprint=FINGERPRINT,
        progress=False,
    )
    assert resumed_from == 24
    assert store.read_progress(paths["partial"])["rows_done"] == COUNT
    np.testing.assert_allclose(
        store.open_embeddings(paths["partial"] / store.EMBEDDINGS_FILE),
        one_device_index,
        atol=1e-5,
    )
