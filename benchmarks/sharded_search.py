"""Sharded dense search vs one index over the same vectors: build time per shard, QPS, recall@k.

The corpus (clustered unit vectors, as in `ann.py`) is split into `--shards` contiguous slices as
`vertjax index build --num_shards` splits passages; each slice is a `DenseIndex` with ScaNN's
defaults for its size (or `--method brute`), searched through `sharded.ShardedDenseRetriever`
(questions encoded once, every shard searched, top-k merged by score). Recall@k is against exact
search over the whole corpus; the ratio printed is sharded QPS / one-index QPS in the same run.

    python benchmarks/sharded_search.py --n 200000 --d 128 --shards 4
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from ann import clustered_vectors, recall_at_k

from vertjax.retrieval import index, sharded


def build(vectors: np.ndarray, method: str) -> tuple[index.DenseIndex, float]:
    start = time.perf_counter()
    built = index.DenseIndex.build(vectors, method=method)
    return built, time.perf_counter() - start


def search_qps(retriever, questions: list[str], k: int) -> tuple[list[list[str]], float]:
    """Best of 3 batched searches: (ids per question, queries per second)."""
    best, found = float("inf"), []
    for _ in range(3):
        start = time.perf_counter()
        found = retriever.search(questions, k)
        best = min(best, time.perf_counter() - start)
    return [[h.id for h in hits] for hits in found], len(questions) / best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="corpus vectors")
    parser.add_argument("--d", type=int, default=128, help="dimension")
    parser.add_argument("--shards", type=int, default=4, help="number of shards")
    parser.add_argument("--queries", type=int, default=1000, help="queries")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--method", choices=index.METHODS, default="scann", help="index type")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((1000, args.d), dtype=np.float32)
    vectors = clustered_vectors(rng, centers, args.n, 1.5 * 1.0).astype(np.float32)
    queries = clustered_vectors(rng, centers, args.queries, 1.5).astype(np.float32)
    _, truth_rows = index.exact_search(vectors, queries, args.k)
    truth = [[str(r) for r in row] for row in truth_rows]
    questions = [str(i) for i in range(args.queries)]

    def encode(batch: list[str]) -> np.ndarray:
        return queries[[int(q) for q in batch]]

    one, one_build = build(vectors, args.method)
    one_ids, one_qps = search_qps(index.DenseRetriever(one, encode), questions, args.k)
    shards, builds = [], []
    for shard_id in range(args.shards):
        lo, hi = args.n * shard_id // args.shards, args.n * (shard_id + 1) // args.shards
        built, seconds = build(vectors[lo:hi], args.method)
        # Row ids in the shard are local; give them global ids as `index build` does via passages.
        built.passages = [{"id": str(lo + r), "title": "", "text": ""} for r in range(hi - lo)]
        shards.append(built)
        builds.append(seconds)
    merged_ids, merged_qps = search_qps(
        sharded.ShardedDenseRetriever(shards, encode), questions, args.k
    )
    print(f"machine: {platform.processor() or platform.machine()}, {args.method}, n={args.n}")
    print(f"| index | build (s) | QPS | recall@{args.k} |")
    print("|---|---:|---:|---:|")
    print(
        f"| one index | {one_build:.1f} | {one_qps:,.0f} | {recall_at_k(np.array(one_ids, int), np.array(truth, int)):.4f} |"
    )
    print(
        f"| {args.shards} shards | {max(builds):.1f} per shard (sum {sum(builds):.1f}) |"
        f" {merged_qps:,.0f} | {recall_at_k(np.array(merged_ids, int), np.array(truth, int)):.4f} |"
    )
    print(
        f"sharded / one-index QPS = {merged_qps / one_qps:.2f}x (shards searched one after another)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
