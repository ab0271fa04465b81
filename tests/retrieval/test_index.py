"""Dense index: resumable embedding writes, exact and ScaNN search, save/load, and clear errors."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from vertjax import errors
from vertjax.retrieval import store
from vertjax.retrieval.index import DenseIndex, default_scann_params, exact_search


def clustered(n: int, d: int, *, seed: int = 0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    x = centers[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def passages(n: int) -> list[dict]:
    return [{"id": f"p{i}", "title": f"T{i}", "text": f"text {i}"} for i in range(n)]


@pytest.fixture(scope="module")
def scann_dir(tmp_path_factory):
    """One small ScaNN index (3000 x 32), built once for the tests that need it."""
    db = clustered(3000, 32)
    index = DenseIndex.build(db, metadata=passages(3000), method="scann")
    out = tmp_path_factory.mktemp("scann_index")
    index.save(out)
    return out, db, index


def test_embedding_writer_resumes_at_last_complete_shard(tmp_path):
    data = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    writer = store.EmbeddingWriter(tmp_path, dim=4, count=50, shard_size=16, fingerprint="f1")
    writer.write(data[:10])
    writer.write(data[10:21])  # crosses the first shard boundary at 16
    assert store.read_progress(tmp_path)["rows_done"] == 16
    writer.write(data[21:30])  # rows 16..29 are written but their shard is not complete
    writer.close()  # "interrupted"

    resumed = store.EmbeddingWriter(tmp_path, dim=4, count=50, shard_size=16, fingerprint="f1")
    assert resumed.next_row == 16 and not resumed.complete
    resumed.write(data[16:40])
    assert store.read_progress(tmp_path)["rows_done"] == 32
    resumed.write(data[40:])
    assert resumed.complete and store.read_progress(tmp_path)["complete"]
    resumed.close()
    np.testing.assert_array_equal(np.load(tmp_path / "embeddings.npy"), data)

    index = DenseIndex.build(tmp_path, method="brute")
    assert (index.count, index.dimension) == (50, 4)
    written = (tmp_path / "embeddings.npy").stat().st_mtime_ns
    index.save(tmp_path)  # saving into the encoding dir keeps its embeddings file as is
    assert (tmp_path / "embeddings.npy").stat().st_mtime_ns == written
    assert DenseIndex.load(tmp_path).hits(*index.search(data[7], 1))[0][0].id == "49"


def test_embedding_writer_rejects_a_different_job_and_bad_batches(tmp_path):
    with store.EmbeddingWriter(tmp_path, dim=4, count=8, shard_size=4, fingerprint="a") as w:
        w.write(np.ones((2, 4)))
        with pytest.raises(errors.RetrievalIndexError, match="expected"):
            w.write(np.ones((2, 3)))
        with pytest.raises(errors.RetrievalIndexError, match="non-finite"):
            w.write(np.full((1, 4), np.nan))
        with pytest.raises(errors.RetrievalIndexError, match="too many"):
            w.write(np.ones((7, 4)))
    with pytest.raises(errors.RetrievalIndexError, match="fingerprint"):
        store.EmbeddingWriter(tmp_path, dim=4, count=8, shard_size=4, fingerprint="b")
    with pytest.raises(errors.RetrievalIndexError, match="dimension"):
        store.EmbeddingWriter(tmp_path, dim=5, count=8, shard_size=4, fingerprint="a")
    with pytest.raises(errors.RetrievalIndexError, match="incomplete"):
        DenseIndex.build(tmp_path, method="brute")


def test_exact_search_matches_a_full_sort_with_ties_to_lower_rows():
    db = np.array([[1, 0], [0, 1], [1, 0], [0.5, 0.5], [-1, 0]], dtype=np.float32)
    scores, rows = exact_search(db, np.array([[1, 0], [0, 1]], dtype=np.float32), 3)
    np.testing.assert_array_equal(rows, [[0, 2, 3], [1, 3, 0]])
    np.testing.assert_allclose(scores, [[1, 1, 0.5], [1, 0.5, 0]])
    big = clustered(5000, 8, seed=1)
    q = clustered(7, 8, seed=2)
    _, rows = exact_search(big, q, 10)
    np.testing.assert_array_equal(rows, np.argsort(-(q @ big.T), axis=1, kind="stable")[:, :10])


def test_brute_index_round_trip_and_metadata(tmp_path):
    db = clustered(40, 6)
    index = DenseIndex.build(db, metadata=passages(40), method="brute")
    index.save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    scores, rows = loaded.search(db[3], 100)  # k capped at the corpus size
    assert rows.shape == (1, 40) and rows[0, 0] == 3
    hit = loaded.hits(scores, rows)[0][0]
    assert (hit.rank, hit.id, hit.title, hit.text) == (1, "p3", "T3", "text 3")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["dimension"], manifest["count"], manifest["dtype"]) == (6, 40, "float32")
    assert set(manifest["files"]) == {
        "embeddings.npy",
        "passages.jsonl",
        "passages.jsonl.offsets.npy",
    }


def test_scann_search_save_load(scann_dir, tmp_path):
    out, db, index = scann_dir
    assert index.params["num_leaves"] == default_scann_params(3000)["num_leaves"]
    queries = clustered(50, 32, seed=5)
    _, exact = exact_search(db, queries, 10)
    scores, rows = index.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact, strict=True)])
    assert recall >= 0.8  # ScaNN's k-means is not seeded: ~0.86-0.96 here
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)  # asset paths are relative: the index survives a move
    loaded = DenseIndex.load(moved)
    scores2, rows2 = loaded.search(queries, 10)
    np.testing.assert_array_equal(rows2, rows)
    np.testing.assert_allclose(scores2, scores, rtol=1e-6)
    assert loaded.hits(scores2, rows2)[0][0].id == f"p{rows[0, 0]}"
    _, all_leaves = loaded.search(queries, 10, leaves_to_search=index.params["num_leaves"])
    exhaustive = np.mean(
        [len(set(a) & set(b)) / 10 for a, b in zip(all_leaves, exact, strict=True)]
    )
    # every leaf searched: only the 4-bit hashing before the exact reorder is approximate
    assert exhaustive >= 0.98


def test_tiny_corpus_uses_scann_brute_force():
    db = clustered(200, 16)
    index = DenseIndex.build(db, method="scann")
    assert index.params == {"brute_force": True}
    q = clustered(5, 16, seed=9)
    np.testing.assert_array_equal(index.search(q, 5)[1], exact_search(db, q, 5)[1])
    assert index.hits(*index.search(q[:1], 1))[0][0].id == str(exact_search(db, q[:1], 1)[1][0, 0])


def copy_index(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_load_errors(scann_dir, tmp_path):
    out, _, _ = scann_dir
    with pytest.raises(errors.RetrievalIndexError, match="not found"):
        DenseIndex.load(tmp_path / "nope")
    with pytest.raises(errors.RetrievalIndexError, match="manifest.json: missing"):
        DenseIndex.load(tmp_path)

    truncated = copy_index(out, tmp_path / "truncated")
    emb = truncated / "embeddings.npy"
    emb.write_bytes(emb.read_bytes()[:-100])
    with pytest.raises(errors.RetrievalIndexError, match="truncated"):
        DenseIndex.load(truncated)

    corrupted = copy_index(out, tmp_path / "corrupted")
    raw = bytearray((corrupted / "scann" / "hashed_dataset.npy").read_bytes())
    raw[-1] ^= 0xFF
    (corrupted / "scann" / "hashed_dataset.npy").write_bytes(bytes(raw))
    with pytest.raises(errors.RetrievalIndexError, match="checksum"):
        DenseIndex.load(corrupted)

    wrong_dim = copy_index(out, tmp_path / "wrong_dim")
    manifest = json.loads((wrong_dim / "manifest.json").read_text())
    manifest["dimension"] = 768
    (wrong_dim / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(errors.RetrievalIndexError, match="dimension mismatch"):
        DenseIndex.load(wrong_dim)

    (wrong_dim / "manifest.json").write_text("{not json")
    with pytest.raises(errors.RetrievalIndexError, match="corrupted manifest"):
        DenseIndex.load(wrong_dim)

    pickled = copy_index(out, tmp_path / "pickled")
    (pickled / "scann" / "scann_docids.pkl").write_bytes(b"x")
    with pytest.raises(errors.RetrievalIndexError, match="unpickle"):
        DenseIndex.load(pickled)


def test_query_dimension_mismatch_and_bad_build_input(scann_dir):
    _, _, index = scann_dir
    with pytest.raises(errors.RetrievalIndexError, match="dimension 32"):
        index.search(np.ones((2, 768), np.float32), 5)
    with pytest.raises(errors.RetrievalIndexError, match="passages for"):
        DenseIndex.build(np.ones((3, 2), np.float32), metadata=passages(2), method="brute")
    with pytest.raises(errors.RetrievalIndexError, match="metadata says"):
        DenseIndex.build(
            np.ones((2, 2), np.float32), ids=["a", "b"], metadata=passages(2), method="brute"
        )
    with pytest.raises(errors.RetrievalIndexError, match="unknown ScaNN"):
        DenseIndex.build(np.ones((2, 2), np.float32), method="scann", leaves=3)


def test_passage_store_from_corpus_jsonl(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        '{"id": "a", "doc_id": "d", "title": "A", "text": "alpha"}\n\n{"id": 7, "text": "seven"}\n',
        encoding="utf-8",
    )
    st = store.PassageStore.from_jsonl(corpus)
    assert len(st) == 2
    assert st[1] == {"id": "7", "title": "", "text": "seven"}
    index = DenseIndex.build(np.eye(2, dtype=np.float32), metadata=corpus, method="brute")
    index.save(tmp_path / "idx")
    loaded = DenseIndex.load(tmp_path / "idx")
    assert loaded.passages.get([0, 1])[0] == {
        "id": "a",
        "title": "A",
        "text": "alpha",
        "doc_id": "d",  # kept for citations (the index used to drop it)
    }

    corpus.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', encoding="utf-8")
    with pytest.raises(errors.DataError, match="corpus.jsonl:2: duplicate"):
        store.PassageStore.from_jsonl(corpus)
    corpus.write_text('{"id": "a", "text": "x"}\n{"title": "no id"}\n', encoding="utf-8")
    with pytest.raises(errors.DataError, match="corpus.jsonl:2: .*'id'"):
        store.PassageStore.from_jsonl(corpus)

    passages_file = tmp_path / "idx" / "passages.jsonl"
    passages_file.write_bytes(passages_file.read_bytes()[:-5])
    with pytest.raises(errors.RetrievalIndexError, match="truncated"):
        DenseIndex.load(tmp_path / "idx", verify=False)


def test_unit_vectors_get_a_spherical_tree(monkeypatch, tmp_path):
    """Plain k-means centroids differ in norm and, under dot product, the larger ones swallow the
    queries; vertjax's encoders L2-normalise, so their indexes use spherical k-means."""
    from scann.scann_ops.py import scann_ops_pybind

    configs = []
    create = scann_ops_pybind.create_searcher
    monkeypatch.setattr(
        scann_ops_pybind,
        "create_searcher",
        lambda db, config, *a, **kw: configs.append(config) or create(db, config, *a, **kw),
    )
    db = clustered(1500, 16)
    spherical = DenseIndex.build(db, method="scann")
    assert spherical.params["spherical"] is True
    assert DenseIndex.build(db * 3.0, method="scann").params["spherical"] is False
    assert DenseIndex.build(db, method="scann", spherical=False).params["spherical"] is False
    assert ["partitioning_type: SPHERICAL" in c for c in configs] == [True, False, False]
    spherical.save(tmp_path)
    assert DenseIndex.load(tmp_path).params["spherical"] is True


def test_dense_hits_carry_doc_id_source_and_url(tmp_path):
    """Citations a user can follow: what the passage records say about their file reaches every
    dense hit through the saved index; records without it (older packs) give None."""
    records = passages(4)
    records[1] |= {"doc_id": "guide/faq.html", "source": "guide/faq.html"}
    records[1]["url"] = "https://docs.example.org/guide/faq.html"
    store.PassageStore.write(tmp_path / store.PASSAGES_FILE, records)
    db = clustered(4, 8)
    meta = store.PassageStore.open(tmp_path / store.PASSAGES_FILE)
    DenseIndex.build(db, metadata=meta, method="brute").save(tmp_path)
    index = DenseIndex.load(tmp_path)
    hits = {h.id: h for h in index.hits(*index.search(db, 4))[0]}
    assert (hits["p1"].doc_id, hits["p1"].source, hits["p1"].url) == (
        "guide/faq.html",
        "guide/faq.html",
        "https://docs.example.org/guide/faq.html",
    )
    assert (hits["p0"].doc_id, hits["p0"].source, hits["p0"].url) == (None, None, None)
    assert hits["p1"].to_json()["source"] == "guide/faq.html"


def test_scann_native_info_logs_only_at_info_level(tmp_path, capfd, caplog):
    """ScaNN's C++ writes "I0000 ... partitioner_factory_base.cc] Size of sampled dataset"
    straight to stderr; it is dropped unless logging is at INFO (`vertjax --verbose`)."""
    db = clustered(3000, 16, seed=3)
    caplog.set_level(logging.WARNING)
    DenseIndex.build(db, method="scann").save(tmp_path / "quiet")
    DenseIndex.load(tmp_path / "quiet")
    quiet = capfd.readouterr().err
    assert "I0000" not in quiet and "partitioner" not in quiet
    caplog.set_level(logging.INFO)
    DenseIndex.build(db, method="scann")
    assert "partitioner" in capfd.readouterr().err
