"""`vertjax serve`: the assistant over HTTP (stdlib `ThreadingHTTPServer`, no extra dependency).

Endpoints:
- `POST /v1/chat/completions`: OpenAI-compatible chat (non-streaming). The last user message is
  the question, earlier messages the history; the reply's `choices[0].message.content` is the
  cited answer and `vertjax` holds the structured `AnswerResult`.
- `POST /v1/answer`: `{question, history?}` → the structured `AnswerResult` as JSON.
- `GET /health`, `GET /v1/models`.

Safety: binds 127.0.0.1 by default and refuses any non-loopback address unless the API key
environment variable is set; when it is set every request needs `Authorization: Bearer <key>`,
compared in constant time (`hmac.compare_digest`), else 401. Bodies above `max_body_bytes` get
413 without being read, malformed JSON or fields 400, a slow client is cut by a socket timeout,
and an answer that takes longer than `request_timeout` seconds 504.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hmac
import http.server
import ipaddress
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from vertjax import errors

logger = logging.getLogger(__name__)
API_KEY_ENV = "VERTJAX_API_KEY"
_LOOPBACK_NAMES = ("localhost",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where and how the server listens (gin/CLI configurable)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 64 * 1024
    request_timeout: float = 60.0
    read_timeout: float = 10.0
    max_concurrent: int = 4
    api_key_env: str = API_KEY_ENV
    model_name: str = "vertjax-assistant"

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_concurrent < 1:
            raise errors.ConfigError("max_body_bytes and max_concurrent must be positive")
        if self.request_timeout <= 0 or self.read_timeout <= 0:
            raise errors.ConfigError("request_timeout and read_timeout must be positive")
        if not 0 <= self.port < 65536:
            raise errors.ConfigError(f"port must be in 0..65535, got {self.port}")


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _history(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(t, str)
        or (isinstance(t, Mapping) and isinstance(t.get("content"), str) and "role" in t)
        for t in value
    ):
        raise _HttpError(400, "'history' must be a list of strings or {role, content} messages")
    return value


def parse_answer_request(body: Any) -> tuple[str, list[Any]]:
    """`{question, history?}` → (question, history); `_HttpError(400)` when malformed."""
    if not isinstance(body, dict):
        raise _HttpError(400, "the body must be a JSON object")
    question = body.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _HttpError(400, "'question' must be a non-empty string")
    return question, _history(body.get("history"))


def parse_chat_request(body: Any) -> tuple[str, list[Any]]:
    """OpenAI `{messages: [...]}` → (last user message, the messages before it)."""
    if not isinstance(body, dict):
        raise _HttpError(400, "the body must be a JSON object")
    if body.get("stream"):
        raise _HttpError(400, "streaming is not supported; send stream: false")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _HttpError(400, "'messages' must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise _HttpError(400, f"messages[{i}] needs a string 'content'")
        if m.get("role") not in ("system", "user", "assistant"):
            raise _HttpError(400, f"messages[{i}].role must be system, user or assistant")
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users or not messages[users[-1]]["content"].strip():
        raise _HttpError(400, "no non-empty user message to answer")
    last = users[-1]
    return messages[last]["content"], [m for m in messages[:last] if m["role"] != "system"]


class AssistantServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server holding the assistant, its settings and a bounded worker pool."""

    daemon_threads = True

    def __init__(self, assistant: Any, config: ServerConfig, api_key: str | None):
        self.assistant, self.config, self.api_key = assistant, config, api_key
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.max_concurrent, thread_name_prefix="answer"
        )
        super().__init__((config.host, config.port), _Handler)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: AssistantServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms ACK stalls

    def setup(self) -> None:
        self.timeout = self.server.config.read_timeout  # socket timeout: slow clients are cut
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False, default=float).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        if status in (400, 411, 413):
            self.close_connection = True  # the body may be left unread
        self._send(status, {"error": {"message": message, "code": status}}, headers)

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), key.encode("utf-8")
        )

    def _body(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise _HttpError(411, "Content-Length is required")
        try:
            size = int(length)
        except ValueError:
            raise _HttpError(400, "Content-Length is not an integer") from None
        if size < 0:
            raise _HttpError(400, "Content-Length is negative")
        if size > self.server.config.max_body_bytes:
            raise _HttpError(
                413, f"body of {size} bytes exceeds {self.server.config.max_body_bytes}"
            )
        raw = self.rfile.read(size)
        if len(raw) != size:
            raise _HttpError(400, "body shorter than Content-Length")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _HttpError(400, f"malformed JSON: {e}") from None

    def do_GET(self) -> None:
        if not self._authorized():
            return self._error(401, "missing or wrong bearer token")
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.path == "/v1/models":
            name = self.server.config.model_name
            return self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": name, "object": "model", "owned_by": "vertjax"}],
                },
            )
        self._error(404, f"no such endpoint: GET {self.path}")

    def do_POST(self) -> None:
        try:
            if self.path not in ("/v1/answer", "/v1/chat/completions"):
                raise _HttpError(404, f"no such endpoint: POST {self.path}")
            if not self._authorized():
                raise _HttpError(401, "missing or wrong bearer token")
            body = self._body()
            if self.path == "/v1/answer":
                question, history = parse_answer_request(body)
                self._send(200, dataclasses.asdict(self._answer(question, history)))
            else:
                question, history = parse_chat_request(body)
                self._send(200, self._chat_response(self._answer(question, history)))
        except _HttpError as e:
            self._error(e.status, e.message)

    def _answer(self, question: str, history: list[Any]) -> Any:
        future = self.server.pool.submit(self.server.assistant.answer, question, history)
        try:
            return future.result(timeout=self.server.config.request_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise _HttpError(504, "the answer took too long") from None
        except errors.VertjaxError as e:
            raise _HttpError(400, str(e)) from None
        except Exception:
            logger.exception("answering %r failed", question)
            raise _HttpError(500, "internal error while answering") from None

    def _chat_response(self, result: Any) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.config.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "vertjax": dataclasses.asdict(result),
        }


def make_server(assistant: Any, config: ServerConfig = ServerConfig()) -> AssistantServer:
    """A bound (not yet serving) server; refuses a non-loopback host without an API key."""
    api_key = os.environ.get(config.api_key_env) or None
    if not is_loopback(config.host) and api_key is None:
        raise errors.ConfigError(
            f"refusing to listen on {config.host} without an API key: set ${config.api_key_env}"
            " (clients then send 'Authorization: Bearer <key>') or bind 127.0.0.1"
        )
    try:
        return AssistantServer(assistant, config, api_key)
    except OSError as e:
        raise errors.ConfigError(f"cannot listen on {config.host}:{config.port}: {e}") from None
