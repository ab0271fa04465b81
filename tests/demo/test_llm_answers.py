"""`vertjax demo --llm`: the flag's wiring, and the stage comparing the local LLM's cited answers
with the extractive generator's over the same passages (a tiny index; the whole stage with the
real server in one test, marker llm)."""

from __future__ import annotations

import argparse
import json

import pytest
from conftest import tiny_corpus_records, write_tiny_pack

from vertjax import errors
from vertjax.commands import demo as demo_command
from vertjax.demo import llm_answers, pipeline, report, state
from vertjax.system import build


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    demo_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def _run_config(monkeypatch, *argv: str) -> state.DemoConfig:
    seen = []
    monkeypatch.setattr(pipeline, "run_demo", seen.append)
    assert demo_command.run(_args(*argv)) == 0
    return seen[0]


def test_llm_flag_adds_the_llm_stage_after_the_default_ones(monkeypatch, tmp_path):
    default = _run_config(monkeypatch, "--out", str(tmp_path))
    with_llm = _run_config(monkeypatch, "--out", str(tmp_path), "--llm", "--llm_max_tokens", "32")
    assert not default.llm and with_llm.llm and with_llm.llm_max_tokens == 32
    assert pipeline.stages(default) == pipeline.STAGES  # the default demo is unchanged
    names = [name for name, _ in pipeline.stages(with_llm)]
    assert names == [name for name, _ in pipeline.STAGES] + [
        "llm_answers",
        "llm_keywords",
        "llm_synthesis",
    ]


def test_llm_max_tokens_below_one_is_a_config_error(monkeypatch, tmp_path):
    with pytest.raises(errors.ConfigError, match="--llm_max_tokens"):
        _run_config(monkeypatch, "--out", str(tmp_path), "--llm", "--llm_max_tokens", "0")


def test_llm_stage_needs_the_answering_stage(tmp_path):
    demo_state = state.DemoState(config=state.DemoConfig(out=tmp_path, llm=True), results={})
    with pytest.raises(errors.ConfigError, match="run the demo first"):
        llm_answers.stage_llm_answers(demo_state)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm_answers")
    return build.build_bm25_index(write_tiny_pack(root / "pack"), root / "index")


def _questions() -> list[str]:
    """Questions made of the words of two passages' first sentences (BM25 finds them)."""
    records = tiny_corpus_records()
    return [f"Which part {records[i]['text'].split('. ')[0].lower()}?" for i in (12, 30)]


class _Scripted:
    """A generator that records the passages it is given and writes one scripted sentence:
    the most relevant (last) passage's first sentence, or an unrelated one, citing [k]."""

    def __init__(self, name: str, *, grounded: bool):
        self.name, self.grounded, self.seen = name, grounded, []

    def generate(self, question, passages):
        self.seen.append([p.id for p in passages])
        text = passages[-1].text.split(". ")[0] + "." if self.grounded else "Penguins sing opera."
        return [{"text": text, "citations": [len(passages)]}]


def test_compare_judges_generators_over_the_same_passages(index_dir):
    grounded, unrelated = _Scripted("a", grounded=True), _Scripted("b", grounded=False)
    result = llm_answers.compare(
        index_dir=index_dir,
        generators={"a": grounded, "b": unrelated},
        predict=build.LexicalScorer().predict,
        questions=_questions(),
    )
    assert grounded.seen == unrelated.seen and all(len(ids) == 4 for ids in grounded.seen)
    a, b = result["metrics"]["a"], result["metrics"]["b"]
    assert (a["citation_recall"], a["citation_precision"], a["support_rate"]) == (1.0, 1.0, 1.0)
    assert (b["citation_recall"], b["citation_precision"], b["support_rate"]) == (0.0, 0.0, 0.0)
    assert a["cited_share"] == 1.0 and a["empty_answers"] == 0
    section = llm_answers.markdown(result, judge="lexical", model="m")
    assert "| a | 1.000 | 1.000 | 1.000 |" in section
    assert "unsupported, P(entailment)" in section and "Penguins sing opera [4]." in section


@pytest.mark.llm
def test_stage_answers_with_the_real_llm_and_reports_the_lexical_fallback(
    index_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(llm_answers, "QUESTIONS", _questions()[:1])
    config = state.DemoConfig(out=tmp_path, llm=True, llm_max_tokens=32)
    answered = {"index_dir": str(index_dir), "markdown": "## Answering system"}
    demo_state = state.DemoState(config=config, results={"answer": answered})
    llm_answers.stage_llm_answers(demo_state)
    saved = demo_state.results["llm_answers"]
    assert "lexical fallback, not an NLI model" in saved["judge"]
    assert set(saved["metrics"]) == {"extractive", "llm"} and saved["max_tokens"] == 32
    [row] = json.loads((tmp_path / "llm_answers" / "results.json").read_text())["answers"]
    assert row["llm"]["raw"].strip()  # the server answered, over the extractive's passages
    assert len(row["llm"]["verdicts"]) == len(row["llm"]["sentences"])
    section = report.write_report(demo_state).read_text()
    assert "## Cited answers: local LLM vs extractive" in section and "| llm |" in section
    llm_answers.stage_llm_answers(demo_state)  # a rerun resumes: nothing is asked again
    assert demo_state.results["llm_answers"] is saved
