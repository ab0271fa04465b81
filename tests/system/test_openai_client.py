"""`vertjax serve`'s chat endpoint through the official `openai` Python client, streamed or not."""

from __future__ import annotations

import threading

import openai
import pytest
from system_helpers import build_index, make_assistant

from vertjax.system import http_api, server

QUESTION = "What does the cache flush and what does the parser read?"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """An OpenAI client against a keyless server on a free 127.0.0.1 port (port 0)."""
    bot = make_assistant(build_index(tmp_path_factory.mktemp("index")))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(server.API_KEY_ENV, raising=False)
        httpd = server.make_server(bot, server.ServerConfig(host="127.0.0.1", port=0))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield openai.OpenAI(base_url=f"http://{host}:{port}/v1", api_key="unused", max_retries=0)
    httpd.shutdown()
    httpd.server_close()


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


def test_answer_pieces_are_sentences_and_lines_that_join_to_the_answer():
    text = "The cache flushes [1]. The parser reads [2][3]. [unsupported] Done\nSources:\n[1] a.txt"
    assert http_api.answer_pieces(text) == [
        "The cache flushes [1]. ",
        "The parser reads [2][3]. [unsupported] ",
        "Done\n",
        "Sources:\n",
        "[1] a.txt",
    ]
    assert http_api.answer_pieces("") == []
