"""Instruction data of the hybrid-tuning experiment: domain and general, split by group.

- Domain (the Python standard library): the template backend's Self-Instruct, Self-KG and Self-QA
  jobs, on a KG of the curated stdlib modules whose documents are in the domain pack's *train*
  split only and on that split's passages, so no instruction restates validation text.
- General: WordNet definitions and usage examples parsed from the general pack's train split
  ("Define the word X." -> its gloss; "Use the word X in a sentence." -> its example), plus the
  out-of-domain refusal set (general questions -> the fixed refusal).

Records are deduplicated on (instruction, input), then held out by *group* (the KG entity, the
passage, the WordNet lemma, else the record), so that a held-out instruction asks about something
no training instruction asked about; the knowledge itself was in the pretraining text.
"""

from __future__ import annotations

import pathlib
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

from vertjax import errors, io_utils

_LEMMAS = re.compile(r"^[A-Za-z][A-Za-z0-9'.\- ]*(, [A-Za-z][A-Za-z0-9'.\- ]*)*$")
_EXAMPLE = re.compile(r'"([^"]{12,200})"')
_CODE_NAME = re.compile(r"`([\w.]+)`")


def domain_modules(pack_dir: pathlib.Path, modules: Sequence[str]) -> list[str]:
    """The modules of `modules` whose documents are not in the pack's validation/test splits."""
    held = {
        r["doc_id"].removeprefix("module/")
        for split in ("validation", "test")
        for r in io_utils.read_jsonl(pack_dir / f"{split}.jsonl", required_keys=("doc_id",))
    }
    return [m for m in modules if m not in held]


def synthesize_domain(
    *,
    pack_dir: pathlib.Path,
    out_dir: pathlib.Path,
    self_instruct_target: int,
    self_kg_entities: int,
    self_qa_passages: int | None,
    seed: int,
) -> list[dict[str, Any]]:
    """Runs (or resumes) the three template-backend jobs; returns their kept records."""
    from vertjax.data import packs
    from vertjax.synth import kg, self_instruct, self_kg, self_qa, template_backend

    modules = domain_modules(pack_dir, kg.DEFAULT_MODULES)
    triples_path = out_dir / "kg.jsonl"
    if not triples_path.is_file():
        io_utils.write_jsonl(triples_path, kg.extract_triples(modules))
    triples = kg.load_triples(triples_path)
    generator = template_backend.TemplateGenerator(triples)
    self_instruct.run_self_instruct(
        self_instruct.load_seed_tasks(),
        generator,
        out_dir / "self_instruct",
        config=self_instruct.SelfInstructConfig(target=self_instruct_target, seed=seed),
    )
    self_kg.run_self_kg(
        triples,
        generator,
        out_dir / "self_kg",
        config=self_kg.SelfKGConfig(max_entities=self_kg_entities, seed=seed),
    )
    passages = packs.load_passages(pack_dir, splits=("train",))[:self_qa_passages]
    self_qa.run_self_qa(
        passages, generator, out_dir / "self_qa", config=self_qa.SelfQAConfig(seed=seed)
    )
    return [
        dict(r, source=job)
        for job in ("self_instruct", "self_kg", "self_qa")
        for r in io_utils.load_jsonl(out_dir / job / "instructions.jsonl")
    ]


def wordnet_entries(texts: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """lemma -> (gloss, first example or None) of the first sense seen of each lemma.

    Passages are chunks of `lemmas: gloss; "example"` paragraphs; a passage's first and last
    paragraphs may be cut by chunking, so they are skipped (overlapping chunks repeat them).
    """
    entries: dict[str, tuple[str, str | None]] = {}
    for text in texts:
        paragraphs = text.split("\n\n")[1:-1]
        for paragraph in paragraphs:
            head, sep, body = paragraph.partition(": ")
            if not sep or not _LEMMAS.match(head):
                continue
            gloss = body.split('; "', 1)[0].strip().rstrip(";").strip()
            example = _EXAMPLE.search(body)
            lemma = head.split(", ")[0].strip()
            if len(gloss.split()) >= 3 and lemma not in entries:
                entries[lemma] = (gloss, example.group(1) if example else None)
    return entries


def general_records(
    *, pack_dir: pathlib.Path, lemmas: int, refusals: Sequence[dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    """WordNet define/use records for `lemmas` sampled lemmas, then the refusal records."""
    from vertjax.synth import report

    texts = (
        r["text"] for r in io_utils.read_jsonl(pack_dir / "train.jsonl", required_keys=("text",))
    )
    entries = wordnet_entries(texts)
    if not entries:
        raise errors.DataError("no WordNet entries found in the general pack", path=pack_dir)
    chosen = sorted(entries)
    random.Random(seed).shuffle(chosen)
    records = []
    for lemma in chosen[:lemmas]:
        gloss, example = entries[lemma]
        pairs = [(f"Define the word '{lemma}'.", gloss)]
        if example:
            pairs.append((f"Use the word '{lemma}' in a sentence.", example))
        for instruction, output in pairs:
            records.append(
                report.make_record(
                    instruction=instruction,
                    input_="",
                    output=output,
                    source="wordnet",
                    meta={"lemma": lemma, "template": "wordnet.v1"},
                )
            )
    return records + [dict(r, source="refusal") for r in refusals]


def group_of(record: dict[str, Any]) -> str:
    """The unit a held-out split keeps together: KG entity, passage, lemma, code name, or id."""
    meta = record.get("meta") or {}
    for key in ("entity", "passage_id", "lemma"):
        if meta.get(key):
            return f"{key}:{meta[key]}"
    name = _CODE_NAME.search(record["instruction"])
    return f"name:{name.group(1)}" if name else f"id:{record['id']}"


def split_records(
    records: Sequence[dict[str, Any]], *, heldout_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): deduplicated on (instruction, input), held out by whole groups."""
    from vertjax.synth import filters, report

    if not 0.0 < heldout_fraction < 1.0:
        raise errors.ConfigError(f"held-out fraction must be in (0, 1), got {heldout_fraction}")
    seen: set[str] = set()
    train, heldout = [], []
    for record in records:
        key = filters.normalize(f"{record['instruction']} {record['input']}")
        if key in seen:
            continue
        seen.add(key)
        draw = int(report.stable_id(str(seed), group_of(record)), 16) / 16**16
        (heldout if draw < heldout_fraction else train).append(record)
    if not train or not heldout:
        raise errors.DataError(
            f"the held-out split of {len(records)} records left an empty side; "
            "synthesize more or change the held-out fraction"
        )
    return train, heldout


def eval_subset(records: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` records, taken round-robin over sources (each in id order), so that one
    plentiful source does not make up the whole evaluation set."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: r["id"]):
        by_source.setdefault(record["source"], []).append(record)
    queues = [by_source[s] for s in sorted(by_source)]
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(q) for q in queues):
        chosen += [q[depth] for q in queues if depth < len(q)][: limit - len(chosen)]
        depth += 1
    return chosen
