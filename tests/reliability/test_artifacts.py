"""Issue 15 finding 10 and deliverables 2/7: shared artifacts get ordinary modes (0644 files,
0755 folders under umask 022; private under umask 077), a killed build's temporaries are
removed by the next run, and a pack's manifest carries no absolute path."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from vertjax import cli
from vertjax.data import packs
from vertjax.retrieval.index import DenseIndex


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _modes(root):
    """{relative path: permission bits} of everything under root, root included."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[path.relative_to(root).as_posix()] = stat.S_IMODE(path.stat().st_mode)
    return out


def _expected(root, umask):
    return {name: (0o777 if (root / name).is_dir() else 0o666) & ~umask for name in _modes(root)}


def test_index_files_and_folders_get_ordinary_modes(tmp_path, tiny_corpus_jsonl, umask, capsys):
    out = tmp_path / "index"
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", str(out), "--bm25"]
    assert cli.main(argv) == 0
    vectors = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    DenseIndex.build(vectors, method="scann").save(tmp_path / "dense")
    for root in (out, tmp_path / "dense"):
        modes = _modes(root)
        assert {"bm25", "scann"} & set(modes)
        assert modes == _expected(root, umask), root


def test_a_killed_index_builds_temporaries_are_removed_by_the_next_run(
    tmp_path, tiny_corpus_jsonl, capsys
):
    out = tmp_path / "index"
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", str(out), "--bm25"]
    assert cli.main(argv) == 0
    left = [out / ".bm25.k1ll3d", out / ".scann.k1ll3d", out / ".passages.jsonl.x1.tmp"]
    for path in left[:2]:
        path.mkdir()
        (path / "part").write_bytes(b"x" * 100)
    left[2].write_bytes(b"half")
    assert cli.main(argv) == 0
    assert not any(path.exists() for path in left)


def test_pack_has_ordinary_modes_no_absolute_source_and_cleans_a_killed_build(tmp_path, umask):
    source = tmp_path / "my_docs"
    source.mkdir()
    (source / "a.md").write_text("# A\n\n" + " ".join(f"w{i}" for i in range(80)), "utf-8")
    killed = tmp_path / ".pack.k1ll3d.tmp"
    killed.mkdir()
    (killed / "train.jsonl").write_text("{}\n")
    out = tmp_path / "pack"
    manifest = packs.build_pack("folder", out, source=source, cache=tmp_path / "cache")
    assert manifest["source"] == "my_docs" and str(tmp_path) not in json.dumps(manifest)
    assert not killed.exists()
    assert _modes(out) == _expected(out, umask)


def test_data_build_refuses_an_out_that_is_an_index(tmp_path, capsys):
    """A dense index has a manifest.json too: `data build --out INDEX` replaced the index."""
    index = tmp_path / "index"
    DenseIndex.build(np.eye(3, dtype=np.float32), method="brute").save(index)
    before = {p.name: p.read_bytes() for p in index.iterdir()}
    source = tmp_path / "docs"
    source.mkdir()
    (source / "a.md").write_text("# A\n\n" + " ".join(f"w{i}" for i in range(80)), "utf-8")
    argv = ["data", "build", "folder", "--source", str(source), "--out", str(index)]
    assert cli.main(argv) == 2
    assert "holds no data pack" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in index.iterdir()} == before
