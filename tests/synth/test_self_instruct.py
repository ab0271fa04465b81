"""Self-Instruct with the template backend: real data, filters applied, resume without duplicates."""

from __future__ import annotations

import json

import pytest

from vertjax.synth import filters, kg, report, self_instruct, template_backend

CONFIG = self_instruct.SelfInstructConfig(target=24, max_rounds=20, prompts_per_round=2)


class _Interrupted(Exception):
    pass


class _DiesAfter:
    """Wraps a generator and raises on its n-th call (a kill in the middle of a round)."""

    def __init__(self, inner, calls):
        self.inner, self.calls = inner, calls
        self.name, self.model = inner.name, inner.model

    def generate(self, prompts, **kw):
        self.calls -= 1
        if self.calls < 0:
            raise _Interrupted
        return self.inner.generate(prompts, **kw)


@pytest.fixture(scope="module")
def triples():
    return kg.extract_triples(["math", "json", "heapq"])


@pytest.fixture(scope="module")
def generator(triples):
    return template_backend.TemplateGenerator(triples)


@pytest.fixture(scope="module")
def seeds():
    return self_instruct.load_seed_tasks()


def _lines(path):
    return path.read_text().splitlines()


def test_shipped_seeds_have_both_kinds(seeds):
    assert len(seeds) >= 30
    assert 5 <= sum(s.is_classification for s in seeds) < len(seeds) - 5


def test_template_run_keeps_correct_filtered_records(tmp_path, generator, triples, seeds):
    summary = self_instruct.run_self_instruct(seeds, generator, tmp_path, config=CONFIG)
    kept = [json.loads(line) for line in _lines(tmp_path / report.KEPT_FILE)]
    assert summary["kept"] == len(kept) == CONFIG.target
    assert len({r["id"] for r in kept}) == len(kept)
    for r in kept:
        assert set(r) == set(report.RECORD_KEYS) and r["source"] == "template"
        assert {"prompt", "template", "backend", "model", "seed", "position"} <= set(r["meta"])
        assert r["meta"]["prompt"].endswith(r["instruction"])
    # Every kept instruction is < 0.7 ROUGE-L from every seed and every other kept instruction.
    pool = filters.RougePool([s.instruction for s in seeds])
    for r in kept:
        assert pool.nearest(r["instruction"])[0] < 0.7
        pool.add(r["instruction"])
    # Outputs are the KG's facts.
    facts = kg.entity_facts(triples)
    answers = {
        (i.instruction, i.input): i.output
        for entity, f in facts.items()
        for i in kg.entity_instructions(entity, f)
    }
    for r in kept:
        assert answers[(r["instruction"], r["input"])] == r["output"]
    rejected = [json.loads(line) for line in _lines(tmp_path / report.REJECTED_FILE)]
    assert rejected and all(
        r["meta"]["reason"] in self_instruct.INSTRUCTION_REASONS | {"empty_output"}
        for r in rejected
    )
    assert any(r["meta"]["is_classification"] for r in kept)


def test_interrupted_job_resumes_to_the_same_files(tmp_path, generator, seeds):
    clean = tmp_path / "clean"
    self_instruct.run_self_instruct(seeds, generator, clean, config=CONFIG)
    for die_after in (1, 2, 4, 7):
        run_dir = tmp_path / f"killed{die_after}"
        with pytest.raises(_Interrupted):
            self_instruct.run_self_instruct(
                seeds, _DiesAfter(generator, die_after), run_dir, config=CONFIG
            )
        # a kill mid-write leaves a torn last line; the restart truncates it
        with (run_dir / report.KEPT_FILE).open("a") as f:
            f.write('{"id": "torn')
        self_instruct.run_self_instruct(seeds, generator, run_dir, config=CONFIG)
        for name in (report.KEPT_FILE, report.REJECTED_FILE):
            assert _lines(run_dir / name) == _lines(clean / name), (die_after, name)


def test_rerun_with_a_larger_target_extends_without_duplicates(tmp_path, generator, seeds):
    small = self_instruct.SelfInstructConfig(target=10, max_rounds=20, prompts_per_round=2)
    self_instruct.run_self_instruct(seeds, generator, tmp_path, config=small)
    summary = self_instruct.run_self_instruct(seeds, generator, tmp_path, config=CONFIG)
    ids = [json.loads(line)["id"] for line in _lines(tmp_path / report.KEPT_FILE)]
    assert summary["kept"] == len(ids) == CONFIG.target and len(set(ids)) == len(ids)


def test_dialogue_variant_writes_multi_turn_records(tmp_path, generator, seeds):
    config = self_instruct.SelfInstructConfig(
        target=6, max_rounds=10, prompts_per_round=2, dialogue=True
    )
    self_instruct.run_self_instruct(seeds, generator, tmp_path, config=config)
    kept = [json.loads(line) for line in _lines(tmp_path / report.KEPT_FILE)]
    assert len(kept) == 6
    for r in kept:
        turns = r["meta"]["turns"]
        assert len(turns) >= 4 and [t["role"] for t in turns[:2]] == ["user", "assistant"]
        assert r["input"].startswith("User: ") and r["output"] == turns[-1]["text"]
        assert r["meta"]["template"] == "self_instruct_dialogue.v1"


def test_parsers_accept_llm_style_completions():
    completion = " Explain heapq.merge.\nTask 10: List two uses of bisect.\n\nTask 11: Describe zlib.crc32.\n"
    assert self_instruct.parse_new_instructions(completion, limit=8) == [
        "Explain heapq.merge.",
        "List two uses of bisect.",
        "Describe zlib.crc32.",
    ]
    assert self_instruct.parse_instance("Class label: yes\nInput: None", classification=True) == (
        "",
        "yes",
    )
    assert self_instruct.parse_instance("Input: [3, 1]\nOutput: [1, 3]", classification=False) == (
        "[3, 1]",
        "[1, 3]",
    )
    assert self_instruct.parse_instance("no format here", classification=False) is None
    assert self_instruct.parse_dialogue("User: hi\nAssistant: hello") is None


class _CutOff:
    """Scripted OpenAI-like backend: an instruction list, then one instance per instruction;
    says which completions stopped at max_tokens (`cut`: the list inside its last instruction,
    after the list or after a label, the instances, or none)."""

    name, model = "scripted", "scripted-v0"

    def __init__(self, cut):
        self.cut = cut

    def generate(self, prompts, **kw):
        return [c.text for c in self.complete(prompts, **kw)]

    def complete(self, prompts, **kw):
        from vertjax.generators import openai_chat

        out = []
        for prompt in prompts:
            if "Task" in prompt and "Come up with" in prompt:
                text = "Explain what a heap queue is.\nTask 9: " + {
                    # cut in text after the list, or right after the next label: nothing incomplete
                    "after-list": "Describe the bisect module.\n\nSure, a",
                    "after-label": "Describe the bisect module.\nTask 10:",
                }.get(self.cut, "Describe how the bisect")
                length = self.cut in ("list", "after-list", "after-label")
            elif "classification" in prompt.lower() and "Yes" in prompt:
                text, length = "No", False
            elif self.cut in ("off-format", "off-format-cut"):
                text, length = "Sure! A heap queue is a binary tree.", self.cut == "off-format-cut"
            else:
                text = "Input: None\nOutput: A heap queue keeps the smallest"
                length = self.cut == "instances"
            out.append(openai_chat.Completion(text, "length" if length else "stop"))
        return out


@pytest.mark.parametrize(
    ("cut", "kept", "reasons"),
    [
        (None, 2, []),
        ("list", 1, ["truncated"]),  # "Describe how the bisect" is not kept as an instruction
        ("after-list", 2, []),
        ("after-label", 2, []),
        ("instances", 0, ["output_truncated", "output_truncated"]),
        ("off-format-cut", 0, ["output_truncated", "output_truncated"]),
    ],
    ids=[
        "complete",
        "instruction-list-cut",
        "cut-after-the-list",
        "cut-after-a-label",
        "instances-cut",
        "off-format-instances-cut",
    ],
)
def test_output_cut_off_at_max_tokens_is_rejected(tmp_path, seeds, cut, kept, reasons):
    config = self_instruct.SelfInstructConfig(target=5, max_rounds=1, prompts_per_round=1)
    totals = self_instruct.run_self_instruct(seeds[:8], _CutOff(cut), tmp_path, config=config)
    rejected = [json.loads(line) for line in _lines(tmp_path / report.REJECTED_FILE)]
    assert totals["kept"] == kept and [r["meta"]["reason"] for r in rejected] == reasons


def test_an_off_format_instance_is_rejected_with_what_the_model_wrote(tmp_path, seeds):
    config = self_instruct.SelfInstructConfig(target=5, max_rounds=1, prompts_per_round=1)
    self_instruct.run_self_instruct(seeds[:8], _CutOff("off-format"), tmp_path, config=config)
    rejected = [json.loads(line) for line in _lines(tmp_path / report.REJECTED_FILE)]
    assert [(r["meta"]["reason"], r["output"]) for r in rejected] == [
        ("unparseable", "Sure! A heap queue is a binary tree.")
    ] * 2
