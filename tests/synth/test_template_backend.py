"""The template generator: answers to the synthesis prompts from the KG, deterministic per seed."""

from __future__ import annotations

import pytest

from vertjax.synth import kg, prompts, template_backend


@pytest.fixture(scope="module")
def template_generator():
    return template_backend.TemplateGenerator(kg.extract_triples(["math", "json"]))


def test_template_generator_answers_prompts_from_the_kg(template_generator):
    g = template_generator
    ask = lambda name, **f: g.generate([prompts.render(name, **f)[0]], seed=1)[0]  # noqa: E731
    assert ask("self_instruct_classify", instruction="What does `math.gcd` do?") == "No"
    assert (
        ask(
            "self_instruct_classify",
            instruction="Is `math.gcd` a module, a class, a function or a method?",
        )
        == "Yes"
    )
    assert ask("self_instruct_input_first", instruction="What does `math.gcd` do?") == (
        f"Input: None\nOutput: {kg.first_sentence(__import__('math').gcd.__doc__)}"
    )
    assert ask(
        "self_instruct_output_first",
        instruction="Is `json.loads` a module, a class, a function or a method?",
    ) == ("Class label: function\nInput: None")
    assert ask("self_instruct_input_first", instruction="Paint me a sunset.") == ""
    assert g.generate(["not a synthesis prompt"])[0] == ""
    assert g.name == "template" and g.model.startswith("kg-templates-v1:")


def test_template_generator_is_deterministic_per_seed(template_generator):
    prompt = prompts.render("self_instruct_generate", examples="Task 1: Sort a list.", next=2)[0]
    a = template_generator.generate([prompt], seed=0)
    assert a == template_generator.generate([prompt], seed=0)
    assert a != template_generator.generate([prompt], seed=1)
