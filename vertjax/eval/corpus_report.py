"""Corpus report of a built data pack: documents, passages and tokens per split, passage length
statistics, and a histogram PNG of passage lengths (tokens), after checking the manifest checksums."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from vertjax import io_utils
from vertjax.data import chunking, packs


def corpus_report(
    pack_dir: str | os.PathLike, *, out_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Verifies and measures a built pack; writes `corpus_report.json` and `passage_lengths.png`.

    Args:
      pack_dir: a folder written by `vertjax.data.packs.build_pack`.
      out_dir: where the report goes (default: `pack_dir`).

    Returns:
      The report dict (also written as JSON).
    """
    pack_dir = pathlib.Path(pack_dir)
    out = pathlib.Path(out_dir) if out_dir is not None else pack_dir
    manifest = packs.verify_pack(pack_dir)
    lengths: list[int] = []
    splits: dict[str, dict[str, int]] = {}
    for split in chunking.SPLITS:
        passages = packs.load_passages(pack_dir, splits=(split,))
        split_lengths = [chunking.count_tokens(p["text"]) for p in passages]
        lengths += split_lengths
        splits[split] = {
            "documents": len({p["doc_id"] for p in passages}),
            "passages": len(passages),
            "tokens": int(sum(split_lengths)),
        }
    array = np.asarray(lengths)
    report = {
        "pack": manifest.get("pack"),
        "version": manifest.get("version"),
        "documents": sum(s["documents"] for s in splits.values()),
        # read by `data build` but left without passages (too short, or duplicates)
        "documents_without_passages": manifest.get("counts", {}).get(
            "documents_without_passages", 0
        ),
        "passages": int(array.size),
        "tokens": int(array.sum()) if array.size else 0,
        "splits": splits,
        "passage_tokens": {
            "min": int(array.min()) if array.size else 0,
            "mean": round(float(array.mean()), 1) if array.size else 0.0,
            "p50": int(np.percentile(array, 50)) if array.size else 0,
            "p95": int(np.percentile(array, 95)) if array.size else 0,
            "max": int(array.max()) if array.size else 0,
        },
        "histogram_png": "passage_lengths.png",
    }
    _plot_lengths(
        array,
        out / "passage_lengths.png",
        title=f"{manifest.get('pack')}: {array.size} passages",
        max_tokens=manifest.get("chunking", {}).get("max_tokens"),
    )
    io_utils.atomic_write_json(out / "corpus_report.json", report)
    return report


def _plot_lengths(
    lengths: np.ndarray, path: pathlib.Path, *, title: str, max_tokens: int | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    try:
        ax.hist(lengths, bins=min(50, max(1, len(set(lengths.tolist())))), color="#4477aa")
        if max_tokens:
            ax.axvline(
                max_tokens, color="#cc3311", linestyle="--", label=f"max_tokens={max_tokens}"
            )
            ax.legend()
        ax.set_xlabel("passage length (approx. tokens)")
        ax.set_ylabel("passages")
        ax.set_title(title)
        fig.tight_layout()
        with io_utils.atomic_file(path, "wb") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)


def format_report(report: dict[str, Any]) -> str:
    """A short human-readable summary of `corpus_report`'s result."""
    lines = [
        f"pack {report['pack']} (version {report['version']}): {report['documents']} documents, "
        f"{report['passages']} passages, {report['tokens']} approx. tokens"
    ]
    if report.get("documents_without_passages"):
        lines.append(
            f"  ({report['documents_without_passages']} more documents were read but left no "
            "passage: too short, or near duplicates)"
        )
    for split, counts in report["splits"].items():
        lines.append(
            f"  {split:<10} {counts['documents']:>7} documents {counts['passages']:>8} "
            f"passages {counts['tokens']:>10} tokens"
        )
    t = report["passage_tokens"]
    lines.append(
        f"  passage tokens: min {t['min']}, mean {t['mean']}, median {t['p50']}, "
        f"p95 {t['p95']}, max {t['max']}"
    )
    return "\n".join(lines)
