"""The OpenAI-compatible client against a local fake server: requests, retries, timeouts, errors."""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
import threading
import time

import pytest

from vertjax import errors
from vertjax.generators import openai_chat


class _FakeServer:
    """A chat-completions server on 127.0.0.1 whose behaviour each test scripts."""

    def __init__(self, script):
        self.script, self.requests = script, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                status, payload, delay = outer.script(len(outer.requests), body)
                time.sleep(delay)
                if isinstance(payload, list):
                    return self._events(payload)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _events(self, events):
                """Server-sent events: each bytes item written as it comes, a number is a pause;
                the end of the list closes the connection (no Content-Length)."""
                self.close_connection = True
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for event in events:
                        if isinstance(event, bytes):
                            self.wfile.write(event)
                            self.wfile.flush()
                        else:
                            time.sleep(event)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _completion(text):
    return {"choices": [{"message": {"role": "assistant", "content": text}}]}


@pytest.fixture
def serve():
    servers = []

    def start(script):
        servers.append(_FakeServer(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _client(server, **kw):
    kw = {"timeout": 2.0, "max_retries": 2, "backoff": 0.01, "concurrency": 3, **kw}
    return openai_chat.OpenAIChatGenerator(server.url, "fake-model", **kw)


def test_canned_completions_in_order_with_request_fields(serve, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    server = serve(lambda n, body: (200, _completion("echo: " + body["messages"][0]["content"]), 0))
    out = _client(server, api_key_env="FAKE_KEY").generate(
        [f"p{i}" for i in range(7)], max_tokens=32, temperature=0.5, seed=3
    )
    assert out == [f"echo: p{i}" for i in range(7)]
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "fake-model" and request["body"]["max_tokens"] == 32
    assert request["body"]["temperature"] == 0.5 and isinstance(request["body"]["seed"], int)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_transient_errors_then_succeeds(serve, status):
    server = serve(
        lambda n, body: (status, {"error": "busy"}, 0) if n <= 2 else (200, _completion("ok"), 0)
    )
    assert _client(server).generate(["p"], max_tokens=8, temperature=0, seed=0) == ["ok"]
    assert len(server.requests) == 3


def test_gives_up_after_bounded_retries_with_backoff(serve):
    server = serve(lambda n, body: (500, {"error": "down"}, 0))
    sleeps = []
    client = _client(server, max_retries=3, backoff=0.5, sleep=sleeps.append)
    with pytest.raises(errors.BackendError, match=r"no answer after 4 attempt\(s\).*HTTP 500"):
        client.generate(["p"], max_tokens=8, temperature=0, seed=0)
    assert sleeps == [0.5, 1.0, 2.0] and len(server.requests) == 4


def test_slow_server_times_out_within_bound(serve):
    server = serve(lambda n, body: (200, _completion("late"), 1.5))
    start = time.monotonic()
    with pytest.raises(errors.BackendError, match="timed out|TimeoutError"):
        _client(server, timeout=0.2, max_retries=1).generate(
            ["p"], max_tokens=8, temperature=0, seed=0
        )
    assert time.monotonic() - start < 1.4


def test_client_errors_fail_fast_with_a_hint(serve):
    server = serve(lambda n, body: (401, {"error": "bad key"}, 0))
    with pytest.raises(errors.BackendError, match=r"HTTP 401 \(is \$OPENAI_API_KEY set\?\)"):
        _client(server).generate(["p"], max_tokens=8, temperature=0, seed=0)
    assert len(server.requests) == 1
    bad = serve(lambda n, body: (200, b"<html>not json</html>", 0))
    with pytest.raises(errors.BackendError, match="not a chat completion response"):
        _client(bad).generate(["p"], max_tokens=8, temperature=0, seed=0)


def test_unreachable_server_is_a_backend_error():
    client = openai_chat.OpenAIChatGenerator(
        "http://127.0.0.1:9/v1", "m", timeout=0.5, max_retries=1, backoff=0.01
    )
    with pytest.raises(errors.BackendError, match="is the server running"):
        client.generate(["p"], max_tokens=8, temperature=0, seed=0)


def test_complete_reports_finish_reason_and_generate_keeps_the_cut_text(serve):
    reasons = {"a": "stop", "b": "length", "c": None}

    def script(n, body):
        prompt = body["messages"][0]["content"]
        choice = {"message": {"role": "assistant", "content": f"text {prompt}"}}
        if reasons[prompt]:
            choice["finish_reason"] = reasons[prompt]
        return 200, {"choices": [choice]}, 0

    client = _client(serve(script))
    done = client.complete(["a", "b", "c"], max_tokens=8, temperature=0, seed=0)
    assert [(c.text, c.finish_reason, c.truncated) for c in done] == [
        ("text a", "stop", False),
        ("text b", "length", True),
        ("text c", None, False),
    ]
    assert client.generate(["b"], max_tokens=8, temperature=0, seed=0) == ["text b"]


def _chunk(content=None, finish=None, **delta):
    """One `data:` event of a streamed chat completion."""
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def _stream(client, prompt="p"):
    return list(client.stream(prompt, max_tokens=8, temperature=0, seed=5))


def test_stream_yields_the_deltas_as_sent_with_the_finish_reason_last(serve):
    events = [
        b": a comment line, then an event type and an id\n",
        b"event: message\nid: 1\n" + _chunk("", role="assistant"),
        _chunk("Lists are "),
        b'data: {"choices": [{"delta": {"content":\ndata: "mutable [1]."}}]}\n\n',  # two lines
        _chunk(None, "stop"),
        b'data: {"choices": [], "usage": {"completion_tokens": 4}}\n\n',
        DONE,
    ]
    server = serve(lambda n, body: (200, events, 0))
    client = _client(server)
    deltas = _stream(client)
    assert [(d.text, d.finish_reason) for d in deltas] == [
        ("Lists are ", None),
        ("mutable [1].", None),
        ("", "stop"),
    ]
    body = server.requests[0]["body"]
    assert body["stream"] is True and body["messages"][0]["content"] == "p"
    plain = serve(lambda n, body: (200, _completion("x"), 0))
    client_plain = _client(plain)
    client_plain.complete(["p"], max_tokens=8, temperature=0, seed=5)
    assert body["seed"] == plain.requests[0]["body"]["seed"]  # same request as complete()


def test_stream_retries_until_the_server_starts_answering(serve):
    events = [_chunk("ok", "stop"), DONE]
    server = serve(lambda n, body: (503, {"error": "busy"}, 0) if n == 1 else (200, events, 0))
    assert "".join(d.text for d in _stream(_client(server))) == "ok"
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        ([b'data: {"error": {"message": "out of memory", "code": 500}}\n\n'], "failed after 6 "),
        ([b"data: {not json\n\n"], "not a chat completion chunk after 6 "),
        ([], "ended after 6 characters without \\[DONE\\]"),
        ([b'data: {"choices": [{"delta": {"cont'], "ended after 6 characters without"),
        ([1.0, DONE], "broke after 6 characters .*TimeoutError"),
    ],
)
def test_a_stream_failing_midway_is_one_backend_error_after_the_text_so_far(serve, tail, match):
    server = serve(lambda n, body: (200, [_chunk("Lists "), *tail], 0))
    got = []
    with pytest.raises(errors.BackendError, match=match):
        for delta in _client(server, timeout=0.3).stream("p", max_tokens=8, temperature=0, seed=0):
            got.append(delta.text)
    assert got == ["Lists "] and len(server.requests) == 1  # never retried once started


def test_stream_accepts_an_end_after_the_finish_reason_and_a_plain_json_reply(serve):
    server = serve(lambda n, body: (200, [_chunk("done", "length")], 0))
    [delta] = _stream(_client(server))
    assert delta.text == "done" and delta.truncated
    plain = serve(lambda n, body: (200, _completion("whole reply"), 0))
    assert [d.text for d in _stream(_client(plain))] == ["whole reply"]


class _TLSCutResponse:
    """An HTTPS stream whose connection fails after one delta the way TLS does (`ssl.SSLError`,
    an `OSError` that is neither a timeout nor a `ConnectionError`)."""

    def __init__(self):
        self.headers = http.client.HTTPMessage()
        self.headers["Content-Type"] = "text/event-stream"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __iter__(self):
        yield from _chunk("Lists ").splitlines(keepends=True)
        raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")


def test_a_tls_failure_midway_is_a_backend_error(monkeypatch):
    monkeypatch.setattr(openai_chat.urllib.request, "urlopen", lambda *a, **k: _TLSCutResponse())
    client = openai_chat.OpenAIChatGenerator("https://llm.example/v1", "m", max_retries=0)
    got = []
    with pytest.raises(errors.BackendError, match="broke after 6 characters .*SSLEOFError"):
        for delta in client.stream("p", max_tokens=8, temperature=0, seed=0):
            got.append(delta.text)
    assert got == ["Lists "]
