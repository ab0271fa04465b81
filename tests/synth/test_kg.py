"""The stdlib knowledge graph: triples match `inspect`, and derived instructions are correct."""

from __future__ import annotations

import inspect
import json
import math

import pytest

from vertjax import errors
from vertjax.synth import kg


@pytest.fixture(scope="module")
def triples():
    return kg.extract_triples(["json", "math", "collections"])


def _has(triples, s, r, o):
    return {"subject": s, "relation": r, "object": o} in triples


def test_extracted_triples_match_inspect(triples):
    assert _has(triples, "math", "has_function", "math.gcd")
    assert _has(triples, "math.gcd", "is_a", "function")
    assert _has(triples, "json", "has_class", "json.JSONDecoder")
    assert _has(triples, "json.JSONDecoder", "has_method", "json.JSONDecoder.decode")
    assert _has(triples, "collections.OrderedDict", "inherits_from", "builtins.dict")
    params = list(inspect.signature(json.dumps).parameters)
    got = [
        t["object"]
        for t in triples
        if t["subject"] == "json.dumps" and t["relation"] == "has_parameter"
    ]
    assert got == [p if p != "kw" else "**kw" for p in params]
    assert _has(triples, "json.dumps", "has_default", "indent=None")
    assert _has(triples, "json.dumps", "raises", "TypeError")
    first = math.isqrt.__doc__.strip().split("\n\n")[0].replace("\n", " ").split(". ")[0]
    assert _has(triples, "math.isqrt", "first_sentence", first.rstrip(".") + ".")
    assert all(t["relation"] in kg.RELATIONS for t in triples)


def test_extraction_is_deterministic_and_unknown_module_is_an_error(triples):
    assert kg.extract_triples(["json", "math", "collections"]) == triples
    with pytest.raises(errors.ConfigError, match="no_such_module_xyz"):
        kg.extract_triples(["no_such_module_xyz"])


def test_first_sentence_skips_signature_lines():
    assert kg.first_sentence("f(x, y) -> int\n\nAdd two numbers. Then more.") == "Add two numbers."
    assert kg.first_sentence("") == ""


def test_facts_render_and_parse_round_trip(triples):
    facts = kg.entity_facts(triples)["json.dumps"]
    assert kg.parse_facts(kg.render_facts(facts)) == [(r, " ".join(o.split())) for r, o in facts]


def test_entity_instructions_answer_from_the_facts(triples):
    facts = kg.entity_facts(triples)
    items = {i.instruction: i for i in kg.entity_instructions("math.gcd", facts["math.gcd"])}
    assert items["What does `math.gcd` do?"].output == kg.first_sentence(math.gcd.__doc__)
    assert items["Is `math.gcd` a module, a class, a function or a method?"].output == "function"
    assert items["Is `math.gcd` a module, a class, a function or a method?"].is_classification
    dumps = {i.instruction: i for i in kg.entity_instructions("json.dumps", facts["json.dumps"])}
    assert dumps["What is the default value of the `indent` parameter of `json.dumps`?"].output == (
        "`indent` defaults to `None`."
    )
    labels = [i.output for i in dumps.values() if i.family == "parameters" and i.is_classification]
    assert sorted(labels) == ["no", "yes"]


def test_load_triples_names_the_bad_line(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [
        {"subject": "a", "relation": "is_a", "object": "module"},
        {"subject": "b", "relation": "", "object": "x"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(errors.DataError, match=r"t.jsonl.*triple 2"):
        kg.load_triples(path)
    path.write_text('{"subject": "a"}\n')
    with pytest.raises(errors.DataError, match=r"t.jsonl:1: missing key"):
        kg.load_triples(path)


@pytest.mark.parametrize("raised", [ImportError("no"), SystemExit(1)])
def test_a_module_that_cannot_be_imported_is_a_config_error(monkeypatch, raised):
    def fail(name):
        raise raised

    monkeypatch.setattr(kg.importlib, "import_module", fail)
    with pytest.raises(errors.ConfigError, match="cannot import module 'json'"):
        kg.module_triples("json")


def test_ctrl_c_during_an_import_stops_the_job(monkeypatch):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(kg.importlib, "import_module", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kg.module_triples("json")
