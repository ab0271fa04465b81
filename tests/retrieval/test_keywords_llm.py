"""`--keywords llm`: ChatDoctor-style few-shot keywords from the real local LLM (`make llm`) in
front of a retriever, through `vertjax retrieve`; and the clear error without a server."""

from __future__ import annotations

import json

import pytest

from vertjax import cli
from vertjax.generators import local_server
from vertjax.retrieval import bm25, keywords


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("llm") / "server.log"
    with local_server.LocalLLMServer(n_ctx=1024, log_path=log) as s:
        yield s


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("index")
    passages = [
        {"id": "dumps", "title": "json.dumps", "text": "Serialize obj to a JSON formatted str."},
        {"id": "sleep", "title": "time.sleep", "text": "Suspend execution for the given seconds."},
    ]
    bm25.BM25Index.build(passages).save(out)
    return out


@pytest.mark.llm
def test_llm_keywords_come_from_the_real_server_and_feed_the_retriever(server, index, capsys):
    extractor = keywords.open_extractor(
        "llm", index_dir=index, base_url=server.base_url, model=server.model_name
    )
    (found,) = extractor(["How can I turn my dictionary into text that a web page can read?"])
    assert found and all(isinstance(k, str) and k for k in found)
    argv = ["retrieve", "--index", str(index), "--retriever", "bm25", "--json", "-k", "2"]
    argv += ["--keywords", "llm", "--keywords_base_url", server.base_url]
    argv += ["--keywords_model", server.model_name, "--question", "How do I pause my program?"]
    assert cli.main(argv) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(h["id"] in {"dumps", "sleep"} for h in hits)


def test_llm_keywords_without_a_server_exit_2_with_one_line(index, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    argv = ["retrieve", "--index", str(index), "--retriever", "bm25", "--question", "x"]
    assert cli.main([*argv, "--keywords", "llm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--keywords llm needs --keywords_base_url" in err and len(err.splitlines()) == 1
    assert cli.main([*argv, "--keywords"]) == 0  # bare: lexical, offline, as before
