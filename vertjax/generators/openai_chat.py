"""A client of any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp server, a
hosted API): timeouts, bounded retries with exponential backoff, a concurrency limit, and a
`BackendError` when the server cannot be reached. The quality of a strong LLM.

`complete` / `generate` wait for whole replies; `stream` yields one reply's text as the server
writes it (`stream: true`, server-sent events), so a caller can show it before the model is done.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vertjax import errors
from vertjax.generators import derive_seed

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_STREAM_DONE = "[DONE]"


class _Retry(Exception):
    """A failed attempt worth retrying; its message is the reason."""


@dataclasses.dataclass(frozen=True)
class Completion:
    """One chat completion (or, from `stream`, one piece of it): its text and why the server
    stopped writing it.

    `finish_reason` is the server's: 'stop' (the model ended it), 'length' (`max_tokens` was hit,
    so the text is cut off mid-way), or None when the server does not say.
    """

    text: str
    finish_reason: str | None = None

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class OpenAIChatGenerator:
    """Calls an OpenAI-compatible chat completions endpoint, one request per prompt."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_retries < 0 or concurrency < 1 or timeout <= 0 or backoff < 0:
            raise errors.ConfigError(
                "openai backend needs timeout > 0, max_retries >= 0, backoff >= 0, concurrency >= 1"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.concurrency = concurrency
        self._sleep = sleep

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _attempt(self, data: bytes, *, stream: bool) -> Any:
        """One request: the reply's bytes, or with `stream` the open response. A failure worth
        retrying (429/5xx, a timeout, a refused connection) is `_Retry`; any other HTTP error a
        `BackendError` at once."""
        request = urllib.request.Request(self.url, data=data, headers=self._headers())
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
            if stream:
                return response
            with response:
                return response.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            if e.code not in _RETRY_STATUS:
                hint = f" (is ${self.api_key_env} set?)" if e.code in (401, 403) else ""
                raise errors.BackendError(f"{self.url}: HTTP {e.code}{hint}: {detail}") from None
            raise _Retry(f"HTTP {e.code}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise _Retry(f"{type(reason).__name__}: {reason}") from None

    def _request(self, body: dict[str, Any], *, stream: bool = False) -> Any:
        """`_attempt` retried with exponential backoff; `BackendError` when all attempts fail."""
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                logging.info("%s: retry %d in %.2fs (%s)", self.url, attempt, delay, last)
                self._sleep(delay)
            try:
                return self._attempt(data, stream=stream)
            except _Retry as e:
                last = str(e)
        raise errors.BackendError(
            f"{self.url}: no answer after {self.max_retries + 1} attempt(s) (last: {last}); "
            "is the server running and the base URL right?"
        )

    def _post(self, body: dict[str, Any]) -> Completion:
        """One completion, retried on 429/5xx, timeouts and refused connections."""
        return self._content(self._request(body))

    def _content(self, payload: bytes) -> Completion:
        try:
            choice = json.loads(payload)["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise errors.BackendError(
                f"{self.url}: not a chat completion response: {payload[:200]!r}"
            ) from None
        reason = choice.get("finish_reason")
        return Completion(
            content if isinstance(content, str) else "",
            reason if isinstance(reason, str) else None,
        )

    def stream(
        self, prompt: str, *, max_tokens: int, temperature: float, seed: int
    ) -> Iterator[Completion]:
        """One prompt's completion as the server writes it (`stream: true`): a `Completion` per
        content delta, in order, whose texts join to the whole reply; the last one carries the
        `finish_reason`. Same request and seed as `complete([prompt], ...)`, so greedy decoding
        gives the same text.

        Retried like `complete` until the server starts answering; a failure after that (the
        connection cut, a timeout, an `error` event, a malformed event, an end with neither
        `[DONE]` nor a finish reason) is one `BackendError` saying how much text had arrived.
        A server that ignores `stream` and sends one JSON reply yields it as one `Completion`.
        """
        body = self._body(prompt, 0, max_tokens=max_tokens, temperature=temperature, seed=seed)
        body["stream"] = True
        received, finished = 0, False
        with self._request(body, stream=True) as response:
            try:
                if response.headers.get_content_type() == "application/json":
                    yield self._content(response.read())
                    return
                for event in _sse_data(response):
                    if event == _STREAM_DONE:
                        return
                    delta = self._delta(event, received)
                    received += len(delta.text)
                    finished = finished or delta.finish_reason is not None
                    if delta.text or delta.finish_reason:
                        yield delta
            except (OSError, http.client.HTTPException) as e:  # OSError: timeouts, resets, TLS
                raise errors.BackendError(
                    f"{self.url}: the stream broke after {received} characters "
                    f"({type(e).__name__}: {e})"
                ) from None
            if not finished:  # no [DONE] and no finish_reason: the reply was cut off
                raise errors.BackendError(
                    f"{self.url}: the stream ended after {received} characters without [DONE]"
                )

    def _delta(self, event: str, received: int) -> Completion:
        """One `chat.completion.chunk` event → its content delta and finish reason."""
        try:
            chunk = json.loads(event)
        except ValueError:
            chunk = None
        if isinstance(chunk, dict) and "error" in chunk:
            error = chunk["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise errors.BackendError(
                f"{self.url}: the server failed after {received} streamed characters: "
                f"{str(message)[:300]}"
            )
        if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
            raise errors.BackendError(
                f"{self.url}: not a chat completion chunk after {received} streamed "
                f"characters: {event[:200]!r}"
            )
        if not chunk["choices"]:  # e.g. the usage chunk of `stream_options.include_usage`
            return Completion("")
        choice = chunk["choices"][0]
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        return Completion(
            content if isinstance(content, str) else "",
            reason if isinstance(reason, str) else None,
        )

    def _body(
        self, prompt: str, index: int, *, max_tokens: int, temperature: float, seed: int
    ) -> dict[str, Any]:
        """The request for the `index`-th prompt of a call: its seed is derived from `seed` and
        `index`, so `stream(p)` asks exactly what `complete([p])` asks."""
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "seed": derive_seed(seed, index),
        }

    def complete(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[Completion]:
        """One `Completion` per prompt, in order; truncated ones (`max_tokens` hit) are logged."""
        bodies = [
            self._body(p, i, max_tokens=max_tokens, temperature=temperature, seed=seed)
            for i, p in enumerate(prompts)
        ]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            completions = list(pool.map(self._post, bodies))
        truncated = sum(c.truncated for c in completions)
        if truncated:
            logging.info(
                "%s: %d of %d completion(s) hit max_tokens=%d (finish_reason 'length')",
                self.url,
                truncated,
                len(completions),
                max_tokens,
            )
        return completions

    def generate(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        """The completions' texts (a truncated one is returned as far as it got)."""
        completions = self.complete(
            prompts, max_tokens=max_tokens, temperature=temperature, seed=seed
        )
        return [c.text for c in completions]


def _sse_data(response: Any) -> Iterator[str]:
    """The `data` of each server-sent event of `response`, as the event stream format defines
    it: `data:` lines joined by newlines, an event ending at a blank line; comments and other
    fields (`event:`, `id:`, `retry:`) are skipped. An event the stream ends in the middle of
    (no blank line after it: the connection was cut) is dropped, as the format says, so a cut
    reply reads as one that ended early, not as a malformed chunk."""
    lines: list[str] = []
    for raw in response:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
            lines = []
        elif line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
