"""The LLM-vs-template Self-QA experiment's helpers: which passages it compares on, its table."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

from vertjax import io_utils

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "llm_synthesis"
_spec = importlib.util.spec_from_file_location("llm_synthesis_run", EXPERIMENT / "run.py")
run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = run
_spec.loader.exec_module(run)


def test_picks_the_first_passages_the_template_can_ask_about(tmp_path):
    passages = [
        {"id": "a", "title": "Notes", "text": "nothing to ask here, only lowercase prose"},
        {"id": "b", "title": "json > json.dumps(obj)", "text": "Serialize obj to a JSON str."},
        {"id": "c", "title": "Glossary", "text": "A suite is a group of statements."},
        {"id": "d", "title": "Glossary", "text": "A module is a unit of code organization."},
    ]
    io_utils.write_jsonl(tmp_path / "all.jsonl", passages)
    out = run._pick_passages(tmp_path / "all.jsonl", tmp_path / "picked.jsonl", 2)
    assert [p["id"] for p in io_utils.read_jsonl(out)] == ["b", "c"]


def test_table_puts_every_rejection_reason_of_either_backend_side_by_side():
    row = dict.fromkeys(run.FIELDS, 1) | {"rouge_nn_mean": 0.5, "seconds": 2.0}
    rows = {
        "template": row | {"rejected_by_reason": {"question_duplicate": 3}},
        "llm": row | {"rejected_by_reason": {"answer_truncated": 2}},
    }
    table = run._markdown(rows)
    assert "| rejected: answer_truncated | 0 | 2 |" in table
    assert "| rejected: question_duplicate | 3 | 0 |" in table
    assert "| rouge_nn_mean | 0.500 | 0.500 |" in table
