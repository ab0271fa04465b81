"""Generated refusals (`refusals.run_refusals`, `vertjax synth refusal-questions`): new
out-of-domain questions, their filters, off-format or cut-off output, resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

from vertjax import cli, errors, io_utils
from vertjax.generators import openai_chat
from vertjax.synth import refusals, report, template_backend


class _Scripted:
    """Returns one canned completion per prompt, flagged as cut off at max_tokens when `cut`."""

    name, model = "scripted", "scripted-v0"

    def __init__(self, completion, cut=False):
        self.completion, self.cut = completion, cut
        self.calls = 0

    def generate(self, prompts, *, max_tokens, temperature, seed):
        self.calls += 1
        return [self.completion] * len(prompts)

    def complete(self, prompts, **kwargs):
        finish = "length" if self.cut else "stop"
        return [openai_chat.Completion(t, finish) for t in self.generate(prompts, **kwargs)]


def _rejected(job):
    return [
        (r["instruction"], r["meta"]["reason"])
        for r in io_utils.read_jsonl(job / report.REJECTED_FILE)
    ]


ONE_ROUND = refusals.RefusalConfig(max_rounds=1, prompts_per_round=1)


def test_template_backend_grows_new_questions_with_the_fixed_refusal(tmp_path):
    config = refusals.RefusalConfig(max_rounds=3, target=100)
    totals = refusals.run_refusals(template_backend.TemplateGenerator([]), tmp_path, config=config)
    kept = list(io_utils.read_jsonl(tmp_path / report.KEPT_FILE))
    assert totals["kept"] == len(kept) > 0 and totals["rounds_run"] == 3
    questions = [r["instruction"] for r in kept]
    assert not set(questions) & set(refusals.OUT_OF_DOMAIN_QUESTIONS)
    answer = refusals.DEFAULT_REFUSAL.format(domain=refusals.DOMAIN)
    assert {r["output"] for r in kept} == {answer} and {r["source"] for r in kept} == {"template"}
    # the template fills fixed frames: most of what it writes is too close to a kept question
    reasons = {reason for _, reason in _rejected(tmp_path)}
    assert "rouge_similar" in reasons
    # a finished job resumes without asking anything
    idle = _Scripted("never asked")
    assert refusals.run_refusals(idle, tmp_path, config=config)["rounds_run"] == 0
    assert idle.calls == 0


@pytest.mark.parametrize(
    ("completion", "cut", "kept", "reasons"),
    [
        ("1. Which bird lays the largest egg?", False, 1, []),
        ("Sure, I can help with that!", False, 0, ["questions_unparseable"]),
        (" \n", False, 0, ["questions_empty"]),
        ("1. How do I import a module in Python?", False, 0, ["in_domain"]),
        ("1. What does `os.walk` return?", False, 0, ["in_domain"]),
        ("1. Yes it can be.", False, 0, ["not_a_question"]),
        ("1. Why?", False, 0, ["too_short"]),
        ("1. What is the capital of Australia?", False, 0, ["duplicate"]),
        ("1. What is the capital city of Australia?", False, 0, ["rouge_similar"]),
        ("1. Which bird lays the largest egg?\n2. How far can a", True, 1, ["truncated"]),
        ("1. Which bird lays the largest egg?\n2.", True, 1, []),
        ("1. Which bird lays the largest egg?\n\nI hope these", True, 1, []),
    ],
    ids=[
        "kept",
        "off-format",
        "blank",
        "names-the-domain",
        "code",
        "not-a-question",
        "short",
        "shipped",
        "near-shipped",
        "cut-off",
        "cut-after-the-last-question",
        "cut-after-the-list",
    ],
)
def test_filters_and_off_format_output_are_counted(tmp_path, completion, cut, kept, reasons):
    totals = refusals.run_refusals(_Scripted(completion, cut), tmp_path, config=ONE_ROUND)
    assert totals["kept"] == kept
    assert [reason for _, reason in _rejected(tmp_path)] == reasons


def test_cli_grows_refusal_questions_and_resumes(tmp_path, capsys):
    out = tmp_path / "job"
    args = ["synth", "refusal-questions", "--out", str(out), "--max_rounds", "2"]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rounds_run"] == 2 and summary["kept"] > 0
    assert (out / report.REPORT_MD).is_file()
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["rounds_run"] == 0


def test_another_domain_needs_its_own_words_for_the_in_domain_filter(tmp_path, capsys):
    with pytest.raises(errors.ConfigError, match="domain_terms"):
        refusals.RefusalConfig(domain="cooking")
    args = ["synth", "refusal-questions", "--out", str(tmp_path / "job"), "--max_rounds", "1"]
    assert cli.main([*args, "--domain", "cooking"]) == 2
    assert "--domain_terms" in capsys.readouterr().err
    config = dataclasses.replace(ONE_ROUND, domain="cooking", domain_terms=("cook", "recipe"))
    totals = refusals.run_refusals(_Scripted("1. How do I cook rice?"), tmp_path, config=config)
    assert totals["kept"] == 0 and _rejected(tmp_path) == [("How do I cook rice?", "in_domain")]
    assert cli.main([*args, "--domain", "cooking", "--domain_terms", "cook, recipe"]) == 0
