"""ROC AUC, calibration and the lexical baseline against hand-computed values."""

from __future__ import annotations

import itertools
import random

import pytest

from vertjax import errors
from vertjax.consistency import metrics


def pairwise_auc(scores, positives):
    """The definition: P(score of a positive > score of a negative), ties counting half."""
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_hand_cases():
    assert metrics.roc_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert metrics.roc_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert metrics.roc_auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    # positives 0.35, 0.8, 0.4 vs negatives 0.1, 0.4: 0.35 beats one (1), 0.8 both (2), 0.4 beats
    # 0.1 and ties 0.4 (1.5): 4.5 of 6 pairs
    scores, truth = [0.35, 0.8, 0.4, 0.1, 0.4], [True, True, True, False, False]
    assert metrics.roc_auc(scores, truth) == pytest.approx(4.5 / 6)


def test_roc_auc_matches_the_pairwise_definition_with_ties():
    rng = random.Random(0)
    scores = [rng.choice([0.0, 0.1, 0.2, 0.5, 0.7, 1.0]) for _ in range(60)]
    truth = [rng.random() < 0.4 for _ in range(60)]
    assert metrics.roc_auc(scores, truth) == pytest.approx(pairwise_auc(scores, truth))


def test_roc_auc_needs_both_classes():
    with pytest.raises(errors.DataError, match="both"):
        metrics.roc_auc([0.1, 0.2], [True, True])


def test_calibration_bins_and_ece():
    bins = metrics.calibration_bins([0.05, 0.15, 0.95, 1.0], [False, True, True, True], num_bins=2)
    assert [b["count"] for b in bins] == [2, 2]
    assert bins[0]["mean_predicted"] == pytest.approx(0.1)
    assert bins[0]["fraction_positive"] == 0.5
    assert bins[1]["mean_predicted"] == pytest.approx(0.975)
    assert metrics.expected_calibration_error(bins) == pytest.approx((2 * 0.4 + 2 * 0.025) / 4)


def test_binary_metrics_accuracy_uses_the_threshold():
    result = metrics.binary_metrics([0.9, 0.6, 0.4, 0.1], [True, False, True, False], threshold=0.5)
    assert result["accuracy"] == 0.5
    assert result["roc_auc"] == 0.75


def test_lexical_overlap():
    assert metrics.lexical_overlap("The list is sorted in place.", "The list is sorted.") == 1.0
    assert metrics.lexical_overlap("alpha beta", "alpha gamma") == 0.5
    assert metrics.lexical_overlap("alpha", "123") == 0.0


def test_plot_calibration_writes_a_png(tmp_path):
    bins = metrics.calibration_bins([0.1, 0.9, 0.6], [False, True, True])
    path = metrics.plot_calibration({"model": bins}, tmp_path / "plots" / "cal.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
