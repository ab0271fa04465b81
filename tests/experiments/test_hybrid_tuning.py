"""The hybrid-tuning experiment's data helpers and report (no training: that is the run itself)."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

from vertjax import errors

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "hybrid_tuning"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"hybrid_tuning_{name}", EXPERIMENT / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


instructions = _load("instructions")
report = _load("report")

WORDNET_CHUNK = "\n\n".join(
    [
        'cut off part of an entry; "first paragraph"',
        'able: having the necessary means or skill; "able to swim"; "able to program"',
        "common salt, table salt: white crystalline form of sodium chloride",
        "able: a second sense that must not replace the first one",
        "not an entry because it has no colon",
        "x: too short",
        'last: paragraph that chunking may have cut; "so it is skipped"',
    ]
)


def test_wordnet_entries_take_the_first_sense_and_skip_cut_paragraphs():
    entries = instructions.wordnet_entries([WORDNET_CHUNK])
    assert entries == {
        "able": ("having the necessary means or skill", "able to swim"),
        "common salt": ("white crystalline form of sodium chloride", None),
    }


def test_general_records_define_and_use_then_refusals(tmp_path):
    (tmp_path / "train.jsonl").write_text(
        json.dumps({"text": WORDNET_CHUNK}) + "\n", encoding="utf-8"
    )
    refusal = {"id": "r", "instruction": "Why is the sky blue?", "input": "", "output": "no"}
    records = instructions.general_records(pack_dir=tmp_path, lemmas=10, refusals=[refusal], seed=0)
    pairs = {(r["instruction"], r["output"], r["source"]) for r in records}
    assert ("Define the word 'able'.", "having the necessary means or skill", "wordnet") in pairs
    assert ("Use the word 'able' in a sentence.", "able to swim", "wordnet") in pairs
    assert ("Define the word 'common salt'.", "white crystalline form of sodium chloride",
            "wordnet") in pairs  # fmt: skip
    assert len(records) == 4 and records[-1]["source"] == "refusal"
    (tmp_path / "train.jsonl").write_text('{"text": "nothing here"}\n', encoding="utf-8")
    with pytest.raises(errors.DataError, match="no WordNet entries"):
        instructions.general_records(pack_dir=tmp_path, lemmas=10, refusals=[], seed=0)


def _record(i: int, instruction: str, **meta) -> dict:
    return {"id": f"id{i}", "instruction": instruction, "input": "", "output": "o", "meta": meta}


def test_split_keeps_groups_together_and_drops_duplicates():
    records = [_record(i, f"What does `m.f{i % 7}` do? variant {i}") for i in range(70)]
    records += [_record(100 + i, f"Question {i} about it", entity=f"e{i % 5}") for i in range(40)]
    records.append(_record(999, records[0]["instruction"]))  # duplicate (instruction, input)
    train, heldout = instructions.split_records(records, heldout_fraction=0.3, seed=1)
    assert len(train) + len(heldout) == len(records) - 1
    train_groups = {instructions.group_of(r) for r in train}
    held_groups = {instructions.group_of(r) for r in heldout}
    assert not train_groups & held_groups
    assert instructions.group_of(records[0]) == "name:m.f0"
    assert instructions.group_of(records[70]) == "entity:e0"
    assert instructions.split_records(records, heldout_fraction=0.3, seed=1) == (train, heldout)
    with pytest.raises(errors.ConfigError):
        instructions.split_records(records, heldout_fraction=1.0, seed=1)
    with pytest.raises(errors.DataError, match="empty side"):
        instructions.split_records(records[:1], heldout_fraction=0.5, seed=1)


def test_eval_subset_takes_sources_round_robin():
    records = [dict(_record(i, "q"), source="big") for i in range(10)]
    records += [dict(_record(50 + i, "q"), source="small") for i in range(2)]
    chosen = instructions.eval_subset(records, 6)
    assert [r["source"] for r in chosen].count("small") == 2
    assert len(chosen) == 6
    assert len(instructions.eval_subset(records, 100)) == 12


def test_report_markdown_lists_every_model_and_the_interval():
    ppl = {"domain": {"ppl": 12.5}, "general": {"ppl": 30.25}}

    def ins(score):
        by_group = {"self_kg": {"rouge_l": score, "count": 3}}
        return {"domain": {"rouge_l": score, "count": 3, "by_group": by_group},
                "general": {"rouge_l": score / 2, "count": 4, "by_group": {}}}  # fmt: skip

    results = {
        "settings": {"eval_examples": 8, "max_decode_length": 16},
        "stages": {
            name: {"steps": 10, "target_tokens": 1000}
            for name in ("general", "a_stage1", "a_stage2", "b_hybrid")
        },
        "eval": {
            "general": {"ppl": ppl, "instructions": ins(0.0)},
            "a_stage1": {"ppl": ppl, "instructions": {}},
            "A": {"ppl": ppl, "instructions": ins(0.5)},
            "B": {"ppl": ppl, "instructions": ins(0.25)},
        },
        "b_minus_a": {"domain": {"mean": -0.25, "ci95": [-0.4, -0.1], "records": 3}},
        "hybrid_design": {"steps": 19, "token_budget": 2000, "rates": {"t": 1.0}},
    }
    text = report.markdown(results)
    assert (
        "| A: two-stage (pretrain, then instructions) | 20 | 2,000 | 12.50 | 30.25 | 0.500 " in text
    )
    assert (
        "| A after stage 1 (continued pretraining) | 10 | 1,000 | 12.50 | 30.25 | - | - |" in text
    )
    assert "B - A, domain ROUGE-L: -0.250" in text and "-0.400 .. -0.100" in text
    assert "0.250 (n=3)" in text


run = _load("run")
TINY_GIN = str(EXPERIMENT / "tiny.gin")


def test_settings_bound_in_the_gin_and_on_the_command_line_reach_the_experiment(tmp_path):
    base = run.Experiment(gin_files=[TINY_GIN], bindings=[], out=tmp_path / "a").s
    exp = run.Experiment(
        gin_files=[TINY_GIN], bindings=["HybridSettings.stage1_steps=7"], out=tmp_path / "b"
    )
    assert exp.s["stage1_steps"] == 7 != base["stage1_steps"]
    assert {k: v for k, v in exp.s.items() if k != "stage1_steps"} == {
        k: v for k, v in base.items() if k != "stage1_steps"
    }
    assert isinstance(base["stage2_steps"], int) and base["domain_pack"]


@pytest.mark.parametrize(
    "binding, names",
    [
        ("HybridSettings.stage1_step=100", ["stage1_step"]),  # a misspelt field
        ("HYBRID_STAGE1_STEPS=100", ["HYBRID_STAGE1_STEPS"]),  # the old loose macro
        ("HybridSettings.stage1_steps='many'", ["HybridSettings.stage1_steps", "int"]),
        ("HybridSettings.domain_rate=1.5", ["HybridSettings.domain_rate", "[0, 1]"]),
        ("HybridSettings.heldout_fraction=0", ["HybridSettings.heldout_fraction"]),
        ("HybridSettings.eval_batch_size=0", ["HybridSettings.eval_batch_size"]),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2_before_anything_runs(
    tmp_path, capsys, binding, names
):
    out = tmp_path / "out"
    code = run.main([f"--gin_file={TINY_GIN}", f"--out={out}", f"--gin.{binding}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert all(name in err for name in names), err
    assert not out.exists()


def test_full_scale_requires_the_general_source(tmp_path):
    with pytest.raises(errors.ConfigError, match=r"HybridSettings\.general_source is required"):
        run.Experiment(gin_files=[str(EXPERIMENT / "full.gin")], bindings=[], out=tmp_path)
