"""Self-KG (HuaTuo): instruction data grounded on one knowledge-graph entity at a time.

Entities with at least `min_facts` facts are sampled (seeded), each is rendered with all its
relations as `- relation: object` lines, and the generator writes instruction/input/output examples
from those facts only. Examples pass the shared text filters and a grounding filter: most of the
output's content words must occur in the rendered facts (an answer the facts do not support is
rejected as `not_grounded`). The entity and its facts are kept in each record's meta.
What a real LLM gets wrong is counted, not dropped: a completion without any parseable example
once per entity (`examples_empty`, `examples_truncated` when `max_tokens` cut it, else
`examples_unparseable`), a block without the three fields as `example_unparseable`, and the block
a `max_tokens` cut fell in as `output_truncated`.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vertjax import generators
from vertjax.synth import filters, kg, prompts, report

if TYPE_CHECKING:
    from vertjax import io_utils
    from vertjax.generators import Generator

JOB = "self-kg"
_EXAMPLE = re.compile(
    r"Instruction:\s*(?P<instruction>.*?)\s*\n\s*Input:\s*(?P<input>.*?)\s*\n\s*Output:\s*"
    r"(?P<output>.*)",
    re.DOTALL,
)
# `###` lines, and the start of each further `Instruction:` line (models that skip the `###`).
_SEPARATOR = re.compile(r"^\s*###\s*$|^(?=[ \t]*Instruction\s*:)", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class SelfKGConfig:
    """Knobs of a Self-KG job."""

    examples_per_entity: int = 4
    max_entities: int | None = 200
    min_facts: int = 3
    min_grounding: float = 0.6
    batch_size: int = 16
    max_tokens: int = 512
    temperature: float = 0.7
    seed: int = 0
    filters: filters.FilterConfig = filters.FilterConfig()


def sample_entities(
    facts: dict[str, list[tuple[str, str]]], *, max_entities: int | None, min_facts: int, seed: int
) -> list[str]:
    """Entities with >= `min_facts` facts in a seeded random order, at most `max_entities`."""
    entities = sorted(e for e, f in facts.items() if len(f) >= min_facts)
    random.Random(seed).shuffle(entities)
    return entities if max_entities is None else entities[:max_entities]


def parse_blocks(completion: str) -> list[tuple[str, str, str] | None]:
    """(instruction, input, output) per non-blank example block of a completion, None for a
    block without all three fields."""
    blocks = []
    for block in _SEPARATOR.split(completion):
        if not block.strip():
            continue
        m = _EXAMPLE.search(block)
        if m is None:
            blocks.append(None)
            continue
        input_ = m.group("input").strip()
        input_ = "" if input_.lower() in ("none", "n/a", "") else input_
        blocks.append((" ".join(m.group("instruction").split()), input_, m.group("output").strip()))
    return blocks


def parse_examples(completion: str) -> list[tuple[str, str, str]]:
    """(instruction, input, output) of each example block that has all three fields."""
    return [b for b in parse_blocks(completion) if b is not None]


def _reason(
    instruction: str,
    input_: str,
    output: str,
    *,
    reference: str,
    config: SelfKGConfig,
    seen: set[str],
) -> str | None:
    fc = config.filters
    return (
        filters.text_reason(
            instruction,
            min_words=fc.min_words,
            max_words=fc.max_words,
            seen=seen,
            key=f"{instruction} {input_}",
        )
        or filters.instance_reason(input_, output, config=fc)
        or filters.grounding_reason(
            output, reference=reference, min_overlap=config.min_grounding, reason="not_grounded"
        )
    )


def run_self_kg(
    triples: Sequence[dict[str, str]],
    generator: Generator,
    out_dir: io_utils.PathLike,
    *,
    config: SelfKGConfig = SelfKGConfig(),
) -> dict[str, int]:
    """Runs (or resumes) a Self-KG job into `out_dir`; returns {kept, rejected, entities}."""
    facts = kg.entity_facts(triples)
    entities = sample_entities(
        facts, max_entities=config.max_entities, min_facts=config.min_facts, seed=config.seed
    )
    source = "template" if generator.name == "template" else JOB
    with report.JobLog(out_dir) as log:
        seen = {filters.normalize(f"{r['instruction']} {r['input']}") for r in log.kept.records}
        for b in range(0, len(entities), config.batch_size):
            batch = [e for e in entities[b : b + config.batch_size] if not log.is_done(e)]
            if not batch:
                continue
            rendered = [
                prompts.render(
                    "self_kg",
                    count=config.examples_per_entity,
                    entity=entity,
                    facts=kg.render_facts(facts[entity]),
                )
                for entity in batch
            ]
            completions = generators.generate_flagging_truncated(
                generator,
                [p for p, _ in rendered],
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                seed=generators.derive_seed(config.seed, b // config.batch_size),
            )
            for entity, (prompt, template), (completion, truncated) in zip(
                batch, rendered, completions, strict=True
            ):
                reference = entity + "\n" + kg.render_facts(facts[entity])
                base: dict[str, Any] = {
                    "job": JOB,
                    "entity": entity,
                    "facts": [list(f) for f in facts[entity]],
                    "template": template.id,
                    "template_sha256": template.sha256,
                    "prompt": prompt,
                    "backend": generator.name,
                    "model": generator.model,
                    "seed": config.seed,
                }
                parsed = parse_blocks(completion)
                # a cut right after a `###` (the next block not begun) leaves every block whole
                ends_in_block = bool(_SEPARATOR.split(completion)[-1].strip())
                last_cut = len(parsed) - 1 if truncated and ends_in_block else -1
                blocks = parsed[: config.examples_per_entity]
                if not any(blocks):
                    _reject_completion(log, completion, truncated, base, source, generator)
                for k, block in enumerate(blocks):
                    position = f"{entity}#e{k}"
                    if position in log.decided:
                        continue
                    instruction, input_, output = block or ("", "", "")
                    record = report.make_record(
                        instruction=instruction,
                        input_=input_,
                        output=output,
                        source=source,
                        meta=dict(base, position=position),
                    )
                    cut = k == last_cut  # the block max_tokens cut
                    if block is None:
                        if any(blocks):  # else counted once for the whole completion
                            log.reject(record, "output_truncated" if cut else "example_unparseable")
                        continue
                    reason = "output_truncated" if cut else None
                    reason = reason or _reason(
                        instruction, input_, output, reference=reference, config=config, seen=seen
                    )
                    if reason:
                        log.reject(record, reason)
                    elif log.keep(record):
                        seen.add(filters.normalize(f"{instruction} {input_}"))
                log.mark_done(entity)
        return {
            "kept": len(log.kept.records),
            "rejected": len(log.rejected.records),
            "entities": len(entities),
        }


def _reject_completion(
    log: report.JobLog,
    completion: str,
    truncated: bool,
    meta: dict[str, Any],
    source: str,
    generator: Generator,
) -> None:
    """Counts an entity's completion with no parseable example once: `examples_empty` (blank),
    `examples_truncated` (cut off at `max_tokens`) or `examples_unparseable` (off-format). The
    template backend's blank answer means "no example for these facts", not a rejection."""
    position = f"{meta['entity']}#examples"
    blank = not completion.strip()
    if position in log.decided or (blank and generator.name == "template"):
        return
    reason = "examples_empty" if blank else "examples_truncated" if truncated else None
    record = report.make_record(
        instruction="",
        input_="",
        output=completion.strip(),
        source=source,
        meta=dict(meta, position=position),
    )
    log.reject(record, reason or "examples_unparseable")
