"""Issue 15 finding 9: bad records and hostile folders were ingested silently: a one-line file
became a passage titled with the whole line, a passage without `text` was indexed as "", a
symlink in a source folder was followed (to `/etc/os-release`), and index or pack manifests
naming `../..` paths were followed (revealing a file's existence and size)."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from vertjax import cli, errors, io_utils
from vertjax.data import chunking, packs
from vertjax.retrieval import bm25, store
from vertjax.retrieval.index_dir import IndexDir

SENTENCE = "The cache flushes every dirty page before the checkpoint completes. "


def _build_folder_pack(tmp_path, source):
    out = tmp_path / "pack"
    packs.build_pack("folder", out, source=source, max_tokens=64, cache=tmp_path / "cache")
    return out, packs.load_passages(out)


def test_a_huge_one_line_file_is_chunked_with_a_capped_title(tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    # ~1 MB on one line (distinct words: near-duplicate chunks would be dropped), then a
    # 200 KB "word" without spaces (a base64 blob, say)
    line = " ".join(f"word{i}" for i in range(100_000))
    (source / "one_line.txt").write_text(line, encoding="utf-8")
    blob = "".join(f"{i:08x}" for i in range(25_000))
    (source / "blob.txt").write_text("Blob: " + blob, encoding="utf-8")
    _, passages = _build_folder_pack(tmp_path, source)
    assert len(passages) > 100
    assert max(len(p["title"]) for p in passages) <= 2 * chunking.MAX_TITLE_CHARS
    assert max(len(p["text"]) for p in passages) <= 64 * (chunking.MAX_WORD_CHARS + 1)
    blob = [p for p in passages if p["doc_id"] == "blob.txt"]
    assert len(blob) > 1 and all(len(p["title"]) <= chunking.MAX_TITLE_CHARS for p in blob)


def test_a_passage_without_text_is_an_error_naming_file_and_line(tmp_path, capsys):
    passages = tmp_path / "passages.jsonl"
    rows = [{"id": "a", "title": "A", "text": "alpha beta"}, {"id": "b", "title": "no text"}]
    io_utils.write_jsonl(passages, rows)
    argv = ["index", "build", "--passages", str(passages), "--out", str(tmp_path / "index")]
    assert cli.main([*argv, "--bm25"]) == 2
    err = capsys.readouterr().err
    assert f"{passages}:2:" in err and "'text'" in err
    with pytest.raises(errors.DataError, match="passage 'b' needs a string 'text'"):
        bm25.BM25Index.build(rows)


def test_symlinks_in_a_source_folder_are_skipped_with_a_warning(tmp_path, caplog):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("SECRET token-1234 " * 20, encoding="utf-8")
    source = tmp_path / "docs"
    source.mkdir()
    (source / "real.md").write_text("# Real\n\n" + SENTENCE * 4, encoding="utf-8")
    (source / "link.txt").symlink_to(secret / "secret.txt")
    (source / "linked_dir").symlink_to(secret, target_is_directory=True)
    with caplog.at_level(logging.WARNING):
        _, passages = _build_folder_pack(tmp_path, source)
    assert {p["doc_id"] for p in passages} == {"real.md"}
    assert not any("SECRET" in p["text"] for p in passages)
    assert "symbolic link" in caplog.text and "link.txt" in caplog.text


def _record(path):
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("name", ["../../outside.txt", "ABSOLUTE"])
def test_index_manifests_naming_paths_outside_the_index_are_refused(tmp_path, name):
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the index", encoding="utf-8")
    name = str(outside) if name == "ABSOLUTE" else name
    directory = tmp_path / "a" / "index"
    bm25.BM25Index.build([{"id": "a", "text": "alpha beta"}]).save(directory)
    manifest_path = IndexDir(directory).bm25_manifest
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = _record(outside)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(errors.RetrievalIndexError, match="outside the index"):
        bm25.BM25Index.load(directory)
    with pytest.raises(errors.RetrievalIndexError, match="outside the index"):
        store.check_files(directory, {name: _record(outside)}, verify=False)


def test_pack_manifests_naming_paths_outside_the_pack_are_refused(tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    (source / "real.md").write_text("# Real\n\n" + SENTENCE * 4, encoding="utf-8")
    pack, _ = _build_folder_pack(tmp_path, source)
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the pack", encoding="utf-8")
    manifest = json.loads((pack / packs.MANIFEST).read_text())
    manifest["files"]["../outside.txt"] = {"sha256": _record(outside)["sha256"]}
    (pack / packs.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(errors.DataError, match="outside the pack"):
        packs.verify_pack(pack)
