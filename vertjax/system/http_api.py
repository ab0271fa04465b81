"""Request and response shapes of `vertjax serve`: `/v1/answer` and OpenAI-compatible chat.

Kept apart from the transport (`server.py`) so that what a body may hold is testable without a
socket. Every malformed input is an `HttpError(400)` whose message says what to change.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# Roles whose content is instructions or tool output, not a conversational turn: accepted, and
# kept out of the history the rewriter sees.
_CONTEXT_ROLES = ("system", "developer", "tool", "function")
_ROLES = ("user", "assistant", *_CONTEXT_ROLES)


class HttpError(Exception):
    """An error response: status and a message safe to show a client (no paths, no traces)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def decode_json(raw: bytes) -> Any:
    """Bytes → a JSON value that can be echoed back as UTF-8; `HttpError(400)` otherwise.

    Catches what `json.loads` raises beyond `JSONDecodeError` (deep nesting → RecursionError, an
    integer beyond Python's digit limit → ValueError) and lone surrogates (`"\\ud800"` parses,
    but cannot be encoded as UTF-8 when the answer echoes the question).
    """
    try:
        value = json.loads(raw.decode("utf-8"))
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "malformed JSON: the body is not UTF-8") from None
    except UnicodeEncodeError:
        raise HttpError(400, "malformed JSON: a string holds a lone surrogate escape") from None
    except RecursionError:
        raise HttpError(400, "malformed JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, too many integer digits
        raise HttpError(400, f"malformed JSON: {str(e)[:200]}") from None
    return value


def _history(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(t, str)
        or (isinstance(t, Mapping) and isinstance(t.get("content"), str) and "role" in t)
        for t in value
    ):
        raise HttpError(400, "'history' must be a list of strings or {role, content} messages")
    return value


def parse_answer_request(body: Any) -> tuple[str, list[Any]]:
    """`{question, history?}` → (question, history); `HttpError(400)` when malformed."""
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    question = body.get("question")
    if not isinstance(question, str) or not question.strip():
        raise HttpError(400, "'question' must be a non-empty string")
    return question, _history(body.get("history"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """What the server needs from an OpenAI chat body."""

    question: str
    history: list[dict[str, str]]
    stream: bool = False
    include_usage: bool = False


def _content_text(content: Any, where: str) -> str | None:
    """A message's text: a string, a list of `{type: text, text}` parts (joined), or None."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise HttpError(400, f"{where}.content[{j}]: only text parts are supported")
            if not isinstance(part.get("text"), str):
                raise HttpError(400, f"{where}.content[{j}] needs a string 'text'")
            texts.append(part["text"])
        return "\n".join(texts)
    raise HttpError(400, f"{where}.content must be a string, a list of text parts or null")


def parse_chat_request(body: Any) -> ChatRequest:
    """OpenAI `{messages: [...], stream?}` → the last user message and the turns before it.

    Accepts what the official clients send: content-part arrays, the `developer` role, assistant
    tool-call turns with `content: null`, `tool` results (the last two are kept out of history).
    """
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise HttpError(400, "'stream' must be a boolean")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise HttpError(400, "'stream_options' must be an object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HttpError(400, "'messages' must be a non-empty list")
    turns: list[tuple[str, str | None]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise HttpError(400, f"messages[{i}].role must be one of {', '.join(_ROLES)}")
        text = _content_text(m.get("content"), f"messages[{i}]")
        if text is None and m["role"] != "assistant":
            raise HttpError(400, f"messages[{i}] needs a 'content'")
        turns.append((m["role"], text))
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    if not users or not (turns[users[-1]][1] or "").strip():
        raise HttpError(400, "no non-empty user message to answer")
    last = users[-1]
    history = [
        {"role": role, "content": text}
        for role, text in turns[:last]
        if role in ("user", "assistant") and text
    ]
    return ChatRequest(
        question=turns[last][1] or "",
        history=history,
        stream=bool(stream),
        include_usage=bool(options.get("include_usage")),
    )


def chat_response(result: Any, *, model: str) -> dict[str, Any]:
    """A `chat.completion` whose message is the cited answer; `vertjax` holds the full result."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
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


def chat_chunks(
    events: Iterable[Any], *, model: str, include_usage: bool
) -> Iterator[dict[str, Any]]:
    """A streamed answer as OpenAI `chat.completion.chunk`s (what `stream: true` returns).

    `events` is `Assistant.answer_stream`'s: pieces of the answer's text (str) as they become
    final, then the `AnswerResult`. First the role (`delta: {role: assistant}`), then one content
    delta per piece, as it comes (a sentence once it is written and judged, then the trust line
    and sources), then an empty delta with `finish_reason: stop` that also carries the full
    result under `vertjax` (citations, per-sentence verdicts, refusal; as `chat_response`), then,
    with `stream_options.include_usage`, a usage chunk with no choices. vertjax does not count
    tokens: usage is all zeros, as in `chat_response`.
    """
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    result = None
    for event in events:
        if isinstance(event, str):
            yield chunk({"content": event})
        else:
            result = event
    yield {**chunk({}, "stop"), "vertjax": dataclasses.asdict(result)}
    if include_usage:
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        yield {**base, "choices": [], "usage": usage}
