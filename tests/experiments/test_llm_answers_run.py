"""The LLM-vs-extractive cited-answers experiment's helper: counting citation markers in raw
LLM replies (those that name no passage are counted apart)."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "llm_answers"
_spec = importlib.util.spec_from_file_location("llm_answers_run", EXPERIMENT / "run.py")
run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = run
_spec.loader.exec_module(run)


def test_marker_counts_separate_markers_that_name_no_passage():
    answers = [
        {"llm": {"raw": "Use open() [1][5]. Loop [2]."}},
        {"llm": {"raw": "No citation here."}},
        {"llm": {"raw": None}},
    ]
    assert run.marker_counts(answers, k=4) == {
        "replies": 3,
        "replies_with_marker": 1,
        "markers": 3,
        "markers_out_of_range": 1,
    }
