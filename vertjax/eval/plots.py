"""Evaluation figures and tables: metric-vs-k curves for several systems, markdown tables.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend state), so
they render on headless machines and inside tests.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vertjax import io_utils


def plot_vs_k(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    path: str | os.PathLike,
    metrics: Sequence[str] = ("precision", "recall"),
    title: str | None = None,
) -> pathlib.Path:
    """Writes a PNG with one panel per metric and one line per system.

    Args:
      curves: system name -> metric name -> values at k = 1, 2, ... (as from
        `retrieval.metrics.curves`).
      path: output PNG (parent folders are created).
      metrics: which metrics to draw, one panel each.
    """
    if not curves:
        raise ValueError("no systems to plot")
    for system, by_metric in curves.items():
        missing = [m for m in metrics if not by_metric.get(m)]
        if missing:
            raise ValueError(f"system {system!r} has no values for {missing}")
    figure = Figure(figsize=(5 * len(metrics), 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for system, by_metric in curves.items():
            values = list(by_metric[metric])
            ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=system)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("k (passages retrieved)")
        ax.set_ylabel(f"{metric}@k")
        ax.set_title(f"{metric} vs k")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = pathlib.Path(path)
    with io_utils.atomic_file(path, "wb") as f:
        figure.savefig(f, format="png")
    return path


def markdown_table(
    rows: Mapping[str, Mapping[str, float]],
    *,
    columns: Sequence[str] | None = None,
    digits: int = 3,
    row_header: str = "system",
) -> str:
    """A markdown table: one row per system, one column per metric (missing cells are blank).

    `columns` defaults to the metrics in the order they first appear.
    """
    if columns is None:
        columns = list(dict.fromkeys(name for metrics in rows.values() for name in metrics))
    lines = [
        "| " + " | ".join([row_header, *columns]) + " |",
        "|" + "---|" + "---:|" * len(columns),
    ]
    for name, metrics in rows.items():
        cells = [f"{metrics[c]:.{digits}f}" if c in metrics else "" for c in columns]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"
