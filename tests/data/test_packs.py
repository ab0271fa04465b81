"""Pack builds: manifest, checksums, leak-free splits, stable ids, atomic output, bad input."""

from __future__ import annotations

import json
import pathlib
import shutil

import pytest

from vertjax import errors
from vertjax.data import chunking, packs
from vertjax.eval import corpus_report


def _corpus(root: pathlib.Path, n_docs: int = 12) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        paragraphs = [
            f"Document {i} paragraph {j} says " + " ".join(f"t{i}_{j}_{k}" for k in range(25))
            for j in range(4)
        ]
        (root / f"doc{i:02d}.md").write_text(
            f"# Doc {i}\n\n" + "\n\n".join(paragraphs), encoding="utf-8"
        )
    return root


def _build(source, out, **kwargs):
    kwargs = {
        "max_tokens": 40,
        "overlap": 5,
        "validation_fraction": 0.25,
        "test_fraction": 0.25,
        "cache": out.parent / "cache",
    } | kwargs
    return packs.build_pack("folder", out, source=source, **kwargs)


def _records(out: pathlib.Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def test_folder_pack_manifest_splits_and_stable_ids(tmp_path):
    source = _corpus(tmp_path / "src")
    out = tmp_path / "pack"
    manifest = _build(source, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["counts"]["documents"] == 12
    assert manifest["license"] and manifest["version"] == "local"
    by_split = {s: _records(out, s) for s in chunking.SPLITS}
    assert sum(len(r) for r in by_split.values()) == manifest["counts"]["passages"]
    doc_sets = [{r["doc_id"] for r in rs} for rs in by_split.values()]
    assert not (doc_sets[0] & doc_sets[1] or doc_sets[0] & doc_sets[2] or doc_sets[1] & doc_sets[2])
    assert all(doc_sets), "12 documents at 25 % fractions fill every split"
    for records in by_split.values():
        for r in records:
            assert set(r) == {"id", "doc_id", "title", "text", "source"}
            assert r["source"] == r["doc_id"]  # a file path relative to the source folder
            assert chunking.count_tokens(r["text"]) <= 40
    assert manifest["counts"]["approx_tokens"] == sum(
        chunking.count_tokens(r["text"]) for rs in by_split.values() for r in rs
    )
    packs.verify_pack(out)
    first_ids = [r["id"] for r in by_split["train"]]
    _build(source, out)  # rebuilding over an earlier build replaces it
    assert [r["id"] for r in _records(out, "train")] == first_ids
    assert len(set(first_ids)) == len(first_ids)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_duplicate_documents_are_removed(tmp_path):
    source = _corpus(tmp_path / "src", n_docs=2)
    shutil.copy(source / "doc00.md", source / "doc00_copy.md")
    manifest = _build(source, tmp_path / "pack")
    texts = [r["text"] for s in chunking.SPLITS for r in _records(tmp_path / "pack", s)]
    assert len(texts) == len(set(texts))
    assert manifest["counts"]["duplicates_removed"] > 0


def test_non_utf8_file_skipped_or_strict_error(tmp_path, caplog):
    source = _corpus(tmp_path / "src", n_docs=3)
    (source / "latin1.txt").write_bytes("déjà vu ".encode("latin-1") * 20)
    manifest = _build(source, tmp_path / "pack")
    assert manifest["counts"]["documents"] == 3
    assert "latin1.txt" in caplog.text
    with pytest.raises(errors.DataError, match="latin1.txt"):
        _build(source, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()


def test_empty_pack_and_no_passages_after_filtering(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.DataError, match="no documents"):
        _build(tmp_path / "empty", tmp_path / "out")
    source = _corpus(tmp_path / "src", n_docs=2)
    with pytest.raises(errors.DataError, match="no passages left after filtering"):
        _build(source, tmp_path / "out", min_tokens=41)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_rebuild_keeps_the_previous_build(tmp_path):
    source = _corpus(tmp_path / "src", n_docs=4)
    out = tmp_path / "pack"
    manifest = _build(source, out)
    (source / "bad.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(errors.DataError):
        _build(source, out, strict=True)
    assert packs.verify_pack(out) == manifest


def test_refuses_to_overwrite_a_folder_that_is_not_a_pack(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(errors.DataError, match="not empty"):
        _build(_corpus(tmp_path / "src", n_docs=1), out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_apt_pack_reads_an_unpacked_package_tree(tmp_path):
    html_dir = tmp_path / "root/usr/share/doc/postgresql-doc-15/html"
    html_dir.mkdir(parents=True)
    body = " ".join(f"setting{k} controls the write ahead log" for k in range(20))
    (html_dir / "wal.html").write_text(
        f"<html><head><title>30.5. WAL Configuration</title></head><body>"
        f"<div class='navheader'>Prev Next</div><h2>30.5. WAL Configuration</h2><p>{body}</p></body>"
        f"</html>",
        encoding="utf-8",
    )
    manifest = packs.build_pack(
        "postgresql-doc-15",
        tmp_path / "pg",
        source=tmp_path / "root",
        test_fraction=0.0,
        validation_fraction=0.0,
    )
    records = _records(tmp_path / "pg", "train")
    assert manifest["counts"]["documents"] == 1 and records[0]["title"] == "30.5. WAL Configuration"
    assert "Prev" not in records[0]["text"] and records[0]["text"].startswith("setting0 controls")


def test_missing_apt_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(packs.shutil, "which", lambda tool: None)
    with pytest.raises(errors.DataError, match="apt-get. not found"):
        packs.build_pack("sqlite3-doc", tmp_path / "out", cache=tmp_path / "cache")
    assert not (tmp_path / "out").exists()


def test_unknown_pack_and_folder_without_source(tmp_path):
    with pytest.raises(errors.ConfigError, match="unknown data pack"):
        packs.build_pack("nope", tmp_path / "out")
    with pytest.raises(errors.ConfigError, match="--source"):
        packs.build_pack("folder", tmp_path / "out")
    names = [p["name"] for p in packs.list_packs()]
    assert {"python-stdlib", "postgresql-doc-15", "general-wordnet", "folder"} <= set(names)


def test_tfds_pack_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        manifest = packs.build_pack(
            "tfds:lm1b",
            tmp_path / "lm1b",
            min_tokens=1,
            max_tokens=32,
            overlap=0,
            dedup_threshold=1.0,
        )
    assert manifest["counts"]["documents"] == 6 and manifest["version"] == "lm1b"


def test_corpus_report_and_checksum_check(tmp_path):
    out = tmp_path / "pack"
    manifest = _build(_corpus(tmp_path / "src"), out)
    report = corpus_report.corpus_report(out)
    assert report["passages"] == manifest["counts"]["passages"]
    assert report["tokens"] == manifest["counts"]["approx_tokens"]
    assert report["documents"] == sum(s["documents"] for s in manifest["splits"].values())
    assert report["passage_tokens"]["max"] <= 40
    assert (out / "passage_lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "passages" in corpus_report.format_report(report)
    with (out / "test.jsonl").open("a") as f:
        f.write('{"id": "x", "doc_id": "x", "title": "x", "text": "x"}\n')
    with pytest.raises(errors.DataError, match="sha256"):
        corpus_report.corpus_report(out)


def test_ensure_pack_builds_once_then_verifies_and_rebuilds_a_changed_pack(tmp_path):
    source, out, heard = _corpus(tmp_path / "src"), tmp_path / "pack", []
    options = {"source": source, "max_tokens": 40, "cache": tmp_path / "cache"}
    built = packs.ensure_pack("folder", out, announce=heard.append, **options)
    assert heard == ["building data pack folder"]
    assert packs.ensure_pack("folder", out, announce=heard.append, **options) == built
    assert len(heard) == 1  # verified, not rebuilt
    (out / "train.jsonl").write_text("{}\n")
    assert (
        packs.ensure_pack("folder", out, announce=heard.append, **options)["counts"]
        == (built["counts"])
    )
    assert len(heard) == 2 and packs.verify_pack(out)["counts"] == built["counts"]


def test_report_counts_the_documents_that_build_reports(tmp_path):
    """Build once counted every document read, the report those that kept a passage (767 vs
    672 on the SQLite manual): a too-short document and a duplicate one now count in neither."""
    source = _corpus(tmp_path / "src", n_docs=8)
    (source / "tiny.md").write_text("# Tiny\n\nToo short.\n", encoding="utf-8")
    shutil.copy(source / "doc03.md", source / "doc03_copy.md")
    out = tmp_path / "pack"
    manifest = _build(source, out)
    report = corpus_report.corpus_report(out)
    assert report["documents"] == manifest["counts"]["documents"] == 8
    assert manifest["counts"]["documents_read"] == 10
    assert report["documents_without_passages"] == 2
    assert "2 more documents were read" in corpus_report.format_report(report)
    for split, counts in report["splits"].items():
        assert counts["documents"] == manifest["splits"][split]["documents"]


def test_domain_recorded_from_flags_or_defaulted_from_the_source(tmp_path):
    source = _corpus(tmp_path / "product_manual", n_docs=4)
    manifest = _build(source, tmp_path / "pack")
    assert manifest["domain"]["name"] == "product_manual"
    assert "product_manual" in manifest["domain"]["description"]
    named = _build(
        source,
        tmp_path / "named",
        domain_name="the Acme router",
        domain_description="Acme router admin guide",
    )
    assert named["domain"] == {"name": "the Acme router", "description": "Acme router admin guide"}
    assert str(tmp_path) not in json.dumps(named)  # the manifest travels: no local paths
    for pack, expected in [
        ("python-stdlib", "the Python standard library"),
        ("sqlite3-doc", "SQLite"),
    ]:
        assert packs.pack_domain(packs.get_pack(pack), None)["name"] == expected


def test_passages_cite_their_file_and_url_never_an_absolute_path(tmp_path):
    source = _corpus(tmp_path / "src", n_docs=3)
    (source / "guide").mkdir()
    (source / "guide" / "faq.html").write_text(
        "<html><head><title>FAQ</title></head><body><p>"
        + " ".join(f"answer{k}" for k in range(30))
        + "</p></body></html>",
        encoding="utf-8",
    )
    out = tmp_path / "pack"
    _build(source, out, base_url="https://docs.example.org/manual/")
    records = [r for s in chunking.SPLITS for r in _records(out, s)]
    faq = [r for r in records if r["doc_id"] == "guide/faq.html"]
    assert faq and all(r["source"] == "guide/faq.html" for r in faq)
    assert all(r["url"] == "https://docs.example.org/manual/guide/faq.html" for r in faq)
    assert all("url" not in r for r in records if r["source"].endswith(".md"))
    assert str(tmp_path) not in (out / "train.jsonl").read_text() + (out / "test.jsonl").read_text()
