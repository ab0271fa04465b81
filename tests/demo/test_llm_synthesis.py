"""`vertjax demo --llm`'s synthesis stage: the synth jobs with the local LLM beside the template
backend (the template stands in for the table, resume and passage choice; the stage against the
real server in one test, marker llm)."""

from __future__ import annotations

import json

import pytest
from conftest import write_tiny_pack

from vertjax import errors, io_utils
from vertjax.demo import llm_synthesis, report, state
from vertjax.synth import kg, self_instruct, template_backend

TINY = llm_synthesis.Sizes(
    instruct_rounds=1,
    passages=1,
    questions_per_passage=1,
    entities=1,
    examples_per_entity=1,
    refusal_rounds=1,
    max_tokens=16,
)
ASKABLE = {
    "id": "json.dumps",
    "title": "json > json.dumps(obj)",
    "text": "Serialize obj to a JSON formatted str.",
}
PLAIN = {"id": "notes", "title": "Notes", "text": "nothing to ask here, only lowercase prose"}


@pytest.fixture(scope="module")
def triples():
    return kg.extract_triples(["json"])


class _Refuses:
    """A generator that must not be asked anything (a resumed job)."""

    name, model = "template", "none"

    def generate(self, prompts, **kwargs):
        raise AssertionError("a finished job asked its generator again")


def test_passages_the_template_can_ask_about_come_first():
    assert llm_synthesis.pick_passages([PLAIN, ASKABLE], 1) == [ASKABLE]
    assert llm_synthesis.pick_passages([PLAIN, ASKABLE], 2) == [ASKABLE, PLAIN]


def test_every_job_reports_its_counts_and_resumes_without_asking_again(tmp_path, triples):
    inputs = llm_synthesis.Inputs(
        seeds=self_instruct.load_seed_tasks()[:6], passages=[ASKABLE], triples=triples
    )
    out = tmp_path / "template"
    template = template_backend.TemplateGenerator(triples)
    rows = llm_synthesis.run_backend(template, out, inputs=inputs, sizes=TINY)
    assert list(rows) == list(llm_synthesis.JOBS)
    for job, row in rows.items():
        written = json.loads((out / job / "report.json").read_text())
        assert (row["generated"], row["kept"], row["rejected"]) == (
            written["generated"],
            written["kept"],
            written["rejected"],
        )
        assert row["generated"] == row["kept"] + row["rejected"] > 0
        assert row["seconds"] >= 0 and (row["example"] is None) == (row["kept"] == 0)
    assert rows["self_qa"]["example"]["instruction"] == "What does `json.dumps` do?"
    again = llm_synthesis.run_backend(_Refuses(), out, inputs=inputs, sizes=TINY)
    assert again == rows
    section = llm_synthesis.markdown({"template": rows, "llm": rows}, model="m")
    refusals = rows["refusals"]
    assert f"| refusals | llm | {refusals['generated']} | {refusals['kept']} |" in section
    assert sum(line.startswith("| self_kg |") for line in section.splitlines()) == 2


def test_stage_needs_the_data_and_synthesis_stages(tmp_path):
    demo_state = state.DemoState(config=state.DemoConfig(out=tmp_path, llm=True), results={})
    with pytest.raises(errors.ConfigError, match="run the demo first"):
        llm_synthesis.stage_llm_synthesis(demo_state, sizes=TINY)


def test_sizes_below_one_are_a_config_error():
    with pytest.raises(errors.ConfigError, match="sizes must all be >= 1"):
        llm_synthesis.Sizes(passages=0)


@pytest.mark.llm
def test_stage_runs_every_job_with_the_real_llm_and_reports_it(tmp_path, triples):
    pack = write_tiny_pack(tmp_path / "pack")
    io_utils.write_jsonl(tmp_path / "synth" / "kg.jsonl", triples)
    results = {
        "data": {"domain": {"pack": "tiny", "dir": str(pack), "counts": {}}},
        "synth": {"dir": str(tmp_path / "synth"), "reports": {}},
    }
    demo_state = state.DemoState(config=state.DemoConfig(out=tmp_path, llm=True), results=results)
    llm_synthesis.stage_llm_synthesis(demo_state, sizes=TINY)
    saved = demo_state.results["llm_synthesis"]
    for job in llm_synthesis.JOBS:
        row = saved["backends"]["llm"][job]
        # every candidate the LLM wrote is kept or rejected with a reason
        assert row["generated"] == row["kept"] + row["rejected"] >= 1
        assert sum(row["rejected_by_reason"].values()) == row["rejected"]
        assert row["seconds"] > 0
    kept = tmp_path / "llm_synthesis" / "llm" / "self_qa" / "instructions.jsonl"
    assert all(r["meta"]["backend"] == "openai" for r in io_utils.read_jsonl(kept))
    section = report.write_report(demo_state).read_text()
    assert "## Instruction synthesis: local LLM vs template backend" in section
    assert "| self_instruct | llm |" in section and "| refusals | template |" in section
    llm_synthesis.stage_llm_synthesis(demo_state)  # a rerun resumes: nothing is asked again
    assert demo_state.results["llm_synthesis"] is saved
