"""What vertjax adds to an LLM answer's latency: the llama.cpp server called directly vs through
vertjax's answer generator, same prompts, same run (issue 18.6).

    .venv/bin/python benchmarks/llm_overhead.py [--repeats 3] [--max_tokens 64] [--base_url URL]

Starts the local server (`make llm`; or uses `--base_url` + `--model`) and sends the prompts that
`generation.BackendAnswerGenerator` builds for 4 questions over fixed passages, three ways:
- direct, streaming: `/v1/chat/completions` with `stream: true` over plain HTTP; time to the first
  content delta (TTFT) and to the end;
- direct: the same without streaming (the reply's `usage.completion_tokens` is the token count);
- vertjax: `BackendAnswerGenerator.generate` in-process (prompt built, `OpenAIChatGenerator`
  request, reply cleaned and citations parsed). It does not stream, so its first answer text
  arrives with the whole answer: its TTFT is its total time.
Answer tokens/s = the direct reply's completion tokens / wall time (greedy, seed 0: the same text
each way; checked). Each method sends all prompts in turn (so llama.cpp never reuses a whole
prompt's cache from the previous request) and the methods rotate order every repeat. Medians are
printed with the overhead ratio vertjax / direct.

`vertjax serve`'s streaming endpoint is not timed here: it cuts its chunks from the finished
answer (`http_api.answer_pieces`), so its TTFT is the whole answer's time plus retrieval and the
consistency check, never less than the in-process figure above.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from typing import Any

from vertjax.generators import local_server, openai_chat
from vertjax.retrieval.types import Hit
from vertjax.system import generation

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


class _Recorder:
    """A `Generator` stand-in that keeps the prompts BackendAnswerGenerator builds."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompts, *, max_tokens, temperature, seed):
        self.prompts += list(prompts)
        return [""] * len(prompts)


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(request, timeout=120)


def direct(url: str, model: str, prompt: str, max_tokens: int, *, stream: bool) -> dict:
    """One direct request: seconds to the first content delta (streaming) and to the end."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 0,
        "stream": stream,
    }
    start = time.perf_counter()
    first, text, tokens = None, "", None
    with _post(url, body) as response:
        if not stream:
            reply = json.loads(response.read())
            text = reply["choices"][0]["message"]["content"]
            tokens = reply["usage"]["completion_tokens"]
        else:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                if delta and first is None:
                    first = time.perf_counter() - start
                text += delta
    total = time.perf_counter() - start
    return {"ttft": first if stream else total, "total": total, "text": text, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--base_url", default=None, help="a running server's /v1 URL")
    parser.add_argument("--model", default=None, help="its model name (with --base_url)")
    args = parser.parse_args()
    recorder = _Recorder()
    for question in QUESTIONS:
        generation.BackendAnswerGenerator(recorder, domain="the Python standard library").generate(
            question, PASSAGES
        )
    if args.base_url:
        run(args.base_url, args.model, recorder.prompts, args)
    else:
        with local_server.LocalLLMServer() as server:
            run(server.base_url, server.model_name, recorder.prompts, args)


def run(base_url: str, model: str, prompts: list[str], args: argparse.Namespace) -> None:
    url = base_url.rstrip("/") + "/chat/completions"
    vertjax_gen = generation.BackendAnswerGenerator(
        openai_chat.OpenAIChatGenerator(base_url, model, max_retries=0, concurrency=1),
        max_tokens=args.max_tokens,
        domain="the Python standard library",
    )

    def via_vertjax(i: int) -> dict:
        start = time.perf_counter()
        vertjax_gen.generate(QUESTIONS[i], PASSAGES)
        total = time.perf_counter() - start
        return {"ttft": total, "total": total, "text": vertjax_gen.last_text}

    methods = {
        "direct, streaming": lambda i: direct(url, model, prompts[i], args.max_tokens, stream=True),
        "direct": lambda i: direct(url, model, prompts[i], args.max_tokens, stream=False),
        "vertjax (in-process generator)": via_vertjax,
    }
    names = list(methods)
    results: dict[str, list[dict]] = {name: [] for name in names}
    direct(url, model, prompts[0], 8, stream=False)  # warm-up (first request loads buffers)
    for repeat in range(args.repeats):
        for name in names[repeat % 3 :] + names[: repeat % 3]:
            for i in range(len(prompts)):
                results[name].append(dict(methods[name](i), prompt=i))
    tokens = {r["prompt"]: r["tokens"] for r in results["direct"]}
    texts = {r["prompt"]: r["text"] for r in results["direct"]}
    same = all(r["text"] == texts[r["prompt"]] for rows in results.values() for r in rows)
    print(
        f"model {model}, {len(prompts)} prompts x {args.repeats} repeats, max_tokens "
        f"{args.max_tokens}; same text every way: {same}"
    )
    print("| path | median TTFT (s) | median total (s) | answer tokens/s |")
    print("|---|---:|---:|---:|")
    medians = {}
    for name, rows in results.items():
        rate = statistics.median(tokens[r["prompt"]] / r["total"] for r in rows)
        ttft = statistics.median(r["ttft"] for r in rows)
        total = statistics.median(r["total"] for r in rows)
        medians[name] = (ttft, total, rate)
        print(f"| {name} | {ttft:.3f} | {total:.3f} | {rate:.1f} |")
    v, d, s = medians[names[2]], medians["direct"], medians["direct, streaming"]
    print(
        f"overhead vertjax / direct: total time {v[1] / d[1]:.3f}x, tokens/s {d[2] / v[2]:.3f}x; "
        f"TTFT vertjax / direct streaming {v[0] / s[0]:.2f}x (vertjax does not stream)"
    )


if __name__ == "__main__":
    main()
