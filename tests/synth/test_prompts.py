"""Prompt templates: discovered from package data, rendered, and parsed back."""

from __future__ import annotations

import pathlib

import pytest

from vertjax import errors
from vertjax.synth import prompts

EXPECTED = (
    "self_instruct_generate",
    "self_instruct_classify",
    "self_instruct_output_first",
    "self_instruct_input_first",
    "self_instruct_dialogue",
    "self_qa_questions",
    "self_qa_answer",
    "self_kg",
    "refusal_questions",
)


def test_templates_live_where_setup_package_data_ships_them():
    folder = pathlib.Path(prompts.__file__).parents[1] / "resources" / "synth" / "templates"
    # setup.py ships vertjax/resources/**/*: every template must sit under that folder.
    assert sorted(p.name for p in folder.glob("*.txt")) == sorted(f"{n}.v1.txt" for n in EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_render_then_parse_recovers_template_and_fields(name):
    template = prompts.get_template(name)
    fields = {
        f: f"value of {f}\nwith a second line: Task 3: and Answer: inside" for f in template.fields
    }
    if "next" in fields:
        fields["next"] = "9"
    text, rendered_with = prompts.render(name, **fields)
    assert rendered_with.id == f"{name}.v1" and len(rendered_with.sha256) == 16
    assert "$" not in text
    parsed = prompts.parse(text)
    assert parsed is not None
    assert parsed[0].id == template.id
    assert parsed[1] == fields


def test_parse_rejects_foreign_text_and_render_names_missing_fields():
    assert prompts.parse("Tell me a joke.") is None
    with pytest.raises(errors.ConfigError, match="missing field"):
        prompts.render("self_qa_answer", title="t", text="x")
    with pytest.raises(errors.ConfigError, match="unknown prompt template"):
        prompts.get_template("no_such_template")
