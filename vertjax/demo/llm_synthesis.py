"""The demo's third LLM stage (`vertjax demo --llm`): instruction synthesis by the local LLM beside
the template backend, on the same inputs.

Four synth jobs run twice, once with the template backend and once with the OpenAI backend against
the local server (`make llm`: llama.cpp + SmolLM2-135M-Instruct), through the same code as
`vertjax synth ...`: Self-Instruct (a few rounds of the loop from the shipped seeds), Self-QA (the
first domain passages the template backend can ask about), Self-KG (entities of the KG triples the
synthesis stage extracted) and generated refusals (new out-of-domain questions, each with the fixed
refusal). Sizes are small (`Sizes`) so the stage adds a few minutes on 2 cores. Per backend and
job the section reports generated / kept / rejected by reason, the verb and verb-noun diversity
and the mean ROUGE-L to the nearest kept neighbour (`synth.report.summarize`), and wall time.
Every job folder resumes (`synth.report.JobLog`); a job whose time is recorded in
`<backend>/seconds.json` is not run again (a job interrupted and resumed records only the time of
the part run after resuming).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vertjax import errors, io_utils
from vertjax.demo.state import DemoState, say
from vertjax.synth import kg, refusals, report, self_instruct, self_kg, self_qa

if TYPE_CHECKING:
    from vertjax.generators import Generator

JOBS = ("self_instruct", "self_qa", "self_kg", "refusals")
FIELDS = ("generated", "kept", "rejected", "unique_verbs", "unique_verb_noun_pairs")
EXAMPLE_CHARS = 160  # how much of an example the report quotes


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each job asks for (SmolLM2-135M writes ~22 tokens/s on 2 cores)."""

    instruct_rounds: int = 3
    passages: int = 3
    questions_per_passage: int = 2
    entities: int = 3
    examples_per_entity: int = 2
    refusal_rounds: int = 3
    max_tokens: int = 96  # per completion; Self-KG's examples and Self-Instruct's lists get 2x

    def __post_init__(self) -> None:
        if min(dataclasses.astuple(self)) < 1:
            raise errors.ConfigError(f"llm_synthesis sizes must all be >= 1: {self}")


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What both backends synthesize from."""

    seeds: Sequence[self_instruct.SeedTask]
    passages: Sequence[dict[str, Any]]
    triples: Sequence[dict[str, str]]


def pick_passages(passages: Sequence[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first `n` passages the template backend can ask about (a documented name or an
    "X is a Y." definition: of most passages it asks nothing, which would compare the LLM with
    nothing), topped up with the first others when fewer exist."""
    askable, others = [], []
    for p in passages:
        if len(askable) == n:
            break
        asks = self_qa.template_questions(p.get("title", ""), p["text"], count=1)
        (askable if asks else others).append(p)
    return askable + others[: n - len(askable)]


def _jobs(inputs: Inputs, sizes: Sizes) -> dict[str, Callable[[Generator, pathlib.Path], Any]]:
    """Each job as `run(generator, out_dir)`, configured by `sizes`."""
    instruct = self_instruct.SelfInstructConfig(
        target=1000,  # the rounds, not a target, bound the job
        max_rounds=sizes.instruct_rounds,
        prompts_per_round=1,
        num_seed_examples=4,
        num_machine_examples=2,
        max_new_per_prompt=3,
        max_tokens=2 * sizes.max_tokens,  # a list of instructions
        instance_max_tokens=sizes.max_tokens,
    )
    qa = self_qa.SelfQAConfig(
        questions_per_passage=sizes.questions_per_passage, max_tokens=sizes.max_tokens
    )
    skg = self_kg.SelfKGConfig(
        examples_per_entity=sizes.examples_per_entity,
        max_entities=sizes.entities,
        max_tokens=2 * sizes.max_tokens,
    )
    refuse = refusals.RefusalConfig(
        target=1000,
        max_rounds=sizes.refusal_rounds,
        prompts_per_round=1,
        questions_per_prompt=5,
        max_tokens=sizes.max_tokens,
    )
    return {
        "self_instruct": lambda g, out: self_instruct.run_self_instruct(
            inputs.seeds, g, out, config=instruct
        ),
        "self_qa": lambda g, out: self_qa.run_self_qa(inputs.passages, g, out, config=qa),
        "self_kg": lambda g, out: self_kg.run_self_kg(inputs.triples, g, out, config=skg),
        "refusals": lambda g, out: refusals.run_refusals(g, out, config=refuse),
    }


def run_backend(
    generator: Generator, out: pathlib.Path, *, inputs: Inputs, sizes: Sizes
) -> dict[str, dict[str, Any]]:
    """Runs (or resumes) every job with `generator` under `out/<job>`; one row per job: the
    report's counts, diversity and ROUGE-L, wall time, and the first kept example."""
    timings_path = out / "seconds.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    rows = {}
    for name, run in _jobs(inputs, sizes).items():
        job_dir = out / name
        if name not in timings:
            say(f"synthesis with {generator.name}: {name}")
            start = time.perf_counter()
            run(generator, job_dir)
            timings[name] = time.perf_counter() - start
            io_utils.atomic_write_json(timings_path, timings)
        summary = report.write_report(job_dir, title=f"{name} ({generator.name})")
        kept = list(io_utils.read_jsonl(job_dir / report.KEPT_FILE))
        rows[name] = {
            **{k: summary[k] for k in FIELDS},
            "rejected_by_reason": summary["rejected_by_reason"],
            "rouge_nn_mean": summary["rouge_nn_mean"],
            "seconds": timings[name],
            "example": {k: kept[0][k] for k in ("instruction", "input", "output")}
            if kept
            else None,
        }
    return rows


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 3] + "..."


def markdown(result: Mapping[str, Mapping[str, Mapping[str, Any]]], *, model: str) -> str:
    """The report section: per job, the template row beside the LLM row, then one kept LLM
    example per job."""
    backends = list(result)
    lines = [
        "## Instruction synthesis: local LLM vs template backend",
        "",
        f"LLM: {model} (llama.cpp server). Both backends run the same synth jobs on the same "
        "inputs (shipped seeds, the first domain passages the template can ask about, the "
        "synthesis stage's KG entities, the shipped out-of-domain questions), with the same "
        "filters. Diversity: distinct first verbs / verb-noun pairs of the kept instructions; "
        "ROUGE-L: mean F1 of each kept instruction to its nearest other kept one.",
        "",
        "| job | backend | generated | kept | rejected | rejected by reason | verbs / pairs | "
        "ROUGE-L to nearest | seconds |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for job in JOBS:
        for backend in backends:
            row = result[backend][job]
            reasons = ", ".join(f"{k} {v}" for k, v in row["rejected_by_reason"].items())
            rouge = "" if row["rouge_nn_mean"] is None else f"{row['rouge_nn_mean']:.3f}"
            lines.append(
                f"| {job} | {backend} | {row['generated']} | {row['kept']} | {row['rejected']} "
                f"| {reasons or '-'} | {row['unique_verbs']} / {row['unique_verb_noun_pairs']} "
                f"| {rouge} | {row['seconds']:.1f} |"
            )
    lines.append("")
    llm = backends[-1]
    for job in JOBS:
        example = result[llm][job]["example"]
        if example is None:
            lines.append(f"- {job}, {llm}: nothing kept")
            continue
        text = example["instruction"] + (
            f" [input: {example['input']}]" if example["input"] else ""
        )
        lines.append(f"- {job}, {llm}: {_short(text)} -> {_short(example['output'])}")
    lines.append("")
    return "\n".join(lines)


def stage_inputs(state: DemoState, sizes: Sizes) -> Inputs:
    """The shipped seed tasks, the domain pack's passages and the synthesis stage's triples."""
    synth = state.results.get("synth")
    data = state.results.get("data", {}).get("domain")
    if not synth or not data:
        raise errors.ConfigError(
            f"the llm_synthesis stage needs the data and synthesis stages' outputs in "
            f"{state.out}; run the demo first"
        )
    return Inputs(
        seeds=self_instruct.load_seed_tasks(),
        passages=pick_passages(self_qa.load_passages(data["dir"]), sizes.passages),
        triples=kg.load_triples(pathlib.Path(synth["dir"]) / "kg.jsonl"),
    )


def stage_llm_synthesis(state: DemoState, *, sizes: Sizes = Sizes()) -> None:
    """`vertjax demo --llm`: the synth jobs with the local LLM beside the template backend."""
    from vertjax.generators import local_server, openai_chat
    from vertjax.synth import template_backend

    if "llm_synthesis" in state.results:
        return
    inputs = stage_inputs(state, sizes)
    out = state.out / "llm_synthesis"
    out.mkdir(parents=True, exist_ok=True)
    template = template_backend.TemplateGenerator(inputs.triples)
    result = {"template": run_backend(template, out / "template", inputs=inputs, sizes=sizes)}
    say("starting the local LLM server for synthesis")
    with local_server.LocalLLMServer(log_path=out / "server.log") as server:
        llm = openai_chat.OpenAIChatGenerator(
            server.base_url, server.model_name, max_retries=0, concurrency=1
        )
        result["llm"] = run_backend(llm, out / "llm", inputs=inputs, sizes=sizes)
        model = server.model_name
    section = markdown(result, model=model)
    io_utils.atomic_write_json(out / "results.json", result)
    print(section, flush=True)
    state.results["llm_synthesis"] = {
        "markdown": section,
        "backends": result,
        "model": model,
        "sizes": dataclasses.asdict(sizes),
    }
    state.save()
