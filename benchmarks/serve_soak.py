"""Soak test of `vertjax serve`: N clients × M seconds against a real server process on 127.0.0.1.

Builds a BM25-only index (`vertjax index build --bm25`) over a small synthetic corpus, starts
`vertjax serve --config system/default.gin` on a free loopback port as a subprocess, then runs
`--clients` threads for `--seconds`, each sending `POST /v1/answer` and `/v1/chat/completions`
(every 4th request, every 8th streamed) over a keep-alive connection. `--hostile` further threads
cycle through abusive requests (malformed and deeply nested JSON, lone surrogates, wrong Host,
smuggled bodies, slow trickles, bursts of connections); each must get its expected 4xx/408/503
answer or a clean close, and the server must stay up. Reports requests, errors (any non-200 to a
well-formed request, any exception), p50/p99/max latency, and the hostile outcomes.

    python benchmarks/serve_soak.py --clients 8 --seconds 30 [--hostile 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

QUESTIONS = (
    "What does the cache flush before a checkpoint?",
    "How does the query planner estimate a join?",
    "Which process truncates the write-ahead log?",
    "What does the replica copy after a restart?",
    "How are index pages split?",
    "What does the scheduler lock during a vacuum?",
)
_WORDS = (
    "cache flushes dirty pages before checkpoint query planner estimates join cost replica copies "
    "log segments after restart index pages split when full scheduler locks table during vacuum "
    "write ahead log truncated after archive transaction commits rows visible snapshot isolation"
).split()


def _corpus(path: pathlib.Path, *, passages: int = 400) -> pathlib.Path:
    rng = random.Random(0)
    rows = []
    for i in range(passages):
        sentences = [
            " ".join(rng.choice(_WORDS) for _ in range(10)).capitalize() + "." for _ in "..."
        ]
        rows.append({"id": f"p{i}", "title": f"Section {i}", "text": " ".join(sentences)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(index: pathlib.Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vertjax.cli", "serve", "--config", "system/default.gin"]
    cmd += [f"--gin.INDEX_DIR={index}", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "vertjax serve: listening on ..." once bound
    if "listening" not in line:
        proc.kill()
        raise RuntimeError(f"vertjax serve did not start: {line!r}")
    return proc


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.hostile: dict[str, int] = {}
        self.hostile_unexpected: list[str] = []


def _client(port: int, seed: int, stop: float, stats: _Stats) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    n = 0
    while time.monotonic() < stop:
        n += 1
        question = rng.choice(QUESTIONS)
        if n % 4:
            path, body = "/v1/answer", {"question": question}
        else:
            messages = [{"role": "user", "content": question}]
            path, body = "/v1/chat/completions", {"messages": messages, "stream": n % 8 == 0}
        start = time.perf_counter()
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
            ok = response.status == 200 and (
                payload.rstrip().endswith(b"data: [DONE]")
                if body.get("stream")
                else b"{" in payload
            )
            with stats.lock:
                stats.latencies.append(elapsed)
                if not ok:
                    stats.errors.append(f"{path}: HTTP {response.status} {payload[:120]!r}")
            if response.will_close:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            with stats.lock:
                stats.errors.append(f"{path}: {type(e).__name__}: {e}")
            conn.close()
    conn.close()


def _raw(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _post(body: bytes, host: str = "127.0.0.1", extra: bytes = b"") -> bytes:
    head = f"POST /v1/answer HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + extra + b"\r\n" + body


def _hostile_cases(port: int) -> list[tuple[str, Any]]:
    smuggled = _post(json.dumps({"question": "smuggled?"}).encode())

    def expect(name: str, data: bytes, statuses: tuple[int, ...]):
        def run() -> str | None:
            reply = _raw(port, data)
            codes = [int(c) for c in reply.split()[1:2] if c.isdigit()]
            if not codes or codes[0] not in statuses:
                return f"{name}: {reply[:80]!r}"
            if reply.count(b"HTTP/1.1 200") > 0:
                return f"{name}: a 200 leaked ({reply[:80]!r})"
            return None

        return name, run

    def trickle() -> str | None:  # the server must cut it (deadline 15 s by default)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            start = time.monotonic()
            try:
                for byte in b"POST /v1/answer HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.5)
            except OSError:
                return None
            return f"trickle: not cut after {time.monotonic() - start:.0f} s"

    return [
        expect("bad json", _post(b"{not json"), (400,)),
        expect("deep nesting", _post(b"[" * 30_000), (400,)),
        expect("huge int", _post(b'{"question": ' + b"9" * 5000 + b"}"), (400,)),
        expect("lone surrogate", _post(b'{"question": "\\ud800?"}'), (400,)),
        expect("wrong host", _post(b'{"question": "q?"}', host="evil.example"), (403,)),
        expect(
            "smuggle after 404",
            b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Content-Length: {len(smuggled)}\r\n\r\n".encode()
            + smuggled,
            (404,),
        ),
        expect("oversized", _post(b"x" * 200_000), (413,)),
        expect("bad method", b"BREW / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", (501,)),
        ("trickle", trickle),
    ]


def _hostile(port: int, stop: float, stats: _Stats) -> None:
    cases = _hostile_cases(port)
    i = 0
    while time.monotonic() < stop:
        name, run = cases[i % len(cases)]
        i += 1
        try:
            problem = run()
        except OSError as e:
            problem = f"{name}: {type(e).__name__}: {e}"
        with stats.lock:
            stats.hostile[name] = stats.hostile.get(name, 0) + 1
            if problem:
                stats.hostile_unexpected.append(problem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--hostile", type=int, default=1, help="abusive client threads")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 3600 and 0 <= args.hostile <= 16):
        parser.error("bounded: 1-256 clients, up to 3600 s, 0-16 hostile clients")

    from vertjax.retrieval import encode

    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        index = root / "index"
        encode.build_index(passages=_corpus(root / "passages.jsonl"), out=index, bm25=True)
        port = _free_port()
        server = _start_server(index, port)
        stats = _Stats()
        try:
            stop = time.monotonic() + args.seconds
            threads = [
                threading.Thread(target=_client, args=(port, i, stop, stats))
                for i in range(args.clients)
            ] + [
                threading.Thread(target=_hostile, args=(port, stop, stats))
                for _ in range(args.hostile)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=30)
    latencies = stats.latencies
    figures = {
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": len(latencies),
        "errors": len(stats.errors),
        "requests_per_s": len(latencies) / args.seconds,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * _percentile(latencies, 0.99) if latencies else float("nan"),
        "max_ms": 1000 * max(latencies) if latencies else float("nan"),
        "hostile_requests": sum(stats.hostile.values()),
        "hostile_unexpected": len(stats.hostile_unexpected),
        "server_alive": alive,
    }
    for name, value in figures.items():
        print(f"{name:20s} {value:10.1f}" if isinstance(value, float) else f"{name:20s} {value}")
    for problem in (stats.errors + stats.hostile_unexpected)[:10]:
        print("  !", problem)
    if args.json:
        figures["hostile_by_case"] = stats.hostile
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if alive and not stats.errors and not stats.hostile_unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
