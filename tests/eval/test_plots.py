"""Precision/recall-vs-k PNGs (several systems on one figure) and the markdown table helper."""

from __future__ import annotations

import pytest
from matplotlib import image

from vertjax.eval.plots import markdown_table, plot_vs_k

CURVES = {
    "bm25": {"precision": [0.5, 0.4, 0.3], "recall": [0.3, 0.5, 0.6]},
    "dense": {"precision": [0.7, 0.5, 0.4], "recall": [0.4, 0.6, 0.8]},
}


def test_plot_writes_a_png_with_one_panel_per_metric(tmp_path):
    out = plot_vs_k(CURVES, path=tmp_path / "plots" / "pr_vs_k.png", title="demo")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(out)
    assert pixels.shape[:2] == (400, 1000)  # 2 panels x 5 in x 100 dpi, 4 in high
    single = plot_vs_k(CURVES, path=tmp_path / "recall.png", metrics=["recall"])
    assert image.imread(single).shape[:2] == (400, 500)
    assert not list(tmp_path.glob("**/.*.tmp"))


def test_plot_rejects_missing_values(tmp_path):
    with pytest.raises(ValueError, match="'bm25'"):
        plot_vs_k({"bm25": {"precision": [0.5]}}, path=tmp_path / "x.png")
    with pytest.raises(ValueError):
        plot_vs_k({}, path=tmp_path / "x.png")


def test_markdown_table():
    table = markdown_table(
        {"bm25": {"recall@1": 0.25, "mrr@10": 0.5}, "hybrid": {"recall@1": 1 / 3}}
    )
    assert table == (
        "| system | recall@1 | mrr@10 |\n"
        "|---|---:|---:|\n"
        "| bm25 | 0.250 | 0.500 |\n"
        "| hybrid | 0.333 |  |\n"
    )
    assert markdown_table({"a": {"x": 1.0}}, columns=["x"], digits=1, row_header="k") == (
        "| k | x |\n|---|---:|\n| a | 1.0 |\n"
    )
