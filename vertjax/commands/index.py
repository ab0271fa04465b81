"""`vertjax index build`: encode passages with a dual encoder into a ScaNN/brute index (+ BM25)."""

from __future__ import annotations

import argparse
import json

HELP = "build a retrieval index: dense (ScaNN or brute force) and/or BM25, resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="index_command", metavar="<action>", required=True)
    build = sub.add_parser("build", help="encode a passages JSONL and build the index (resumable)")
    build.add_argument(
        "--passages", required=True, help="passages JSONL {id, title, text} or a data pack folder"
    )
    build.add_argument("--out", required=True, help="index directory (a rerun resumes it)")
    build.add_argument("--retriever", help="dual-encoder run dir or RUN_DIR/checkpoint_<step>")
    build.add_argument("--vocab", help="the retriever's SentencePiece model (or its dir)")
    build.add_argument("--method", choices=("scann", "brute"), default="scann")
    build.add_argument("--bm25", action="store_true", help="also build the BM25 index")
    build.add_argument("--passage_length", type=int, default=256, help="passage tokens encoded")
    build.add_argument(
        "--question_length", type=int, default=64, help="question tokens at search time"
    )
    build.add_argument("--batch_size", type=int, default=64, help="passages per encoder batch")
    build.add_argument(
        "--scann",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="ScaNN parameter override, e.g. --scann num_leaves=1000 (repeatable)",
    )
    build.add_argument("--no_progress", action="store_true", help="no progress bar")


def _scann_params(pairs: list[str]) -> dict[str, object]:
    from vertjax import errors

    params: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise errors.ConfigError(f"--scann {pair!r}: expected NAME=VALUE")
        try:
            params[name.strip()] = json.loads(value.strip().lower())
        except json.JSONDecodeError:
            raise errors.ConfigError(
                f"--scann {pair!r}: VALUE must be a number or true/false"
            ) from None
    return params


def run(args: argparse.Namespace) -> int:
    from vertjax.retrieval import encode

    summary = encode.build_index(
        passages=args.passages,
        out=args.out,
        retriever=args.retriever,
        vocab=args.vocab,
        method=args.method,
        bm25=args.bm25,
        passage_length=args.passage_length,
        question_length=args.question_length,
        batch_size=args.batch_size,
        scann_params=_scann_params(args.scann),
        progress=not args.no_progress,
    )
    print(json.dumps(summary, indent=2))
    return 0
