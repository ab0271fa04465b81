"""A client of any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp server, a
hosted API): timeouts, bounded retries with exponential backoff, a concurrency limit, and a
`BackendError` when the server cannot be reached. The quality of a strong LLM.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from vertjax import errors
from vertjax.generators import derive_seed

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class Completion:
    """One chat completion: its text and why the server stopped writing it.

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

    def _post(self, body: dict[str, Any]) -> Completion:
        """One completion, retried on 429/5xx, timeouts and refused connections."""
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                logging.info("%s: retry %d in %.2fs (%s)", self.url, attempt, delay, last)
                self._sleep(delay)
            request = urllib.request.Request(self.url, data=data, headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode("utf-8", "replace")
                if e.code not in _RETRY_STATUS:
                    hint = f" (is ${self.api_key_env} set?)" if e.code in (401, 403) else ""
                    raise errors.BackendError(
                        f"{self.url}: HTTP {e.code}{hint}: {detail}"
                    ) from None
                last = f"HTTP {e.code}"
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__}: {reason}"
                continue
            return self._content(payload)
        raise errors.BackendError(
            f"{self.url}: no answer after {self.max_retries + 1} attempt(s) (last: {last}); "
            "is the server running and the base URL right?"
        )

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

    def complete(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[Completion]:
        """One `Completion` per prompt, in order; truncated ones (`max_tokens` hit) are logged."""
        bodies = [
            {
                "model": self.model,
                "messages": [{"role": "user", "content": p}],
                "max_tokens": max_tokens,
                "temperature": temperature,
                "seed": derive_seed(seed, i),
            }
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
