"""`vertjax serve`'s chat endpoint through the official `openai` Python client, streamed or not:
the extractive generator's answers, and an LLM-like generator's sentences streamed one by one as
they are written and judged (flag / drop / regenerate), with failures midway."""

from __future__ import annotations

import contextlib
import threading
import time

import openai
import pytest
from system_helpers import build_index, make_assistant

from vertjax import errors
from vertjax.system import generation, server

QUESTION = "What does the cache flush and what does the parser read?"


@contextlib.contextmanager
def _serving(bot, **options):
    """An OpenAI client against a keyless server for `bot` on a free 127.0.0.1 port (port 0)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(server.API_KEY_ENV, raising=False)
        config = server.ServerConfig(host="127.0.0.1", port=0, **options)
        httpd = server.make_server(bot, config)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield openai.OpenAI(base_url=f"http://{host}:{port}/v1", api_key="unused", max_retries=0)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return build_index(tmp_path_factory.mktemp("index"))


@pytest.fixture(scope="module")
def client(index):
    with _serving(make_assistant(index)) as c:
        yield c


def _ask(client, question, **options):
    return client.chat.completions.create(
        model="vertjax", messages=[{"role": "user", "content": question}], **options
    )


def test_streamed_answer_reassembles_to_the_plain_answer(client):
    plain = _ask(client, QUESTION)
    answer = plain.choices[0].message.content
    assert plain.choices[0].finish_reason == "stop" and answer == plain.vertjax["answer"]
    assert not plain.vertjax["refused"] and plain.vertjax["sentences"]

    chunks = list(_ask(client, QUESTION, stream=True))
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) > 1 and "".join(pieces) == answer
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and not last.choices[0].delta.content
    assert last.vertjax["answer"] == answer
    assert last.vertjax["sentences"] == plain.vertjax["sentences"]  # citations and verdicts
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)


def test_stream_options_include_usage_adds_a_last_usage_chunk(client):
    chunks = list(_ask(client, QUESTION, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])


def test_a_refusal_streams_with_its_reason_in_the_final_chunk(client):
    question = "Who won the football world cup in 1998?"
    plain = _ask(client, question)
    chunks = list(_ask(client, question, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == plain.choices[0].message.content
    assert chunks[-1].vertjax["refused"] and chunks[-1].vertjax["refusal_reason"]


@pytest.mark.parametrize("stream", [False, True])
def test_bad_input_is_a_400_before_any_chunk(client, stream):
    with pytest.raises(openai.BadRequestError, match="no non-empty user message") as caught:
        client.chat.completions.create(
            model="vertjax", messages=[{"role": "system", "content": "be brief"}], stream=stream
        )
    assert caught.value.status_code == 400


class _Writer:
    """An LLM-like generator that streams (as `BackendAnswerGenerator` does): a sentence quoted
    from the last passage, then, once `gate` is set (by the client having received the first
    one) or after 5 s, a made-up one citing passage 1 and another quote; or `fail` instead."""

    name = "writer"

    def __init__(self, fail: Exception | None = None):
        self.gate, self.fail, self.waited_out = threading.Event(), fail, False

    def generate(self, question, passages):
        quotes = [generation.passage_sentences(p.text)[0] for p in passages]
        return [
            {"text": quotes[-1], "citations": [len(passages)]},
            {"text": "Zebras fly over the moon every night.", "citations": [1]},
            {"text": quotes[0], "citations": [1]},
        ]

    def stream(self, question, passages):
        first, *rest = self.generate(question, passages)
        yield first
        self.waited_out = not self.gate.wait(5.0)
        if self.fail is not None:
            raise self.fail
        yield from rest


def _stream_pieces(client, writer):
    """The streamed chunks; the writer may go on once the first content piece is in."""
    chunks = []
    for chunk in _ask(client, "What does the cache flush?", stream=True):
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            writer.gate.set()
    return chunks


@pytest.mark.parametrize("policy", ["flag", "drop", "regenerate"])
def test_llm_sentences_stream_as_each_is_written_and_judged(index, policy):
    writer = _Writer()
    bot = make_assistant(index, generator=writer, postprocess_policy=policy)
    with _serving(bot) as c:
        chunks = _stream_pieces(c, writer)
        plain = _ask(c, "What does the cache flush?")
    assert not writer.waited_out  # sentence 1 reached the client before sentence 2 was written
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    result = chunks[-1].vertjax
    assert "".join(pieces) == result["answer"] == plain.choices[0].message.content
    assert [s["text"] for s in result["sentences"]] == [
        s["text"] for s in plain.vertjax["sentences"]
    ]
    made_up = "Zebras"
    assert pieces[0].startswith(result["sentences"][0]["text"][:-1])  # the quote, first
    assert result["sentences"][0]["status"] == "supported"
    second = pieces[1]
    if policy == "flag":  # sent at once, with its verdict
        assert second.startswith(" Zebras") and second.endswith("[1]. [unsupported]")
        assert result["sentences"][1]["status"] == "unsupported"
    elif policy == "drop":  # never sent
        assert made_up not in "".join(pieces) and result["removed_sentences"] == 1
    else:  # its checked replacement, a quote of the passage it cited
        assert made_up not in "".join(pieces) and result["sentences"][1]["regenerated"]
    assert pieces[-1].startswith("\nTrust:")  # the trust line and sources once all is judged


def test_an_llm_failing_midway_is_an_error_event_and_before_any_text_a_502(index):
    writer = _Writer(fail=errors.BackendError("http://llm/v1: the stream broke"))
    with _serving(make_assistant(index, generator=writer)) as c:
        with pytest.raises(openai.APIError, match="the LLM server failed") as midway:
            _stream_pieces(c, writer)
        assert not isinstance(midway.value, openai.APIStatusError)  # the 200 was already out

        class _Down(_Writer):
            def stream(self, question, passages):
                raise errors.BackendError("http://llm/v1: no answer after 1 attempt(s)")
                yield

    with _serving(make_assistant(index, generator=_Down())) as c:
        with pytest.raises(openai.InternalServerError, match="the LLM server failed") as before:
            list(_ask(c, "What does the cache flush?", stream=True))
    assert before.value.status_code == 502


def test_an_answer_past_the_request_timeout_midway_is_a_504_error_event(index):
    writer = _Writer()  # never let go: waits 5 s after its first sentence
    with _serving(make_assistant(index, generator=writer), request_timeout=1.0) as c:
        with pytest.raises(openai.APIError, match="took too long"):
            list(_ask(c, "What does the cache flush?", stream=True))
    writer.gate.set()  # lets the abandoned answer end


class _Endless:
    """A generator streaming a new sentence every 20 ms for up to 20 s; records when its stream
    was closed and how many sentences it wrote."""

    name = "endless"

    def __init__(self):
        self.written, self.closed = 0, threading.Event()

    def stream(self, question, passages):
        try:
            for self.written in range(1, 1001):
                yield {"text": f"Sentence number {self.written} is here.", "citations": [1]}
                time.sleep(0.02)
        finally:
            self.closed.set()


def test_a_client_going_away_midway_stops_the_answer_and_its_llm_stream(index):
    writer = _Endless()
    with _serving(make_assistant(index, generator=writer)) as c:
        stream = _ask(c, "What does the cache flush?", stream=True)
        next(chunk for chunk in stream if chunk.choices[0].delta.content)
        stream.close()  # the client hangs up after the first sentence
        assert writer.closed.wait(5.0), "the answer went on writing after the client left"
    assert writer.written < 250
