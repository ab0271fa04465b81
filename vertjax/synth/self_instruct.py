"""Self-Instruct (Wang et al., 2023): grow an instruction pool from a few seed tasks.

Each round samples 6 seed + 2 machine instructions as in-context examples per prompt, asks the
generator for new instructions, filters them (ROUGE-L >= 0.7 against the pool, length, banned
keywords, duplicates, punctuation/non-English starts), asks whether each is a classification task,
then writes an instance output-first (classification: label, then an input for it) or input-first
(generation), filters the instance and adds survivors to the pool, until `target` are kept or
`max_rounds` have run. An instruction or instance output cut off at `max_tokens` is rejected
(`truncated` / `output_truncated`, also when the cut instance does not parse, as Self-KG counts
it). `dialogue=True` is the multi-turn variant (Mozi): the instance is a user/assistant
conversation that starts with the instruction.

Every candidate has a deterministic position `r<round>.p<prompt>.c<candidate>`; a resumed job
skips decided positions and rebuilds the pool from its own files, so it writes what an
uninterrupted run would have (exactly so for the deterministic backends).
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vertjax import errors, generators, io_utils
from vertjax.synth import filters, prompts, report

if TYPE_CHECKING:
    from vertjax.generators import Generator

JOB = "self-instruct"
DEFAULT_SEEDS = "seed_tasks.jsonl"
INSTRUCTION_REASONS = frozenset(
    {
        "empty",
        "too_short",
        "too_long",
        "not_english",
        "starts_with_punctuation",
        "duplicate",
        "banned_keyword",
        "rouge_similar",
        "truncated",
    }
)
_TASK_SPLIT = re.compile(r"\n\s*Task\s+\d+\s*:", re.IGNORECASE)
_TASK_LABEL = re.compile(r"^\s*Task\s+\d+\s*:", re.IGNORECASE)
_NONE = frozenset({"", "none", "<none>", "n/a", "null", "(none)"})


@dataclasses.dataclass(frozen=True)
class SeedTask:
    instruction: str
    input: str
    output: str
    is_classification: bool


@dataclasses.dataclass(frozen=True)
class SelfInstructConfig:
    """Knobs of a Self-Instruct job (the paper's values where it has them)."""

    target: int = 100
    max_rounds: int = 100
    prompts_per_round: int = 4
    num_seed_examples: int = 6
    num_machine_examples: int = 2
    max_new_per_prompt: int = 8
    dialogue: bool = False
    max_tokens: int = 512
    instance_max_tokens: int = 256
    temperature: float = 0.7
    seed: int = 0
    filters: filters.FilterConfig = filters.FilterConfig()


def load_seed_tasks(path: io_utils.PathLike | None = None) -> list[SeedTask]:
    """Seed tasks in the paper's format (`instances: [{input, output}]`) or flat
    `{instruction, input, output}`; the shipped Python-stdlib seeds when `path` is None."""
    if path is None:
        path = prompts.resource_path(DEFAULT_SEEDS)
    seeds = []
    for line, record in enumerate(io_utils.load_jsonl(path, required_keys=("instruction",)), 1):
        instances = record.get("instances") or [
            {"input": record.get("input", ""), "output": record.get("output", "")}
        ]
        first = instances[0]
        if not isinstance(first, dict) or not str(first.get("output", "")).strip():
            raise errors.DataError("seed task needs a non-empty output", path=path, line=line)
        seeds.append(
            SeedTask(
                instruction=" ".join(str(record["instruction"]).split()),
                input=str(first.get("input", "")),
                output=str(first["output"]),
                is_classification=bool(record.get("is_classification", False)),
            )
        )
    return seeds


def parse_new_instructions(completion: str, *, limit: int) -> list[str]:
    """The instructions of a completion that continues `Task N:` (one per `Task k:` line)."""
    parts = _TASK_SPLIT.split("\n" + completion.strip())
    return [text for text in map(_task_text, parts) if text][:limit]


def _task_text(part: str) -> str:
    """One `Task k:` part's instruction: its text up to a blank line (after one, the model is
    talking about the list, not writing it), whitespace collapsed; "" when it has none."""
    text = _TASK_LABEL.sub("", part.strip()).strip()
    return " ".join(text.split("\n\n")[0].split())


def last_instruction_cut(completion: str) -> bool:
    """Whether a completion that `max_tokens` cut off was cut inside its last instruction: its
    last `Task k:` part holds instruction text with no blank line after it. A cut right after a
    `Task k:` label, or in text after a blank line, leaves every parsed instruction whole."""
    last = _TASK_LABEL.sub("", _TASK_SPLIT.split("\n" + completion.lstrip())[-1].lstrip())
    return bool(_task_text(last)) and "\n\n" not in last.lstrip()


def _none(text: str) -> str:
    return "" if text.strip().lower() in _NONE else text.strip()


def parse_instance(completion: str, *, classification: bool) -> tuple[str, str] | None:
    """(input, output) from an output-first or input-first completion, or None."""
    if classification:
        m = re.search(r"Class label:\s*(.*?)\s*\n\s*Input:\s*(.*)", completion, re.DOTALL)
        return (_none(m.group(2)), m.group(1).strip()) if m else None
    m = re.search(r"Input:\s*(.*?)\s*\n\s*Output:\s*(.*)", completion, re.DOTALL)
    return (_none(m.group(1)), m.group(2).strip()) if m else None


def parse_dialogue(completion: str) -> list[dict[str, str]] | None:
    """User/assistant turns (at least two exchanges, alternating, ending with the assistant)."""
    turns: list[dict[str, str]] = []
    for line in completion.strip().splitlines():
        m = re.match(r"^\s*(User|Assistant)\s*:\s*(.*)$", line)
        if m:
            turns.append({"role": m.group(1).lower(), "text": m.group(2).strip()})
        elif turns and line.strip():
            turns[-1]["text"] += " " + line.strip()
    roles = [t["role"] for t in turns]
    expected = ["user", "assistant"] * (len(turns) // 2)
    if len(turns) < 4 or roles != expected or not all(t["text"] for t in turns):
        return None
    return turns


def _examples_prompt(
    seeds: Sequence[SeedTask],
    machine: Sequence[str],
    *,
    rng: random.Random,
    config: SelfInstructConfig,
) -> str:
    chosen = [
        s.instruction for s in rng.sample(list(seeds), min(config.num_seed_examples, len(seeds)))
    ]
    chosen += rng.sample(list(machine), min(config.num_machine_examples, len(machine)))
    rng.shuffle(chosen)
    examples = "\n".join(f"Task {k}: {' '.join(i.split())}" for k, i in enumerate(chosen, 1))
    return prompts.render("self_instruct_generate", examples=examples, next=len(chosen) + 1)[0]


class _Round:
    """One round's state: the pool (shared across rounds) and the job's files."""

    def __init__(
        self,
        log: report.JobLog,
        generator: Generator,
        config: SelfInstructConfig,
        pool: filters.RougePool,
        seen: set[str],
    ):
        self.log, self.generator, self.config = log, generator, config
        self.pool, self.seen = pool, seen
        self.source = "template" if generator.name == "template" else JOB

    def meta(self, **extra: Any) -> dict[str, Any]:
        return {
            "job": JOB,
            "backend": self.generator.name,
            "model": self.generator.model,
            "seed": self.config.seed,
            **extra,
        }

    def candidates(self, round_index: int, prompt_list: list[str]) -> list[tuple[str, str, str]]:
        """(position, instruction, prompt) of the round's candidates that pass the filters."""
        config = self.config
        completions = generators.generate_flagging_truncated(
            self.generator,
            prompt_list,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            seed=generators.derive_seed(config.seed, round_index, "instructions"),
        )
        todo = []
        for j, (prompt, (completion, truncated)) in enumerate(
            zip(prompt_list, completions, strict=True)
        ):
            written = parse_new_instructions(completion, limit=len(completion) + 1)
            # the last instruction is incomplete only when the max_tokens cut fell inside it
            cut = len(written) - 1 if truncated and last_instruction_cut(completion) else -1
            for c, instruction in enumerate(written[: config.max_new_per_prompt]):
                position = f"r{round_index}.p{j}.c{c}"
                done = self.log.decided.get(position)
                if done is not None:
                    if done["meta"].get("reason") not in INSTRUCTION_REASONS:
                        self._add(done["instruction"])
                    continue
                reason, score = (
                    ("truncated", 0.0)
                    if c == cut
                    else filters.instruction_reason(
                        instruction, config=config.filters, pool=self.pool, seen=self.seen
                    )
                )
                if reason:
                    meta = self.meta(
                        round=round_index,
                        position=position,
                        instruction_prompt=prompt,
                        rouge_l=round(score, 4),
                    )
                    self.log.reject(
                        report.make_record(
                            instruction=instruction,
                            input_="",
                            output="",
                            source=self.source,
                            meta=meta,
                        ),
                        reason,
                    )
                    continue
                self._add(instruction)
                todo.append((position, instruction, prompt))
        return todo

    def _add(self, instruction: str) -> None:
        normalized = filters.normalize(instruction)
        if normalized not in self.seen:
            self.seen.add(normalized)
            self.pool.add(instruction)

    def instances(self, round_index: int, todo: list[tuple[str, str, str]]) -> int:
        """Classifies, writes and filters one instance per candidate; returns how many kept."""
        config, generate = self.config, self.generator.generate
        if config.dialogue:
            kinds = [False] * len(todo)
        else:
            rendered = [
                prompts.render("self_instruct_classify", instruction=i)[0] for _, i, _ in todo
            ]
            answers = generate(
                rendered,
                max_tokens=8,
                temperature=0.0,
                seed=generators.derive_seed(config.seed, round_index, "classify"),
            )
            kinds = [a.strip().lower().startswith("yes") for a in answers]
        names = [
            "self_instruct_dialogue"
            if config.dialogue
            else "self_instruct_output_first"
            if k
            else "self_instruct_input_first"
            for k in kinds
        ]
        rendered_instances = [
            prompts.render(n, instruction=i) for n, (_, i, _) in zip(names, todo, strict=True)
        ]
        completions = generators.generate_flagging_truncated(
            self.generator,
            [p for p, _ in rendered_instances],
            max_tokens=config.instance_max_tokens,
            temperature=config.temperature,
            seed=generators.derive_seed(config.seed, round_index, "instances"),
        )
        kept = 0
        for (position, instruction, gen_prompt), is_cls, (prompt, template), (
            completion,
            truncated,
        ) in zip(todo, kinds, rendered_instances, completions, strict=True):
            meta = self.meta(
                round=round_index,
                position=position,
                is_classification=is_cls,
                template=template.id,
                template_sha256=template.sha256,
                prompt=prompt,
                instruction_prompt=gen_prompt,
            )
            parsed, reason = self._parse(completion, is_cls, meta)
            if truncated and reason != "empty_output":  # cut off: the format may have come later
                reason = "output_truncated"
            # an off-format instance keeps what the model wrote, to show why it was rejected
            input_, output = parsed or ("", completion.strip())
            record = report.make_record(
                instruction=instruction, input_=input_, output=output, source=self.source, meta=meta
            )
            reason = reason or filters.instance_reason(input_, output, config=config.filters)
            if reason:
                self.log.reject(record, reason)
            elif self.log.keep(record):
                kept += 1
                if len(self.log.kept.records) >= config.target:
                    break
        return kept

    def _parse(
        self, completion: str, is_cls: bool, meta: dict[str, Any]
    ) -> tuple[tuple[str, str] | None, str | None]:
        """((input, output) or None, reject reason or None); dialogue turns go into `meta`."""
        if not completion.strip():
            return None, "empty_output"
        if self.config.dialogue:
            turns = parse_dialogue(completion)
            if turns is None:
                return None, "unparseable"
            meta["turns"] = turns
            history = "\n".join(f"{t['role'].title()}: {t['text']}" for t in turns[:-1])
            return (history, turns[-1]["text"]), None
        parsed = parse_instance(completion, classification=is_cls)
        return (parsed, None) if parsed else (None, "unparseable")


def run_self_instruct(
    seeds: Sequence[SeedTask],
    generator: Generator,
    out_dir: io_utils.PathLike,
    *,
    config: SelfInstructConfig = SelfInstructConfig(),
) -> dict[str, int]:
    """Runs (or resumes) a Self-Instruct job into `out_dir`; returns {kept, rejected, rounds}."""
    if not seeds:
        raise errors.ConfigError("self-instruct needs at least one seed task")
    with report.JobLog(out_dir) as log:
        pool = filters.RougePool()
        seen: set[str] = set()
        state = _Round(log, generator, config, pool, seen)
        for instruction in [s.instruction for s in seeds] + [
            r["instruction"] for r in log.kept.records
        ]:
            state._add(instruction)
        rounds = 0
        for r in range(config.max_rounds):
            if len(log.kept.records) >= config.target:
                break
            if log.is_done(f"round-{r}"):
                continue
            rounds += 1
            machine = [k["instruction"] for k in log.kept.records if k["meta"]["round"] < r]
            rng = random.Random(generators.derive_seed(config.seed, r, "examples"))
            prompt_list = [
                _examples_prompt(seeds, machine, rng=rng, config=config)
                for _ in range(config.prompts_per_round)
            ]
            todo = state.candidates(r, prompt_list)
            if todo:
                state.instances(r, todo)
            if len(log.kept.records) < config.target:
                log.mark_done(f"round-{r}")
        return {
            "kept": len(log.kept.records),
            "rejected": len(log.rejected.records),
            "rounds_run": rounds,
        }
