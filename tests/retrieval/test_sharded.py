"""Sharded indexes: shards built separately (also by parallel processes) and searched as one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_retriever, tiny_corpus_records, write_tiny_pack

from vertjax import cli, errors, io_utils
from vertjax.retrieval import dense, encode, fusion, index_dir, sharded
from vertjax.retrieval.types import Hit

QUESTIONS = ["w3_7 w3_8 alpha", "w11_2 w11_5", "w0_1", "w42_3 w42_4 w42_9"]


def _hit(pid: str, score: float, rank: int) -> Hit:
    return Hit(rank=rank, id=pid, title="", score=score, text="")


def test_merge_keeps_the_top_k_by_score_and_breaks_ties_by_shard_order():
    first = [[_hit("a", 3.0, 1), _hit("b", 1.0, 2)]]
    second = [[_hit("c", 3.0, 1), _hit("d", 2.0, 2)]]
    merged = sharded.merge([first, second], k=3)
    assert [(h.id, h.rank) for h in merged[0]] == [("a", 1), ("c", 2), ("d", 3)]


def test_shard_rows_cover_every_row_once():
    rows = [encode.shard_rows(10, 3, i) for i in range(3)]
    assert [list(r) for r in rows] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_vocab):
    """One brute-force index over 200 passages, and the same passages in 3 shards."""
    root = tmp_path_factory.mktemp("sharded")
    passages = root / "passages.jsonl"
    io_utils.write_jsonl(passages, tiny_corpus_records())
    run = make_retriever(root / "gtr")
    common = dict(passages=passages, retriever=run, vocab=tiny_vocab, method="brute", bm25=True)
    encode.build_index(out=root / "one", progress=False, **common)
    for shard in range(3):
        summary = encode.build_index(
            out=root / "three", num_shards=3, shard_id=shard, progress=False, **common
        )
        assert summary["status"] == "built"
    return root


def test_brute_force_shards_merged_equal_one_index(built):
    one = dense.open_retriever(built / "one", "dense").search(QUESTIONS, 10)
    three = dense.open_retriever(built / "three", "dense").search(QUESTIONS, 10)
    assert [[h.id for h in q] for q in three] == [[h.id for h in q] for q in one]
    np.testing.assert_allclose(
        [[h.score for h in q] for q in three], [[h.score for h in q] for q in one], rtol=1e-5
    )
    assert [[h.rank for h in q] for q in three] == [list(range(1, 11))] * len(QUESTIONS)
    shard_sizes = [len(d.open_passages()) for d in index_dir.IndexDir(built / "three").shard_dirs()]
    assert shard_sizes == [66, 67, 67]


def test_sharded_bm25_and_hybrid_search_every_shard(built):
    passage = tiny_corpus_records()[150]  # in the third shard
    question = f"{passage['title']} {passage['text']}"
    lexical = dense.open_retriever(built / "three", "bm25").search([question], 5)[0]
    assert len(lexical) == 5 and lexical[0].id == passage["id"]
    assert lexical[0].source is None and lexical[0].doc_id == passage["doc_id"]
    hybrid = dense.open_retriever(built / "three", "hybrid")
    assert isinstance(hybrid, fusion.HybridRetriever)
    # Calibrated refusal thresholds are looked up by the kind of the sharded retriever.
    from vertjax.system import calibration

    for kind in ("bm25", "dense", "hybrid"):
        retriever = dense.open_retriever(built / "three", kind)
        assert calibration.retriever_kind(retriever) == kind
    assert hybrid.search([question], 5)[0][0].id == passage["id"]
    assert (
        dense.open_retriever(built / "three", "auto").search([question], 3)[0][0].id
        == (passage["id"])
    )


def test_rebuilding_a_shard_finds_it_built_and_other_settings_are_refused(built, tiny_vocab):
    passages = built / "passages.jsonl"
    common = dict(passages=passages, retriever=built / "gtr", vocab=tiny_vocab, method="brute")
    again = encode.build_index(out=built / "three", num_shards=3, shard_id=1, bm25=True, **common)
    assert again["status"] == "already built"
    with pytest.raises(errors.ConfigError, match="num_shards"):
        encode.build_index(out=built / "three", num_shards=2, shard_id=0, **common)
    with pytest.raises(errors.ConfigError, match="shard_id"):
        encode.build_index(out=built / "new", num_shards=2, shard_id=2, **common)
    with pytest.raises(errors.ConfigError, match="not part of a vertjax index"):
        encode.build_index(out=built / "one", num_shards=2, shard_id=0, **common)


def test_a_missing_shard_is_named_when_searching(tmp_path, tiny_corpus_jsonl):
    out = tmp_path / "index"
    encode.build_index(passages=tiny_corpus_jsonl, out=out, bm25=True, num_shards=2, shard_id=1)
    with pytest.raises(errors.RetrievalIndexError, match=r"shards \[0\] of 2 are not built"):
        dense.open_retriever(out, "bm25")


def test_bad_shard_flags_exit_2_with_one_line(tmp_path, tiny_corpus_jsonl, capsys):
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", str(tmp_path / "i")]
    assert cli.main([*argv, "--bm25", "--num_shards", "2", "--shard_id", "5"]) == 2
    assert "0 <= shard_id < num_shards" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()


def test_the_assistant_answers_from_a_sharded_index(tmp_path, capsys):
    pack = write_tiny_pack(tmp_path / "pack")
    index = tmp_path / "index"
    build = ["index", "build", "--passages", str(pack), "--out", str(index), "--bm25"]
    for shard in range(2):
        assert cli.main([*build, "--num_shards", "2", "--shard_id", str(shard)]) == 0
    capsys.readouterr()
    passage = tiny_corpus_records()[170]  # in the second shard
    question = f"What about {passage['text'].split('. ')[0].lower()}?"
    argv = ["answer", "--config", "system/default.gin", f"--gin.INDEX_DIR={index}", "--json"]
    assert cli.main([*argv, question]) == 0
    result = json.loads(capsys.readouterr().out)
    assert not result["refused"]
    assert passage["id"] in {p["id"] for p in result["selected"]}


@pytest.mark.slow
def test_two_processes_build_the_shards_in_parallel(tmp_path, tiny_vocab):
    """`vertjax index build --num_shards 2 --shard_id I` run as two processes at once (one per
    host in a real deployment); `vertjax retrieve` then searches both shards."""
    passages = tmp_path / "passages.jsonl"
    io_utils.write_jsonl(passages, tiny_corpus_records())
    run = make_retriever(tmp_path / "gtr")
    out = tmp_path / "index"
    base = [sys.executable, "-m", "vertjax", "index", "build", "--passages", str(passages)]
    base += ["--out", str(out), "--retriever", str(run), "--vocab", str(tiny_vocab)]
    base += ["--method", "brute", "--bm25", "--no_progress", "--num_shards", "2"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [*base, "--shard_id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr.decode()[-2000:]
        assert json.loads(stdout)["status"] == "built"
    search = [sys.executable, "-m", "vertjax", "retrieve", "--index", str(out), "--json"]
    search += ["--retriever", "dense", "--question", "storage of the database", "-k", "200"]
    found = subprocess.run(search, capture_output=True, text=True, env=env, timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    ids = [json.loads(line)["id"] for line in found.stdout.splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in tiny_corpus_records())


def test_more_shards_than_passages_is_refused_before_anything_is_recorded(tmp_path):
    passages = tmp_path / "three.jsonl"
    io_utils.write_jsonl(passages, tiny_corpus_records(3))
    out = tmp_path / "index"
    with pytest.raises(errors.ConfigError, match="more shards than the 3 passages"):
        encode.build_index(passages=passages, out=out, bm25=True, num_shards=4, shard_id=0)
    assert not out.exists()
    for shard in range(3):  # the corrected shard count is not refused as "other settings"
        encode.build_index(passages=passages, out=out, bm25=True, num_shards=3, shard_id=shard)
    assert len(dense.open_retriever(out, "bm25").search(["database"], 3)[0]) <= 3
