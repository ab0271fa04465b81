"""`vertjax demo --llm`'s keyword stage: lay questions searched as asked, with lexical keywords and
with the local LLM's (a tiny index; the stage against the real server in one test, marker llm)."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_corpus_records, write_tiny_pack

from vertjax import errors, io_utils
from vertjax.demo import llm_keywords, report, state
from vertjax.retrieval import dense, metrics
from vertjax.system import build


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm_keywords")
    return build.build_bm25_index(write_tiny_pack(root / "pack"), root / "index")


def _questions(tmp_path) -> str:
    """Two questions sharing no word with their answering passage (as lay questions do)."""
    rows = [
        {
            "id": f"q{i}",
            "question": "Tell me about that thing?",
            "answers": [r["text"].split(". ")[0]],
        }
        for i, r in enumerate(tiny_corpus_records()[12:14])
    ]
    path = tmp_path / "lay.jsonl"
    io_utils.write_jsonl(path, rows)
    return str(path)


def test_keywords_that_name_the_passage_raise_recall_and_junk_does_not(index_dir, tmp_path):
    records = tiny_corpus_records()[12:14]
    questions = metrics.load_questions(_questions(tmp_path))
    result = llm_keywords.compare(
        retriever=dense.open_retriever(index_dir, "bm25"),
        extractors={
            "oracle": lambda texts: [r["text"].split() for r in records],
            "junk": lambda texts: [["zebra"] for _ in texts],
        },
        questions=questions,
    )
    m = result["metrics"]
    assert m["as asked"]["recall@5"] == 0.0 and m["+ junk keywords"]["recall@5"] == 0.0
    assert m["+ oracle keywords"]["recall@5"] == 1.0
    section = llm_keywords.markdown(result, model="m")
    assert "| + oracle keywords | 1.000 | 1.000 |" in section and "  - junk: zebra" in section


def test_stage_needs_the_answering_stage(tmp_path):
    demo_state = state.DemoState(config=state.DemoConfig(out=tmp_path, llm=True), results={})
    with pytest.raises(errors.ConfigError, match="run the demo first"):
        llm_keywords.stage_llm_keywords(demo_state)


@pytest.mark.llm
def test_stage_asks_the_real_llm_and_reports_every_system(index_dir, tmp_path):
    config = state.DemoConfig(out=tmp_path, llm=True)
    answered = {"index_dir": str(index_dir), "markdown": "## Answering system"}
    demo_state = state.DemoState(config=config, results={"answer": answered})
    llm_keywords.stage_llm_keywords(demo_state, questions=_questions(tmp_path))
    saved = demo_state.results["llm_keywords"]
    assert set(saved["metrics"]) == {"as asked", "+ lexical keywords", "+ LLM keywords"}
    recorded = json.loads((tmp_path / "llm_keywords" / "results.json").read_text())
    assert len(recorded["keywords"]["LLM"]) == 2
    section = report.write_report(demo_state).read_text()
    assert "## Keywords by the local LLM" in section and "| + LLM keywords |" in section
    llm_keywords.stage_llm_keywords(demo_state)  # a rerun resumes: nothing is asked again
    assert demo_state.results["llm_keywords"] is saved
