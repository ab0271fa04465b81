"""The hostile probe's HTTP cases (issue 15, findings 3-6, 10, 11) against `vertjax serve`'s
server on 127.0.0.1: every answer is a JSON response, no request leaks into the next one, slow
and excess clients are cut off with a status, and no server-side path reaches a client."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import re
import socket
import time

import pytest
from reliability_helpers import http_request, make_bot, raw_exchange, request, serving

from vertjax.retrieval import store
from vertjax.system import server

KEY = "s3cret-token"
QUESTION = {"question": "What does the cache flush?"}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="module")
def bot(index_dir):
    return make_bot(index_dir)


@pytest.fixture
def keyless(monkeypatch):
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)


def _statuses(data: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


@pytest.mark.parametrize("path", ["/v1/answer", "/v1/nowhere"])
def test_unread_body_after_401_or_404_is_not_a_second_request(bot, monkeypatch, path):
    """Finding 3: an unauthenticated POST whose body is a complete authenticated request got
    401, then 200 for the smuggled request on the same keep-alive connection."""
    monkeypatch.setenv(server.API_KEY_ENV, KEY)
    smuggled = http_request(
        "POST", "/v1/answer", json.dumps(QUESTION).encode(), Authorization=f"Bearer {KEY}"
    )
    with serving(bot) as httpd:
        conn = http.client.HTTPConnection(*httpd.server_address[:2], timeout=10)
        conn.request("POST", path, body=smuggled, headers={"Content-Type": "application/json"})
        first = conn.getresponse()
        assert first.status in (401, 404) and json.loads(first.read())["error"]
        # the next request on this connection (or a new one, if the server closed it) is answered
        conn.request("GET", "/health", headers={"Authorization": f"Bearer {KEY}"})
        second = conn.getresponse()
        assert (second.status, json.loads(second.read())) == (200, {"status": "ok"})
        conn.close()


def test_get_with_a_body_does_not_desync(bot, keyless):
    smuggled = http_request("POST", "/v1/answer", json.dumps(QUESTION).encode())
    data = http_request("GET", "/nowhere", smuggled) + http_request("GET", "/health")
    with serving(bot) as httpd:
        reply = raw_exchange(httpd, data)
    assert _statuses(reply) == [404, 200] and reply.endswith(b'{"status": "ok"}')


@pytest.mark.parametrize(
    "raw",
    [
        b'{"question": "\\ud800 what?"}',  # lone surrogate: UnicodeEncodeError when echoed
        b"[" * 30_000,  # RecursionError
        b'{"question": "q", "n": ' + b"9" * 5_000 + b"}",  # int beyond the digit limit
        b'{"question": "q", "history": [{"role": "user", "content": "\\udfff"}]}',
    ],
    ids=["surrogate", "deep-nesting", "huge-int", "surrogate-in-history"],
)
def test_hostile_json_gets_a_json_400(bot, keyless, raw):
    """Finding 4: these closed the connection with 0 bytes."""
    with serving(bot, max_body_bytes=64 * 1024) as httpd:
        status, out = request(httpd, "POST", "/v1/answer", raw=raw)
        assert status == 400 and out["error"]["code"] == 400
        assert request(httpd, "GET", "/health")[0] == 200


def test_protocol_errors_are_json(bot, keyless):
    with serving(bot) as httpd:
        for data, status in [
            (b"BREW /pot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
            (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
            (b"GET / HTTP/9.9\r\n\r\n", 505),
        ]:
            reply = raw_exchange(httpd, data)
            head, _, body = reply.partition(b"\r\n\r\n")
            assert _statuses(head) == [status]
            assert json.loads(body)["error"]["code"] == status


def test_every_answering_exception_is_a_json_500(keyless):
    class Broken:
        def answer(self, question, history):
            raise KeyError("/secret/path")

    with serving(Broken()) as httpd:
        status, out = request(httpd, "POST", "/v1/answer", QUESTION)
    assert status == 500 and "/secret" not in json.dumps(out)


def test_parallel_burst_is_answered_not_reset(bot, keyless):
    """Finding 5: 64 parallel requests saw 3-25 % connection resets (listen backlog 5)."""
    with serving(bot) as httpd:
        assert httpd.request_queue_size >= 64

        def one(_):
            return request(httpd, "POST", "/v1/answer", QUESTION, headers={"Connection": "close"})

        for _ in range(2):
            with concurrent.futures.ThreadPoolExecutor(64) as pool:
                statuses = [s for s, _ in pool.map(one, range(64))]
            assert statuses == [200] * 64


def test_connections_beyond_the_pool_get_503(bot, keyless):
    with serving(bot, max_connections=2, read_timeout=5.0) as httpd:
        idle = [socket.create_connection(httpd.server_address[:2]) for _ in range(2)]
        try:
            time.sleep(0.3)  # both accepted and holding a connection thread
            status, out = request(httpd, "POST", "/v1/answer", QUESTION)
            assert status == 503 and out["error"]["code"] == 503
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while request(httpd, "GET", "/health")[0] != 200:  # slots come back
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _cut_after(httpd, payload: bytes, *, every: float, limit: float) -> float | None:
    """Trickles `payload` one byte per `every` s; seconds until the server cut us, or None."""
    start = time.monotonic()
    with socket.create_connection(httpd.server_address[:2], timeout=limit) as sock:
        sock.settimeout(every)
        for byte in payload:
            if time.monotonic() - start > limit:
                return None
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    return time.monotonic() - start
                return time.monotonic() - start  # a response (408) is a cut too
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - start
    return None


def test_slow_trickle_clients_are_cut_at_the_deadline(bot, keyless):
    """Finding 6: one byte every few seconds was never cut off (idle timeout only)."""
    head = b"POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200
    body = json.dumps(QUESTION).encode()
    slow_body = (
        f"POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with serving(bot, request_deadline=1.0, read_timeout=5.0) as httpd:
        cut = _cut_after(httpd, head, every=0.1, limit=6.0)
        assert cut is not None and cut < 3.0
        with socket.create_connection(httpd.server_address[:2], timeout=5) as sock:
            sock.sendall(slow_body)
            start = time.monotonic()
            reply = b""
            for byte in body:
                try:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.1)
                except OSError:
                    break
                sock.settimeout(0.01)
                try:
                    reply += sock.recv(4096)
                except TimeoutError:
                    continue
                if reply:
                    break
            assert time.monotonic() - start < 3.0 and _statuses(reply) == [408]


def test_damaged_passages_under_a_running_server_are_a_503_without_paths(keyless, tmp_path):
    """Finding 10: this was a 400 whose message held the passages file's absolute path."""
    bot = make_bot(tmp_path / "index")
    passages = tmp_path / "index" / store.PASSAGES_FILE
    with serving(bot) as httpd:
        assert request(httpd, "POST", "/v1/answer", QUESTION)[0] == 200
        passages.write_bytes(b"\x00garbage" * (passages.stat().st_size // 8 + 1))
        status, out = request(httpd, "POST", "/v1/answer", QUESTION)
    assert status == 503 and str(tmp_path) not in json.dumps(out)


CHAT = "/v1/chat/completions"


def test_openai_request_shapes_are_accepted(bot, keyless):
    """Finding 11: content-part arrays, `developer`, assistant tool-call turns got 400."""
    messages = [
        {"role": "developer", "content": "Answer with citations."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Tell me about the `bloom filter`."}],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        {"role": "assistant", "content": [{"type": "text", "text": "..."}]},
        {"role": "user", "content": "How does it behave under heavy load?"},
    ]
    with serving(bot) as httpd:
        status, out = request(httpd, "POST", CHAT, {"model": "m", "messages": messages})
        assert status == 200, out
        assert out["vertjax"]["rewritten_question"] == (
            "How does bloom filter behave under heavy load?"
        )
        image = [{"type": "image_url", "image_url": {"url": "x"}}]
        bad = {"messages": [{"role": "user", "content": image}]}
        assert request(httpd, "POST", CHAT, bad)[0] == 400
        assert (
            request(httpd, "POST", CHAT, {"messages": [{"role": "robot", "content": "x"}]})[0]
            == 400
        )


def _sse_events(reply: bytes) -> list[str]:
    _, _, body = reply.partition(b"\r\n\r\n")
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


def test_streaming_chat_is_server_sent_chunks(bot, keyless):
    body = {"model": "m", "messages": [{"role": "user", "content": "What does the cache flush?"}]}
    with serving(bot) as httpd:
        _, plain = request(httpd, "POST", CHAT, body)
        stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
        reply = raw_exchange(httpd, http_request("POST", CHAT, json.dumps(stream).encode()))
    assert _statuses(reply) == [200] and b"text/event-stream" in reply.partition(b"\r\n\r\n")[0]
    events = _sse_events(reply)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]


def test_host_header_is_checked_on_keyless_loopback_servers(bot, monkeypatch):
    """Finding 11: any Host was accepted, so a keyless loopback server was open to DNS
    rebinding (a web page whose name resolves to 127.0.0.1)."""
    monkeypatch.delenv(server.API_KEY_ENV, raising=False)
    with serving(bot) as httpd:
        port = httpd.server_address[1]
        for host, status in [
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            ("localhost", 200),
            (f"evil.example:{port}", 403),
            ("evil.example", 403),
            (f"127.0.0.1:{port + 1}", 403),
        ]:
            assert request(httpd, "GET", "/health", headers={"Host": host})[0] == status, host
    monkeypatch.setenv(server.API_KEY_ENV, KEY)
    with serving(bot) as httpd:  # with a key, the key is the check
        headers = {"Host": "evil.example", "Authorization": f"Bearer {KEY}"}
        assert request(httpd, "GET", "/health", headers=headers)[0] == 200
