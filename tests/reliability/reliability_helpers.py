"""Shared pieces of the reliability tests: a served BM25 assistant and raw-socket HTTP."""

from __future__ import annotations

import contextlib
import http.client
import json
import pathlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from conftest import tiny_corpus_records

from vertjax.retrieval import bm25, rewrite
from vertjax.system import assistant, build, generation, server


def make_bot(index_dir: pathlib.Path) -> assistant.Assistant:
    """The zero-model assistant (BM25, extractive answers, lexical checks) over the tiny corpus."""
    bm25.BM25Index.build(tiny_corpus_records()).save(index_dir)
    return assistant.Assistant(
        bm25.BM25Index.load(index_dir),
        rewriter=rewrite.RuleRewriter(),
        generator=generation.ExtractiveGenerator(),
        consistency_scorer=build.LexicalScorer(),
        domain="databases",
    )


@contextlib.contextmanager
def serving(bot: Any, **options: Any) -> Iterator[server.AssistantServer]:
    """A server on 127.0.0.1 (OS-chosen port) in a thread, shut down on exit."""
    httpd = server.make_server(bot, server.ServerConfig(port=0, **options))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def request(
    httpd: server.AssistantServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request on a fresh connection → (status, parsed JSON body)."""
    conn = http.client.HTTPConnection(*httpd.server_address[:2], timeout=30)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(
        method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, json.loads(payload or b"null")


def raw_exchange(httpd: server.AssistantServer, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Sends `data` on one socket, half-closes, returns everything the server sent back."""
    with socket.create_connection(httpd.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def http_request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """A raw HTTP/1.1 request (Host 127.0.0.1, Content-Length when there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
