"""The benchmark scripts still run end to end (tiny sizes; their figures are not checked here)."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from vertjax.retrieval import store

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_ann_on_clustered_and_on_real_vectors(tmp_path):
    pytest.importorskip("faiss")
    ann = _load("ann")
    args = ["--queries", "50", "--repeats", "1", "--clusters", "20", "--workdir", str(tmp_path)]
    assert ann.main(["--n", "3000", "--d", "16", *args, "--json", str(tmp_path / "a.json")]) == 0
    results = {r["method"]: r for r in json.loads((tmp_path / "a.json").read_text())["results"]}
    assert set(results) == {"brute", "scann", "hnsw", "ivfpq"}
    assert results["brute"]["recall"] == 1.0 and all(r["qps"] > 0 for r in results.values())

    vectors = np.random.default_rng(0).standard_normal((1200, 8)).astype(np.float32)
    with store.EmbeddingWriter(tmp_path / "index", dim=8, count=len(vectors)) as writer:
        writer.write(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    real = ["--embeddings", str(tmp_path / "index"), "--methods", "scann,brute"]
    assert ann.main([*real, *args, "--json", str(tmp_path / "b.json")]) == 0
    saved = json.loads((tmp_path / "b.json").read_text())
    assert (saved["args"]["n"], saved["args"]["d"]) == (1150, 8)  # 50 rows held out as queries
    assert {r["method"] for r in saved["results"]} == {"brute", "scann"}


def test_encode_throughput_checks_the_two_encoders_agree(tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    bench = _load("encode_throughput")
    argv = ["--size", "tiny", "--passages", "12", "--length", "48", "--batch_size", "4"]
    argv += ["--vocab_size", "800", "--repeats", "1", "--workdir", str(tmp_path)]
    assert bench.main([*argv, "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["passages"] == 12 and result["min_cosine"] > 0.9999
    assert "vertjax / sentence-transformers" in capsys.readouterr().out


def test_memory_table_compiles_the_train_step_and_remat_shrinks_saved_activations(tmp_path):
    # A subprocess: the script sets XLA_FLAGS (fake devices) before jax starts.
    out = tmp_path / "m.json"
    argv = ["--sizes", "tiny", "--meshes", "2,1", "--remat", "none", "full"]
    argv += ["--scan_layers", "off", "on"]
    argv += ["--per_replica_batch", "2", "--inputs_length", "32", "--targets_length", "8"]
    argv += ["--vocab_size", "256", "--dtype", "float32", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "memory_table.py"), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    all_rows = json.loads(out.read_text())
    rows = {r["remat"]: r for r in all_rows if not r["scan_layers"]}
    assert rows["none"]["mesh"] == "2x1" and rows["none"]["global_batch"] == 4
    assert 0 < rows["full"]["saved_bytes"] < rows["none"]["saved_bytes"]
    assert rows["none"]["peak_gib"] >= rows["none"]["state_gib"] > 0
    # the scanned model holds the same state, and remat inside the scan body still saves less
    scanned = {r["remat"]: r for r in all_rows if r["scan_layers"]}
    assert scanned["none"]["state_gib"] == rows["none"]["state_gib"]
    assert 0 < scanned["full"]["saved_bytes"] < scanned["none"]["saved_bytes"]
