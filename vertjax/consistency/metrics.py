"""Factual-consistency evaluation: ROC AUC (TRUE's metric), accuracy, calibration, and the
lexical-overlap baseline every NLI score is compared against.

ROC AUC is the Mann-Whitney statistic (the probability that a random consistent pair scores above
a random inconsistent one, ties counting half), computed from average ranks: no sklearn needed.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.consistency import nli_data


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` for the binary truth `positives`."""
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        raise errors.DataError(
            f"ROC AUC needs both consistent and inconsistent pairs (got {n_pos} and {n_neg})"
        )
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = ranks[positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_bins(
    scores: Sequence[float], positives: Sequence[bool], *, num_bins: int = 10
) -> list[dict[str, float]]:
    """Equal-width probability bins: count, mean predicted P and observed positive rate."""
    scores = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    positives = np.asarray(positives, np.float64)
    index = np.minimum((scores * num_bins).astype(int), num_bins - 1)
    bins = []
    for b in range(num_bins):
        mask = index == b
        count = int(mask.sum())
        bins.append(
            {
                "low": b / num_bins,
                "high": (b + 1) / num_bins,
                "count": count,
                "mean_predicted": float(scores[mask].mean()) if count else float("nan"),
                "fraction_positive": float(positives[mask].mean()) if count else float("nan"),
            }
        )
    return bins


def expected_calibration_error(bins: Sequence[Mapping[str, float]]) -> float:
    """Count-weighted mean |observed rate - mean predicted P| over non-empty bins."""
    total = sum(b["count"] for b in bins)
    return float(
        sum(
            b["count"] * abs(b["fraction_positive"] - b["mean_predicted"])
            for b in bins
            if b["count"]
        )
        / max(total, 1)
    )


def lexical_overlap(premise: str, hypothesis: str) -> float:
    """Share of the hypothesis's word types found in the premise (the trivial baseline)."""
    hyp = set(nli_data.words(hypothesis))
    if not hyp:
        return 0.0
    return len(hyp & set(nli_data.words(premise))) / len(hyp)


def binary_metrics(
    scores: Sequence[float], positives: Sequence[bool], *, threshold: float = 0.5
) -> dict[str, Any]:
    """ROC AUC, accuracy at `threshold`, ECE and the calibration bins of one scorer."""
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, bool)
    bins = calibration_bins(scores, positives)
    return {
        "roc_auc": roc_auc(scores, positives),
        "accuracy": float(np.mean((scores >= threshold) == positives)),
        "threshold": threshold,
        "ece": expected_calibration_error(bins),
        "calibration": bins,
    }


def evaluate(
    records: Sequence[Mapping[str, Any]], predictions: Sequence[Any], *, threshold: float = 0.5
) -> dict[str, Any]:
    """Metrics of NLI predictions (`nli.Prediction`s) against labelled records, plus the baseline.

    Records need `premise`, `hypothesis` and `label` (3-way or binary). 3-way accuracy is reported
    when both the gold labels and the model's labels are 3-way.
    """
    positives = [nli_data.is_positive(r["label"]) for r in records]
    model = binary_metrics([p.p_entailment for p in predictions], positives, threshold=threshold)
    gold = [nli_data.normalize_label(r["label"]) for r in records]
    if all(g in nli_data.NLI_LABELS for g in gold) and all(
        p.label in nli_data.NLI_LABELS for p in predictions
    ):
        model["accuracy_3way"] = float(
            np.mean([p.label == g for p, g in zip(predictions, gold, strict=True)])
        )
    overlap = [lexical_overlap(r["premise"], r["hypothesis"]) for r in records]
    return {
        "pairs": len(records),
        "positives": int(sum(positives)),
        "model": model,
        "lexical_overlap": {"roc_auc": roc_auc(overlap, positives)},
    }


def plot_calibration(
    systems: Mapping[str, Sequence[Mapping[str, float]]], path: str | os.PathLike, *, title: str
) -> pathlib.Path:
    """Reliability diagram (observed positive rate vs mean predicted P per bin) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, bins in systems.items():
        filled = [b for b in bins if b["count"]]
        ax.plot(
            [b["mean_predicted"] for b in filled],
            [b["fraction_positive"] for b in filled],
            marker="o",
            label=name,
        )
    ax.set_xlabel("mean predicted P(entailment)")
    ax.set_ylabel("fraction of consistent pairs")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with io_utils.atomic_file(path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return path
