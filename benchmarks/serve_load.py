"""Bounded load test of `vertjax serve`: N concurrent clients x M requests on 127.0.0.1.

Starts the server in this process (port chosen by the OS) over the zero-model assistant (BM25 +
extractive answers + lexical checks) of a built pack (`--pack_dir`), or of a synthetic corpus when
none is given, then each client sends M `POST /v1/answer` requests over one keep-alive connection.
Reports requests/s and p50/p99 latency, against the baseline measured in the same run: the same
questions answered in-process without HTTP (the server's overhead is the difference).

    python benchmarks/serve_load.py --pack_dir runs/demo/data/python-stdlib --clients 8 --requests 25
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import pathlib
import random
import statistics
import sys
import tempfile
import threading
import time

QUESTIONS = (
    "How do I read a file line by line?",
    "What does json.dumps do?",
    "How do I start a thread and wait for it to finish?",
    "What is a context manager?",
    "How do I parse command-line arguments?",
    "How do I compute a SHA-256 hash of a file?",
    "What does the with statement do?",
    "How can I copy a directory tree?",
)


def _synthetic_pack(root: pathlib.Path) -> pathlib.Path:
    from vertjax import io_utils

    rng = random.Random(0)
    words = [w.strip("?") for q in QUESTIONS for w in q.lower().split()]
    rows = [
        {
            "id": f"p{i}",
            "doc_id": f"d{i // 4}",
            "title": f"Section {i}",
            "text": " ".join(
                " ".join(rng.choice(words) for _ in range(12)).capitalize() + "." for _ in range(4)
            ),
        }
        for i in range(2000)
    ]
    for split in ("train", "validation", "test"):
        io_utils.write_jsonl(root / f"{split}.jsonl", rows if split == "train" else rows[:1])
    (root / "manifest.json").write_text("{}", encoding="utf-8")
    return root


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _client(address, questions: list[str]) -> list[float]:
    conn = http.client.HTTPConnection(*address, timeout=60)
    latencies = []
    for question in questions:
        body = json.dumps({"question": question}).encode()
        start = time.perf_counter()
        conn.request("POST", "/v1/answer", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} for {question!r}: {payload[:300]!r}")
    conn.close()
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack_dir", help="a built data pack (default: a synthetic corpus)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument("--max_concurrent", type=int, default=4, help="server worker threads")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from vertjax.system import build, server

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = pathlib.Path(tmp)
        pack = pathlib.Path(args.pack_dir) if args.pack_dir else _synthetic_pack(tmp_path / "pack")
        bot = build.offline_assistant(index_dir=tmp_path / "index", pack_dir=pack)
        plan = [
            [QUESTIONS[(c + r) % len(QUESTIONS)] for r in range(args.requests)]
            for c in range(args.clients)
        ]
        for question in QUESTIONS:  # warm-up (first-call costs) outside both timings
            bot.answer(question)
        direct = []
        start = time.perf_counter()
        for question in plan[0]:
            t = time.perf_counter()
            bot.answer(question)
            direct.append(time.perf_counter() - t)
        direct_rps = len(direct) / (time.perf_counter() - start)

        httpd = server.make_server(
            bot, server.ServerConfig(port=0, max_concurrent=args.max_concurrent)
        )
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                per_client = list(pool.map(lambda qs: _client(httpd.server_address[:2], qs), plan))
            elapsed = time.perf_counter() - start
        finally:
            httpd.shutdown()
            httpd.server_close()
    latencies = [x for client in per_client for x in client]
    figures = {
        "clients": args.clients,
        "requests": len(latencies),
        "http_requests_per_s": len(latencies) / elapsed,
        "http_p50_ms": 1000 * statistics.median(latencies),
        "http_p99_ms": 1000 * _percentile(latencies, 0.99),
        "direct_requests_per_s": direct_rps,
        "direct_p50_ms": 1000 * statistics.median(direct),
        "direct_p99_ms": 1000 * _percentile(direct, 0.99),
    }
    figures["http_over_direct_throughput"] = figures["http_requests_per_s"] / direct_rps
    for name, value in figures.items():
        print(
            f"{name:32s} {value:10.2f}" if isinstance(value, float) else f"{name:32s} {value:10d}"
        )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
