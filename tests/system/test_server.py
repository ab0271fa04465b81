"""`vertjax serve`'s HTTP server on 127.0.0.1: concurrency, limits, validation, auth, binding."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import threading
import time

import pytest
from system_helpers import build_index, make_assistant

from vertjax import errors
from vertjax.system import server

KEY = "s3cret-token"


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    return make_assistant(build_index(tmp_path_factory.mktemp("index")))


def _serve(assistant, **options):
    httpd = server.make_server(assistant, server.ServerConfig(port=0, **options))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd


@pytest.fixture
def running(bot, monkeypatch):
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    httpd = _serve(bot, max_body_bytes=2048)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _request(httpd, method, path, body=None, headers=None, raw=None):
    conn = http.client.HTTPConnection(*httpd.server_address[:2], timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(
        method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    response = conn.getresponse()
    payload = json.loads(response.read() or b"null")
    conn.close()
    return response.status, payload


def test_answer_and_chat_endpoints(running):
    status, out = _request(
        running, "POST", "/v1/answer", {"question": "What does the cache flush?"}
    )
    assert status == 200 and out["sentences"] and out["timings_ms"]["total"] > 0
    status, out = _request(
        running,
        "POST",
        "/v1/chat/completions",
        {
            "model": "x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "Tell me about the `bloom filter`."},
                {"role": "assistant", "content": "..."},
                {"role": "user", "content": "How does it behave under heavy load?"},
            ],
        },
    )
    assert status == 200 and out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["choices"][0]["message"]["content"] == out["vertjax"]["answer"]
    assert out["vertjax"]["rewritten_question"] == "How does bloom filter behave under heavy load?"
    assert _request(running, "GET", "/health") == (200, {"status": "ok"})


def test_concurrent_requests_all_answered(running):
    questions = [f"What does the {w} write?" for w in ("cache", "parser", "server", "index")] * 4
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda q: _request(running, "POST", "/v1/answer", {"question": q}), questions)
        )
    assert [s for s, _ in results] == [200] * len(questions)
    assert [out["question"] for _, out in results] == questions


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"{not json", 400),
        (b"\xff\xfe", 400),
        (json.dumps([1, 2]).encode(), 400),
        (json.dumps({"question": ""}).encode(), 400),
        (json.dumps({"question": "q", "history": [3]}).encode(), 400),
        (b"x" * 4096, 413),
    ],
)
def test_malformed_and_oversized_bodies(running, raw, status):
    code, out = _request(running, "POST", "/v1/answer", raw=raw)
    assert code == status and out["error"]["code"] == status


def test_chat_validation_and_unknown_paths(running):
    assert _request(running, "POST", "/v1/chat/completions", {"messages": []})[0] == 400
    bad_role = {"messages": [{"role": "robot", "content": "hi"}]}
    assert _request(running, "POST", "/v1/chat/completions", bad_role)[0] == 400
    stream = {"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}
    assert _request(running, "POST", "/v1/chat/completions", stream)[0] == 400
    assert _request(running, "POST", "/v1/other", {"question": "q"})[0] == 404


def test_bearer_token_required_when_a_key_is_set(bot, monkeypatch):
    monkeypatch.setenv(server.API_KEY_ENV, KEY)
    httpd = _serve(bot)
    try:
        body = {"question": "What does the cache flush?"}
        assert _request(httpd, "POST", "/v1/answer", body)[0] == 401
        wrong = {"Authorization": "Bearer nope"}
        assert _request(httpd, "POST", "/v1/answer", body, headers=wrong)[0] == 401
        basic = {"Authorization": f"Basic {KEY}"}
        assert _request(httpd, "POST", "/v1/answer", body, headers=basic)[0] == 401
        good = {"Authorization": f"Bearer {KEY}"}
        assert _request(httpd, "POST", "/v1/answer", body, headers=good)[0] == 200
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_refuses_non_loopback_bind_without_a_key(bot, monkeypatch):
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    with pytest.raises(errors.ConfigError, match="without an API key"):
        server.make_server(bot, server.ServerConfig(host="0.0.0.0", port=0))
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1")
    assert server.is_loopback("localhost") and not server.is_loopback("example.org")
    monkeypatch.setenv(server.API_KEY_ENV, KEY)
    httpd = server.make_server(bot, server.ServerConfig(host="0.0.0.0", port=0))
    assert httpd.api_key == KEY
    httpd.server_close()


class _Slow:
    def answer(self, question, history):
        time.sleep(2.0)


def test_slow_answers_time_out_with_504(monkeypatch):
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    httpd = _serve(_Slow(), request_timeout=0.2)
    try:
        assert _request(httpd, "POST", "/v1/answer", {"question": "q"})[0] == 504
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_api_responses_cite_the_source_file_of_every_passage(tmp_path, monkeypatch):
    """Both endpoints return each selected passage's doc_id, source path and url (issue 14.5)."""
    from conftest import tiny_corpus_records

    from vertjax.retrieval import bm25

    records = [
        r | {"source": f"manual/{r['doc_id']}.html", "url": f"https://x.org/{r['doc_id']}.html"}
        for r in tiny_corpus_records()
    ]
    bm25.BM25Index.build(records).save(tmp_path)
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    httpd = _serve(make_assistant(tmp_path))
    try:
        status, out = _request(
            httpd, "POST", "/v1/answer", {"question": "What does the cache flush?"}
        )
        body = {
            "model": "x",
            "messages": [{"role": "user", "content": "What does the cache flush?"}],
        }
        chat_status, chat = _request(httpd, "POST", "/v1/chat/completions", body)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert status == chat_status == 200
    for result in (out, chat["vertjax"]):
        assert result["selected"] and result["sentences"]
        for passage in result["selected"] + result["retrieved"]:
            doc = passage["doc_id"]
            assert doc and passage["source"] == f"manual/{doc}.html"
            assert passage["url"] == f"https://x.org/{doc}.html"
        cited = result["selected"][result["sentences"][0]["citations"][0] - 1]
        assert f"https://x.org/{cited['doc_id']}.html" in result["answer"]
