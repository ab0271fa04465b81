"""`vertjax serve`: the assistant over HTTP (stdlib `http.server`, no extra dependency).

Endpoints:
- `POST /v1/chat/completions`: OpenAI-compatible chat (`stream: true` as server-sent events).
  The last user message is the question, earlier messages the history; the reply's
  `choices[0].message.content` is the cited answer and `vertjax` holds the structured result.
  Streamed, each answer sentence goes out as soon as it is written and judged
  (`Assistant.answer_stream`: as the LLM writes it, with a generator that streams); a failure
  before the first sentence keeps its HTTP status, one after it is an `error` event.
- `POST /v1/answer`: `{question, history?}` → the structured `AnswerResult` as JSON.
- `GET /health`, `GET /v1/models`.

Limits (`ServerConfig`): binds 127.0.0.1 by default and refuses any non-loopback address unless
the API key environment variable is set; then every request needs `Authorization: Bearer <key>`
(constant-time compare), else 401. Without a key, the `Host` header must name the loopback
address it is bound to (DNS rebinding), else 403. The listen backlog is `backlog`; at most
`max_connections` connections are served at once and one more gets 503 (`Retry-After`); at most
`max_concurrent` answers run at once. A request's line, headers and body must arrive within
`request_deadline` seconds of its first byte (slow-trickle clients get 408 and are cut), a
silent connection is closed after `read_timeout`, bodies above `max_body_bytes` get 413 unread,
an answer slower than `request_timeout` gets 504 (a streamed one: an `error` event with code 504
once sentences were sent). An LLM server failing under the assistant is a 502. Every error is a JSON
`{"error": {"message", "code"}}` without file paths; after an error the unread body is drained,
or the connection closed, so it is never parsed as a next request.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hmac
import http.server
import io
import ipaddress
import itertools
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from vertjax import errors
from vertjax.system import http_api
from vertjax.system.http_api import HttpError

logger = logging.getLogger(__name__)
API_KEY_ENV = "VERTJAX_API_KEY"
_LOOPBACK_NAMES = ("localhost",)
# Answering errors that mean the index or model under the server is unreadable: the server's
# fault, not the request's, and their messages name server-side paths.
_UNAVAILABLE = (errors.DataError, errors.RetrievalIndexError, errors.CheckpointError)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where and how the server listens (gin/CLI configurable)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 64 * 1024
    request_timeout: float = 60.0
    read_timeout: float = 10.0
    request_deadline: float = 15.0
    max_concurrent: int = 4
    max_connections: int = 64
    backlog: int = 128
    api_key_env: str = API_KEY_ENV
    model_name: str = "vertjax-assistant"

    def __post_init__(self) -> None:
        sizes = (self.max_body_bytes, self.max_concurrent, self.max_connections, self.backlog)
        if min(sizes) < 1:
            raise errors.ConfigError(
                "max_body_bytes, max_concurrent, max_connections and backlog must be positive"
            )
        if min(self.request_timeout, self.read_timeout, self.request_deadline) <= 0:
            raise errors.ConfigError(
                "request_timeout, read_timeout and request_deadline must be positive"
            )
        if not 0 <= self.port < 65536:
            raise errors.ConfigError(f"port must be in 0..65535, got {self.port}")


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None]:
    """`Host` header → (name, port or None); a port that is not a number → port -1."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, None
    if port is None:
        return name.rstrip("."), None
    return name.rstrip("."), int(port) if port.isdigit() else -1


class _DeadlineSocketIO(io.RawIOBase):
    """Socket reads bounded twice: `idle` seconds per recv, and `budget` seconds for a whole
    request from its first byte (a client trickling one byte a second never hits the first)."""

    def __init__(self, sock: socket.socket, *, idle: float, budget: float):
        self.sock, self.idle, self.budget = sock, idle, budget
        self.expires: float | None = None

    def readable(self) -> bool:
        return True

    def new_request(self) -> None:
        self.expires = None

    def readinto(self, buffer: Any) -> int:
        timeout = self.idle
        if self.expires is not None:
            timeout = min(timeout, self.expires - time.monotonic())
            if timeout <= 0:
                raise TimeoutError("request deadline passed")
        self.sock.settimeout(timeout)
        n = self.sock.recv_into(buffer)
        if n and self.expires is None:
            self.expires = time.monotonic() + self.budget
        return n


class AssistantServer(http.server.HTTPServer):
    """An HTTP server holding the assistant: a real listen backlog, at most `max_connections`
    connection threads (503 beyond), at most `max_concurrent` answers at once."""

    def __init__(self, assistant: Any, config: ServerConfig, api_key: str | None):
        self.assistant, self.config, self.api_key = assistant, config, api_key
        self.request_queue_size = config.backlog  # socketserver's default listen backlog is 5
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.max_concurrent, thread_name_prefix="answer"
        )
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._rejecting = threading.BoundedSemaphore(config.max_connections)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((config.host, config.port), _Handler)
        self.check_host = api_key is None and is_loopback(config.host)
        self.allowed_hosts = {"localhost", "127.0.0.1", "::1", config.host.lower()}

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            target: Any = self._serve_connection
        elif self._rejecting.acquire(blocking=False):
            target = self._reject
        else:
            self.shutdown_request(request)
            return
        threading.Thread(target=target, args=(request, client_address), daemon=True).start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)
            self._slots.release()

    def _reject(self, request: socket.socket, client_address: Any) -> None:
        """503 to a connection beyond `max_connections`, then reads until the client closes (≤ 1 s)
        so that closing with its request unread does not reset the connection."""
        body = json.dumps(
            {"error": {"message": "server busy: too many connections, retry", "code": 503}}
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(1.0)
            request.sendall(head.encode() + body)
            request.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 1.0
            limit = self.config.max_body_bytes + 65536
            while limit > 0 and time.monotonic() < deadline:
                chunk = request.recv(65536)
                if not chunk:
                    break
                limit -= len(chunk)
        except OSError:
            pass
        finally:
            request.close()
            self._rejecting.release()

    def server_close(self) -> None:
        super().server_close()
        with self._open_lock:
            for conn in self._open:  # wakes connection threads blocked in recv
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.pool.shutdown(wait=False, cancel_futures=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: AssistantServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms ACK stalls

    def setup(self) -> None:
        config = self.server.config
        self.timeout = config.read_timeout
        super().setup()
        self._reader = _DeadlineSocketIO(
            self.connection, idle=config.read_timeout, budget=config.request_deadline
        )
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.new_request()
        self.headers: Any = None  # not the previous request's on a kept-alive connection
        self._body_done = False
        self._responded = False
        try:
            super().handle_one_request()
        except TimeoutError:  # in the headers (the base class catches it in the request line)
            self.close_connection = True
            try:
                self._error(408, "request not received in time")
            except OSError:
                pass
        except OSError:  # the client went away
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's own errors (bad request line, too many headers, 501) as JSON."""
        self._error(code, message or http.HTTPStatus(code).phrase)

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        try:
            text = json.dumps(payload, ensure_ascii=False, default=float)
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate that got this far: escape it
            data = json.dumps(payload, ensure_ascii=True, default=float).encode("ascii")
        self.connection.settimeout(self.server.config.read_timeout)
        self._responded = True
        if self.request_version == "HTTP/0.9":  # unparsed request line: still send a status
            self.request_version, self.close_connection = "HTTP/1.0", True
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        if self._responded:  # headers are out (a stream failed midway): only closing is left
            self.close_connection = True
            return
        self._settle_body()
        if status in (408, 411, 413):
            self.close_connection = True
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
        self._send(status, {"error": {"message": message, "code": status}}, headers)

    def _settle_body(self) -> None:
        """Reads and drops a request body nobody read, so that it is never taken for the next
        request on this connection; closes the connection where that cannot be done safely."""
        headers = getattr(self, "headers", None)
        if self._body_done or headers is None:
            return
        self._body_done = True
        lengths = headers.get_all("Content-Length") or []
        if headers.get("Transfer-Encoding") is not None or len(set(lengths)) > 1:
            self.close_connection = True
            return
        if not lengths:
            return
        try:
            size = int(lengths[0])
        except ValueError:
            size = -1
        if not 0 <= size <= self.server.config.max_body_bytes:
            self.close_connection = True
            return
        try:
            if len(self.rfile.read(size)) != size:
                self.close_connection = True
        except OSError:  # TimeoutError included
            self.close_connection = True

    def _check_request(self) -> None:
        if self.server.check_host:
            host = self.headers.get("Host")
            if host is not None:
                name, port = _split_host(host)
                bound_port = self.server.server_address[1]
                if name not in self.server.allowed_hosts or port not in (None, bound_port):
                    raise HttpError(403, "Host header does not name this loopback server")
        if not self._authorized():
            raise HttpError(401, "missing or wrong bearer token")

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
        self._body_done = True
        if self.headers.get("Transfer-Encoding") is not None:
            raise HttpError(411, "chunked bodies are not supported: send Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise HttpError(411, "Content-Length is required")
        if len(set(lengths)) > 1:
            raise HttpError(400, "conflicting Content-Length headers")
        try:
            size = int(lengths[0])
        except ValueError:
            raise HttpError(400, "Content-Length is not an integer") from None
        if size < 0:
            raise HttpError(400, "Content-Length is negative")
        if size > self.server.config.max_body_bytes:
            raise HttpError(
                413, f"body of {size} bytes exceeds {self.server.config.max_body_bytes}"
            )
        raw = self.rfile.read(size)
        if len(raw) != size:
            self.close_connection = True
            raise HttpError(400, "body shorter than Content-Length")
        return http_api.decode_json(raw)

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _dispatch(self, route: Any) -> None:
        """Runs a route with every failure mapped to a JSON error response."""
        try:
            self._check_request()
            route()
        except HttpError as e:
            self._error(e.status, e.message)
        except TimeoutError:
            self._error(408, "request not received in time")
        except OSError:  # the client went away: nothing to answer
            self.close_connection = True
        except Exception:
            logger.exception("%s %s failed", self.command, self.path)
            self._error(500, "internal server error")

    def _get(self) -> None:
        self._settle_body()
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if self.path == "/v1/models":
            name = self.server.config.model_name
            model = {"id": name, "object": "model", "owned_by": "vertjax"}
            return self._send(200, {"object": "list", "data": [model]})
        raise HttpError(404, f"no such endpoint: GET {self.path[:200]}")

    def _post(self) -> None:
        if self.path not in ("/v1/answer", "/v1/chat/completions"):
            raise HttpError(404, f"no such endpoint: POST {self.path[:200]}")
        body = self._body()
        model = self.server.config.model_name
        if self.path == "/v1/answer":
            question, history = http_api.parse_answer_request(body)
            return self._send(200, dataclasses.asdict(self._answer(question, history)))
        request = http_api.parse_chat_request(body)
        if not request.stream:
            result = self._answer(request.question, request.history)
            return self._send(200, http_api.chat_response(result, model=model))
        events = self._answer_stream(request.question, request.history)
        try:
            first = next(events)  # a failure before any text keeps its HTTP status
            chunks = http_api.chat_chunks(
                itertools.chain([first], events), model=model, include_usage=request.include_usage
            )
            self._stream(chunks)
        finally:
            events.close()  # stops the answer when the client went away

    def _stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        """Server-sent events, one `data:` line per chunk as it comes, `[DONE]` last; the end
        of the response is the end of the connection (no Content-Length). A failure once the
        headers are out is an `{"error": {message, code}}` event (what OpenAI clients raise),
        without `[DONE]`."""
        self.close_connection = True
        self.connection.settimeout(self.server.config.read_timeout)
        self._responded = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for chunk in chunks:
                data = json.dumps(chunk, ensure_ascii=False, default=float).encode("utf-8")
                self.wfile.write(b"data: " + data + b"\n\n")
        except HttpError as e:
            error = {"error": {"message": e.message, "code": e.status}}
            self.wfile.write(b"data: " + json.dumps(error).encode("utf-8") + b"\n\n")
            return
        self.wfile.write(b"data: [DONE]\n\n")

    def _answer(self, question: str, history: list[Any]) -> Any:
        future = self.server.pool.submit(self.server.assistant.answer, question, history)
        try:
            return future.result(timeout=self.server.config.request_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise HttpError(504, "the answer took too long") from None
        except Exception as e:
            raise self._answer_error(e, question) from None

    def _answer_stream(self, question: str, history: list[Any]) -> Iterator[Any]:
        """`Assistant.answer_stream`'s events as they come: run on the answer pool (it counts as
        one of `max_concurrent` answers) and handed over through a queue. The whole answer must
        end within `request_timeout` (504 otherwise); closing this iterator stops it (its LLM
        request is closed) at its next event."""
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                with contextlib.closing(
                    self.server.assistant.answer_stream(question, history)
                ) as stream:
                    for event in stream:
                        if stop.is_set():
                            return
                        events.put(("event", event))
            except Exception as e:
                events.put(("error", e))
            else:
                events.put(("end", None))

        future = self.server.pool.submit(produce)
        deadline = time.monotonic() + self.server.config.request_timeout
        try:
            while True:
                try:
                    kind, value = events.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    raise HttpError(504, "the answer took too long") from None
                if kind == "end":
                    return
                if kind == "error":
                    raise self._answer_error(value, question)
                yield value
        finally:
            stop.set()
            future.cancel()

    @staticmethod
    def _answer_error(error: Exception, question: str) -> HttpError:
        """The response for an exception of the assistant: the index or model unreadable (503),
        the LLM server failing (502), anything else (500); the details go to the log only."""
        if isinstance(error, _UNAVAILABLE):
            logger.error("answering failed, the index or model is unreadable: %s", error)
            return HttpError(
                503, "the index or model is unreadable (see the server log); retry later"
            )
        if isinstance(error, errors.BackendError):
            logger.error("answering failed, the LLM server failed: %s", error)
            return HttpError(502, "the LLM server failed (see the server log); retry later")
        logger.error("answering %r failed", question[:200], exc_info=error)
        return HttpError(500, "internal error while answering")


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
