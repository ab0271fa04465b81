"""`vertjax demo`: the tiny end-to-end reproduction on embedded data, stage by stage.

Each stage reads what earlier stages wrote under `--out`, adds its figures to `results.json` and a
section to `report.md`, and is skipped on a rerun when its outputs already exist (so an interrupted
demo resumes). Stages: data packs → vocabulary → continued pretraining with domain/general PPL →
retrieval → instruction synthesis → NLI consistency → reference decoding → answering, and with
`--llm` (`DemoConfig.llm`) three more: `llm_answers`, the local LLM's cited answers beside the
extractive ones, `llm_keywords`, its keywords in front of BM25 on lay questions, and
`llm_synthesis`, the synth jobs with the LLM beside the template backend (`make llm` first).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from vertjax.demo import (
    answering,
    consistency,
    data,
    decoding,
    llm_answers,
    llm_keywords,
    llm_synthesis,
    pretrain,
    report,
    retrieval,
    synth,
)
from vertjax.demo.state import DemoConfig, DemoState, say

STAGES: tuple[tuple[str, Callable[[DemoState], None]], ...] = (
    ("data", data.stage_data),
    ("vocab", data.stage_vocab),
    ("pretrain", pretrain.stage_pretrain),
    ("retrieval", retrieval.stage_retrieval),
    ("synth", synth.stage_synth),
    ("consistency", consistency.stage_consistency),
    ("decoding", decoding.stage_decoding),
    ("answer", answering.stage_answer),
)
LLM_STAGES: tuple[tuple[str, Callable[[DemoState], None]], ...] = (
    ("llm_answers", llm_answers.stage_llm_answers),
    ("llm_keywords", llm_keywords.stage_llm_keywords),
    ("llm_synthesis", llm_synthesis.stage_llm_synthesis),
)


def stages(config: DemoConfig) -> tuple[tuple[str, Callable[[DemoState], None]], ...]:
    """The stages a run goes through: every default one, then the LLM ones with `config.llm`."""
    return STAGES + LLM_STAGES if config.llm else STAGES


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Runs every stage in order (resuming finished ones) and writes report.md."""
    config.out.mkdir(parents=True, exist_ok=True)
    results_path = config.out / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    state = DemoState(config=config, results=results)
    total = time.perf_counter()
    for name, stage in stages(config):
        start = time.perf_counter()
        stage(state)
        say(f"stage {name} done in {time.perf_counter() - start:.1f} s")
    path = report.write_report(state)
    say(f"finished in {time.perf_counter() - total:.1f} s; report: {path}")
    return state.results
