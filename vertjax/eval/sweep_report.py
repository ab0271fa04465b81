"""Mixture-sweep report: domain/general validation PPL per domain rate, as a table and a PNG.

Reads the `results.json` that `experiments/mixture_sweep/run.py` writes: `points`, each with a
`name`, `kind` ('general', 'continued', 'scratch', 'staged'), `domain_rate`, `steps`, and
`ppl_before` / `ppl_after` = {'domain': {'ppl': ...}, 'general': {'ppl': ...}}. Writes
`sweep_table.md` and `sweep_ppl.png` (matplotlib, Agg backend).

    python -m vertjax.eval.sweep_report runs/mixture_sweep/tiny/results.json [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils

ROLES = ("domain", "general")
KINDS = ("general", "continued", "scratch", "staged")
_LABELS = {
    "general": "general model (from scratch, general only)",
    "continued": "general model, then continued at rate {rate:.2f}",
    "scratch": "from scratch, domain only",
    "staged": "from scratch, staged: general then rate {rate:.2f}",
}


def _ppl(point: Mapping[str, Any], when: str, role: str) -> float:
    return float(point[when][role]["ppl"])


def validate_points(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Checks every point's fields; `DataError` naming the point and the missing/bad field."""
    if not points:
        raise errors.DataError("the sweep results hold no points")
    for i, point in enumerate(points):
        name = point.get("name", f"#{i}") if isinstance(point, Mapping) else f"#{i}"
        if not isinstance(point, Mapping):
            raise errors.DataError(f"sweep point {name}: not an object")
        if point.get("kind") not in KINDS:
            raise errors.DataError(f"sweep point {name}: kind must be one of {KINDS}")
        rate = point.get("domain_rate")
        if not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise errors.DataError(f"sweep point {name}: domain_rate must be in [0, 1]")
        for when in ("ppl_before", "ppl_after"):
            for role in ROLES:
                try:
                    value = _ppl(point, when, role)
                except (KeyError, TypeError, ValueError):
                    raise errors.DataError(
                        f"sweep point {name}: missing {when}.{role}.ppl"
                    ) from None
                if not math.isfinite(value) or value <= 0:
                    raise errors.DataError(f"sweep point {name}: {when}.{role}.ppl is {value}")
    return list(points)


def format_ppl(point: Mapping[str, Any]) -> str:
    """One line: 'domain 12.3 -> 4.5, general 6.7 -> 8.9'."""
    return ", ".join(
        f"{role} {_ppl(point, 'ppl_before', role):.2f} -> {_ppl(point, 'ppl_after', role):.2f}"
        for role in ROLES
    )


def sweep_table(points: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: one row per point, PPL before/after and the change, per validation set."""
    points = validate_points(points)
    lines = [
        "| point | what | domain rate | steps | domain PPL before | domain PPL after "
        "| general PPL before | general PPL after | general PPL change |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        rate = float(p["domain_rate"])
        change = _ppl(p, "ppl_after", "general") / _ppl(p, "ppl_before", "general") - 1.0
        lines.append(
            f"| {p['name']} | {_LABELS[p['kind']].format(rate=rate)} | {rate:.2f} | "
            f"{p.get('steps', '')} | {_ppl(p, 'ppl_before', 'domain'):.2f} | "
            f"{_ppl(p, 'ppl_after', 'domain'):.2f} | {_ppl(p, 'ppl_before', 'general'):.2f} | "
            f"{_ppl(p, 'ppl_after', 'general'):.2f} | {change:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def plot_sweep(points: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> pathlib.Path:
    """Two panels (domain / general validation PPL) against the domain rate of continued points.

    The general model's PPL (= before continuing) is a dashed line; from-scratch and staged points
    are single markers at their rate.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = validate_points(points)
    continued = sorted(
        (p for p in points if p["kind"] == "continued"), key=lambda p: p["domain_rate"]
    )
    general = next((p for p in points if p["kind"] == "general"), None)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, role in zip(axes, ROLES, strict=True):
        if continued:
            ax.plot(
                [p["domain_rate"] for p in continued],
                [_ppl(p, "ppl_after", role) for p in continued],
                "o-",
                label="general model, continued at rate",
            )
        if general is not None:
            ax.axhline(
                _ppl(general, "ppl_after", role), ls="--", c="gray", label="general model (before)"
            )
        for kind, marker in (("scratch", "s"), ("staged", "^")):
            for p in (p for p in points if p["kind"] == kind):
                ax.plot(
                    p["domain_rate"],
                    _ppl(p, "ppl_after", role),
                    marker,
                    ms=9,
                    label=_LABELS[kind].format(rate=p["domain_rate"]),
                )
        ax.set_xlabel("domain rate of the continued-pretraining mixture")
        ax.set_ylabel("validation PPL")
        ax.set_yscale("log")
        ax.set_title(f"{role} validation PPL")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with io_utils.atomic_file(out, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return out


def write_report(
    results: Mapping[str, Any], *, out_dir: str | os.PathLike
) -> dict[str, pathlib.Path]:
    """Writes `sweep_table.md` and `sweep_ppl.png` into `out_dir`; returns their paths."""
    points = results.get("points") if isinstance(results, Mapping) else None
    if not isinstance(points, list):
        raise errors.DataError("sweep results must be an object with a 'points' list")
    out = pathlib.Path(out_dir)
    table = out / "sweep_table.md"
    io_utils.atomic_write_text(table, sweep_table(points))
    return {"table": table, "plot": plot_sweep(points, out / "sweep_ppl.png")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.json of a mixture sweep")
    parser.add_argument("--out", default=None, help="output folder (default: next to results)")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.results)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"error: {path}: not found", file=sys.stderr)
        return 2
    except json.JSONDecodeError as e:
        print(f"error: {path}:{e.lineno}: invalid JSON ({e.msg})", file=sys.stderr)
        return 2
    try:
        paths = write_report(results, out_dir=args.out or path.parent)
    except errors.VertjaxError as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 2
    print(f"{paths['table']}\n{paths['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
