"""IndexDir: the one place that names an index folder's files and reads its records."""

from __future__ import annotations

import pytest

from vertjax import errors
from vertjax.retrieval import bm25, index_dir
from vertjax.retrieval.index_dir import IndexDir


def test_paths_and_presence_follow_what_was_built(tmp_path):
    layout = IndexDir(tmp_path / "index")
    assert not layout.has_bm25() and not layout.has_dense() and not layout.is_sharded()
    bm25.BM25Index.build([{"id": "a", "text": "alpha beta"}]).save(layout.root)
    assert layout.has_bm25() and not layout.has_dense()
    assert layout.passages.is_file() and layout.bm25_manifest.is_file()
    assert [p["id"] for p in layout.open_passages().get([0])] == ["a"]
    assert layout.shard_dirs() == [layout]


def test_domain_is_set_and_read_in_the_build_record_keeping_the_rest(tmp_path):
    layout = IndexDir(tmp_path)
    assert layout.domain() is None
    layout.write_record(index_dir.BUILD_FILE, {"passages": "p.jsonl"})
    layout.set_domain({"name": "SQLite", "description": "the manual"})
    assert layout.domain() == {"name": "SQLite", "description": "the manual"}
    layout.set_domain(None)
    assert layout.domain() is None
    assert layout.read_record(index_dir.BUILD_FILE) == {"passages": "p.jsonl"}


def test_corrupted_records_name_the_file(tmp_path):
    layout = IndexDir(tmp_path)
    (tmp_path / index_dir.RETRIEVER_FILE).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(errors.RetrievalIndexError, match="retriever.json: corrupted"):
        layout.read_retriever()
    (tmp_path / index_dir.BUILD_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(errors.RetrievalIndexError, match="build.json: corrupted"):
        layout.domain()
    (tmp_path / index_dir.SHARDS_FILE).write_text('{"num_shards": 0}', encoding="utf-8")
    with pytest.raises(errors.RetrievalIndexError, match="num_shards"):
        layout.shard_dirs()


def test_check_owned_refuses_foreign_folders_and_temporaries_are_removed(tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(errors.ConfigError, match="train.jsonl"):
        IndexDir(pack).check_owned()
    with pytest.raises(errors.ConfigError, match="train.jsonl"):
        IndexDir(pack).check_owned(sharded=True)
    sharded = tmp_path / "sharded"
    (sharded / index_dir.shard_name(0, 2)).mkdir(parents=True)
    IndexDir(sharded).check_owned(sharded=True)
    with pytest.raises(errors.ConfigError, match="shard-00000-of-00002"):
        IndexDir(sharded).check_owned()  # one index is never written over a sharded one
    left = [tmp_path / ".bm25.x1", tmp_path / ".passages.jsonl.tmp"]
    left[0].mkdir()
    left[1].write_text("half", encoding="utf-8")
    assert IndexDir(tmp_path).remove_temporaries() == sorted(left)
    assert not any(p.exists() for p in left)
