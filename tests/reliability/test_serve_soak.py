"""benchmarks/serve_soak.py still runs end to end: a real `vertjax serve` process on 127.0.0.1,
2 clients for 2 s, every request answered (its figures are recorded in benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "serve_soak.py"


def test_soak_runs_without_errors(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmark_serve_soak", SCRIPT)
    soak = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = soak
    spec.loader.exec_module(soak)
    out = tmp_path / "soak.json"
    argv = ["--clients", "2", "--seconds", "2", "--hostile", "0", "--json", str(out)]
    assert soak.main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["requests"] > 10 and figures["errors"] == 0 and figures["server_alive"]
