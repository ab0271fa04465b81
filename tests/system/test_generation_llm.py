"""The LLM answer generator against the real local server (`make llm`, SmolLM2-135M-Instruct):
the prompt it sends, what it parses from the real reply, the assistant's per-sentence NLI
verdicts and post-processing policy applied to its sentences as to the extractive generator's,
and `vertjax serve` streaming its sentences to the official `openai` client.

One server for the module; every request asks for few tokens.
"""

from __future__ import annotations

import threading

import openai
import pytest

from vertjax import io_utils
from vertjax.consistency import citations
from vertjax.generators import local_server, openai_chat
from vertjax.retrieval.types import Hit
from vertjax.system import build, generation, server

PASSAGES = [
    Hit(
        1,
        "json",
        "json",
        2.0,
        "json.dumps serializes obj to a JSON formatted str. If sort_keys "
        "is true, the output of dictionaries will be sorted by key.",
    ),
    Hit(
        2,
        "io",
        "io",
        3.0,
        "For reading lines from a file, you can loop over the file object. "
        "This is memory efficient, fast, and leads to simple code.",
    ),
]


class _Recording:
    """Wraps the real backend and keeps the prompts and raw completions."""

    def __init__(self, backend: openai_chat.OpenAIChatGenerator):
        self.backend, self.prompts, self.replies = backend, [], []

    def complete(self, prompts, **options):
        done = self.backend.complete(prompts, **options)
        self.prompts += list(prompts)
        self.replies += done
        return done

    def stream(self, prompt, **options):
        self.prompts.append(prompt)
        deltas = []
        for delta in self.backend.stream(prompt, **options):
            deltas.append(delta)
            yield delta
        text = "".join(d.text for d in deltas)
        self.replies.append(openai_chat.Completion(text, deltas[-1].finish_reason))


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with local_server.LocalLLMServer(n_ctx=1024, log_path=log) as server:
        yield _Recording(
            openai_chat.OpenAIChatGenerator(
                server.base_url, server.model_name, max_retries=0, concurrency=1
            )
        )


@pytest.mark.llm
def test_real_reply_is_parsed_into_sentences_with_valid_citations(backend):
    gen = generation.BackendAnswerGenerator(backend, max_tokens=48, domain="Python")
    sentences = gen.generate("How do I read a file line by line?", PASSAGES)
    prompt, reply = backend.prompts[-1], backend.replies[-1]
    # the most relevant passage (last) sits right before the question
    assert (
        prompt.index("[2] io |")
        < prompt.index("Question: How do I read")
        > prompt.index("[1] json |")
    )
    assert gen.last_text == reply.text and reply.text.strip()
    cleaned = generation.answer_text(reply.text, truncated=reply.truncated)
    for s in sentences:
        assert s["text"] and "Question:" not in s["text"] and s["text"] in " ".join(cleaned.split())
        assert all(c in (1, 2) for c in s["citations"])  # out-of-range markers are dropped


DOCS = [
    (
        "io",
        "For reading lines from a file, you can loop over the file object. This is memory "
        "efficient, fast, and leads to simple code. f.readline() reads a single line from the file.",
    ),
    (
        "json",
        "json.dumps serializes obj to a JSON formatted str. If sort_keys is true, the output "
        "of dictionaries will be sorted by key.",
    ),
    (
        "tempfile",
        "TemporaryDirectory creates a temporary directory. On completion of the context "
        "or destruction of the object the directory and its contents are removed.",
    ),
    (
        "shutil",
        "shutil.copytree recursively copies an entire directory tree rooted at src to a "
        "directory named dst and returns the destination directory.",
    ),
    (
        "fileinput",
        "The fileinput module iterates over lines from multiple input streams. The "
        "function nextfile() closes the current file so that the next iteration reads the next file.",
    ),
]


def _pack(root):
    rows = [
        {"id": f"p{i}", "doc_id": f"doc{i}", "title": title, "text": text}
        for i, (title, text) in enumerate(DOCS)
    ]
    root.mkdir(parents=True)
    io_utils.write_jsonl(root / "train.jsonl", rows)
    for split in ("validation", "test"):
        io_utils.write_jsonl(root / f"{split}.jsonl", [])
    io_utils.atomic_write_json(root / "manifest.json", {"pack": "tiny-docs"})
    return root


@pytest.mark.llm
@pytest.mark.parametrize("policy", ["flag", "drop"])
def test_assistant_checks_and_postprocesses_the_llm_sentences(backend, tmp_path, policy):
    system = build.offline_assistant(
        index_dir=tmp_path / "index", pack_dir=_pack(tmp_path / "pack"), postprocess_policy=policy
    )
    system.generator = generation.BackendAnswerGenerator(backend, max_tokens=48, domain="Python")
    result = system.answer("How do I read a file line by line?")
    assert result.generator == "backend:_Recording" and result.consistency_policy == policy
    last = backend.replies[-1]
    written = citations.parse_answer(generation.answer_text(last.text, truncated=last.truncated))
    assert written["sentences"], "the LLM wrote no answer sentence to check"
    # every sentence the assistant kept carries the judge's verdict
    for s in result.sentences:
        assert s.status in ("supported", "unsupported", "contradicted")
        assert s.p_entailment is not None and s.supported == (s.status == "supported")
    failing = len(written["sentences"]) - sum(s.supported for s in result.sentences)
    if policy == "drop":
        assert all(s.supported for s in result.sentences)
        assert result.removed_sentences == failing
    else:
        assert result.removed_sentences == 0
        assert len(result.sentences) == len(written["sentences"])


@pytest.mark.llm
def test_vertjax_serve_streams_the_llm_answer_sentence_by_sentence(backend, tmp_path, monkeypatch):
    system = build.offline_assistant(
        index_dir=tmp_path / "index", pack_dir=_pack(tmp_path / "pack"), postprocess_policy="flag"
    )
    system.generator = generation.BackendAnswerGenerator(backend, max_tokens=48, domain="Python")
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    httpd = server.make_server(system, server.ServerConfig(port=0))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    host, port = httpd.server_address[:2]
    client = openai.OpenAI(base_url=f"http://{host}:{port}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "How do I read a file line by line?"}]
    try:
        chunks = list(client.chat.completions.create(model="v", messages=messages, stream=True))
        streamed = backend.replies[-1]
        plain = client.chat.completions.create(model="v", messages=messages)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert backend.replies[-1].text == streamed.text  # greedy: the same reply streamed or not
    result = chunks[-1].vertjax
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert "".join(pieces) == result["answer"] == plain.choices[0].message.content
    assert result["sentences"], "the LLM wrote no answer sentence"
    # one piece per judged sentence (each with its verdict), then the trust line and sources
    assert len(pieces) == len(result["sentences"]) + 1 and pieces[-1].startswith("\nTrust:")
    for piece, sentence in zip(pieces, result["sentences"], strict=False):
        assert sentence["status"] in ("supported", "unsupported", "contradicted")
        assert piece.endswith("[unsupported]") == (sentence["status"] != "supported")
