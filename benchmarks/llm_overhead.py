"""What vertjax adds to an LLM answer's latency: the llama.cpp server called directly vs through
`vertjax serve`'s streaming endpoint and vertjax's answer generator, same prompts, same run
(issue 18.6).

    .venv/bin/python benchmarks/llm_overhead.py [--repeats 3] [--max_tokens 64] [--base_url URL]

Starts the local server (`make llm`; or uses `--base_url` + `--model`) and an in-process
`vertjax serve` (`server.make_server`, the same HTTP server, in a thread of this process) whose
assistant retrieves from a BM25 index of 4 fixed passages, asks the LLM through
`BackendAnswerGenerator` and checks each sentence (`LexicalScorer`, policy `flag`). A first pass
asks each of 4 questions through it and records the prompt the generator sent; every method then
uses those prompts:
- direct, streaming: `/v1/chat/completions` with `stream: true` over plain HTTP; time to the first
  content delta (TTFT), to the first complete sentence (as vertjax's generator cuts them) and to
  the end;
- direct: the same without streaming (the reply's `usage.completion_tokens` is the token count);
- vertjax serve, streaming: `/v1/chat/completions` of vertjax with `stream: true`; vertjax sends
  whole judged sentences, so its first content delta is the first sentence (retrieval, the LLM
  writing it and the next sentence's first token, the consistency check), and it ends after the
  trust line and sources;
- vertjax generator, in-process: `BackendAnswerGenerator.generate` (not streamed: its first
  text arrives with the whole answer, so its TTFT is its total).
Answer tokens/s = the direct reply's completion tokens / wall time (greedy, seed 0: the same LLM
text each way; checked). Each method sends all prompts in turn (so llama.cpp never reuses a whole
prompt's cache from the previous request) and the methods rotate order every repeat. Medians are
printed with the ratios vertjax / direct.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from vertjax.consistency import citations
from vertjax.generators import local_server, openai_chat
from vertjax.retrieval import bm25
from vertjax.retrieval.types import Hit
from vertjax.system import assistant, build, generation, server

DOMAIN = "the Python standard library"
PASSAGES = [
    Hit(
        1,
        "io",
        "io",
        3.0,
        "For reading lines from a file, you can loop over the file object. "
        "This is memory efficient, fast, and leads to simple code.",
    ),
    Hit(
        2,
        "json",
        "json",
        2.0,
        "json.dumps serializes obj to a JSON formatted str. If sort_keys "
        "is true, the output of dictionaries will be sorted by key.",
    ),
    Hit(
        3,
        "tempfile",
        "tempfile",
        1.0,
        "TemporaryDirectory creates a temporary directory; on "
        "completion of the context or destruction of the object it is removed.",
    ),
    Hit(
        4,
        "shutil",
        "shutil",
        1.0,
        "shutil.copytree recursively copies an entire directory tree "
        "rooted at src to a directory named dst and returns the destination directory.",
    ),
]
QUESTIONS = (
    "How do I read a file line by line?",
    "How do I sort the keys when I serialize a dict to JSON?",
    "How do I create a temporary directory?",
    "How can I copy a directory tree?",
)


class _Recording:
    """The OpenAI backend, keeping the prompt and the LLM's text of every streamed reply."""

    def __init__(self, backend: openai_chat.OpenAIChatGenerator):
        self.backend, self.calls = backend, []

    def stream(self, prompt: str, **options: Any) -> Iterator[openai_chat.Completion]:
        call = {"prompt": prompt, "text": ""}
        self.calls.append(call)
        for delta in self.backend.stream(prompt, **options):
            call["text"] += delta.text
            yield delta


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(request, timeout=120)


def _complete_sentence(text: str) -> bool:
    """Whether streamed LLM text holds a complete sentence (a second one has begun), as
    `BackendAnswerGenerator.stream` decides it."""
    return len(citations.parse_answer(generation.answer_text(text))["sentences"]) > 1


def timed_stream(url: str, body: dict[str, Any], *, llm_text: bool) -> dict:
    """One streamed request: seconds to the first content delta, to the first complete sentence
    (`llm_text`: the deltas are the LLM's raw text; else each delta is a sentence) and to the
    end; `vertjax`: the result a vertjax stream ends with."""
    start = time.perf_counter()
    first = sentence = result = None
    text = ""
    with _post(url, {**body, "stream": True}) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            result = chunk.get("vertjax", result)
            choices = chunk["choices"]
            delta = (choices[0]["delta"].get("content") or "") if choices else ""
            if not delta:
                continue
            text += delta
            now = time.perf_counter() - start
            first = now if first is None else first
            if sentence is None and (not llm_text or _complete_sentence(text)):
                sentence = now
    total = time.perf_counter() - start
    return {
        "ttft": first,
        "sentence": sentence or total,
        "total": total,
        "text": text,
        "vertjax": result,
    }


def direct(url: str, model: str, prompt: str, max_tokens: int, *, stream: bool) -> dict:
    """One request to the LLM server itself, streamed or not."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
    }
    if stream:
        return timed_stream(url, body, llm_text=True)
    start = time.perf_counter()
    with _post(url, {**body, "stream": False}) as response:
        reply = json.loads(response.read())
    total = time.perf_counter() - start
    text = reply["choices"][0]["message"]["content"]
    tokens = reply["usage"]["completion_tokens"]
    return {"ttft": total, "sentence": total, "total": total, "text": text, "tokens": tokens}


@contextlib.contextmanager
def vertjax_serve(base_url: str, model: str, max_tokens: int) -> Iterator[tuple[str, _Recording]]:
    """`vertjax serve` over a BM25 index of PASSAGES and the LLM, on a free 127.0.0.1 port;
    yields its chat URL and the recording backend."""
    backend = _Recording(openai_chat.OpenAIChatGenerator(base_url, model, max_retries=0))
    with tempfile.TemporaryDirectory() as index:
        records = [{"id": p.id, "title": p.title, "text": p.text} for p in PASSAGES]
        bm25.BM25Index.build(records).save(index)
        bot = assistant.Assistant(
            bm25.BM25Index.load(index),
            generator=generation.BackendAnswerGenerator(
                backend, max_tokens=max_tokens, domain=DOMAIN
            ),
            consistency_scorer=build.LexicalScorer(),
            postprocess_policy="flag",
            k=len(PASSAGES),
            retrieve_k=len(PASSAGES),
            domain=DOMAIN,
        )
        httpd = server.make_server(bot, server.ServerConfig(port=0, request_timeout=300.0))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        host, port = httpd.server_address[:2]
        try:
            yield f"http://{host}:{port}/v1/chat/completions", backend
        finally:
            httpd.shutdown()
            httpd.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--base_url", default=None, help="a running server's /v1 URL")
    parser.add_argument("--model", default=None, help="its model name (with --base_url)")
    args = parser.parse_args()
    if args.base_url:
        run(args.base_url, args.model, args)
    else:
        with local_server.LocalLLMServer() as llm:
            run(llm.base_url, llm.model_name, args)


def run(base_url: str, model: str, args: argparse.Namespace) -> None:
    url = base_url.rstrip("/") + "/chat/completions"
    with vertjax_serve(base_url, model, args.max_tokens) as (serve_url, backend):
        prompts, chosen = [], []
        for question in QUESTIONS:  # also the warm-up
            body = {"model": "vertjax", "messages": [{"role": "user", "content": question}]}
            selected = timed_stream(serve_url, body, llm_text=False)["vertjax"]["selected"]
            if len(backend.calls) != len(prompts) + 1:
                raise SystemExit(f"{question!r} was not answered with one LLM request")
            prompts.append(backend.calls[-1]["prompt"])
            chosen.append(
                [Hit(p["rank"], p["id"], p["title"], p["score"], p["text"]) for p in selected]
            )
        generator = generation.BackendAnswerGenerator(
            openai_chat.OpenAIChatGenerator(base_url, model, max_retries=0, concurrency=1),
            max_tokens=args.max_tokens,
            domain=DOMAIN,
        )

        def via_serve(i: int) -> dict:
            body = {"model": "vertjax", "messages": [{"role": "user", "content": QUESTIONS[i]}]}
            out = timed_stream(serve_url, body, llm_text=False)
            return dict(out, text=backend.calls[-1]["text"])

        def via_generator(i: int) -> dict:
            start = time.perf_counter()
            generator.generate(QUESTIONS[i], chosen[i])
            total = time.perf_counter() - start
            return {"ttft": total, "sentence": total, "total": total, "text": generator.last_text}

        methods: dict[str, Callable[[int], dict]] = {
            "direct, streaming": lambda i: direct(
                url, model, prompts[i], args.max_tokens, stream=True
            ),
            "direct": lambda i: direct(url, model, prompts[i], args.max_tokens, stream=False),
            "vertjax serve, streaming": via_serve,
            "vertjax generator, in-process": via_generator,
        }
        names = list(methods)
        results: dict[str, list[dict]] = {name: [] for name in names}
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                for i in range(len(prompts)):
                    results[name].append(dict(methods[name](i), prompt=i))
        report(results, model=model, args=args)


def report(results: dict[str, list[dict]], *, model: str, args: argparse.Namespace) -> None:
    tokens = {r["prompt"]: r["tokens"] for r in results["direct"]}
    texts = {r["prompt"]: r["text"] for r in results["direct"]}
    same = all(r["text"] == texts[r["prompt"]] for rows in results.values() for r in rows)
    print(
        f"model {model}, {len(texts)} prompts x {args.repeats} repeats, max_tokens "
        f"{args.max_tokens}; same LLM text every way: {same}; median answer "
        f"{statistics.median(tokens.values())} tokens"
    )
    print("| path | median TTFT (s) | median first sentence (s) | median total (s) | tokens/s |")
    print("|---|---:|---:|---:|---:|")
    m = {}
    for name, rows in results.items():
        m[name] = {
            "ttft": statistics.median(r["ttft"] for r in rows),
            "sentence": statistics.median(r["sentence"] for r in rows),
            "total": statistics.median(r["total"] for r in rows),
            "rate": statistics.median(tokens[r["prompt"]] / r["total"] for r in rows),
        }
        row = m[name]
        print(
            f"| {name} | {row['ttft']:.3f} | {row['sentence']:.3f} | {row['total']:.3f} "
            f"| {row['rate']:.1f} |"
        )
    s, v = m["direct, streaming"], m["vertjax serve, streaming"]
    g, d = m["vertjax generator, in-process"], m["direct"]
    print(
        f"vertjax serve streaming / direct streaming: TTFT {v['ttft'] / s['ttft']:.2f}x, "
        f"first sentence {v['sentence'] / s['sentence']:.3f}x, total {v['total'] / s['total']:.3f}x,"
        f" tokens/s {v['rate'] / s['rate']:.3f}x"
    )
    print(
        f"vertjax generator in-process / direct: total {g['total'] / d['total']:.3f}x, "
        f"tokens/s {g['rate'] / d['rate']:.3f}x"
    )


if __name__ == "__main__":
    main()
