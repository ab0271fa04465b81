"""`vertjax index build`: encode passages with a dual encoder into a ScaNN/brute index (+ BM25).

Settings come from gin (`--gin_file=index/scann.gin`, `--gin.SCANN_PARAMS=...`: bindings of
`encode.build_index`) and from flags; a flag given on the command line wins over gin. With gin,
the operative config is written to `OUT/config.gin`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from vertjax import gin_utils

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
    build.add_argument("--method", choices=("scann", "brute"), help="default: scann")
    build.add_argument("--bm25", action="store_true", help="also build the BM25 index")
    build.add_argument("--passage_length", type=int, help="passage tokens encoded (default 256)")
    build.add_argument(
        "--question_length", type=int, help="question tokens at search time (default 64)"
    )
    build.add_argument("--batch_size", type=int, help="passages per encoder batch (default 64)")
    build.add_argument(
        "--scann",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="ScaNN parameter override, e.g. --scann num_leaves=1000 (repeatable)",
    )
    build.add_argument(
        "--num_shards",
        type=int,
        help="split the index into this many shards (default 1); run one build per shard",
    )
    build.add_argument(
        "--shard_id",
        type=int,
        help="which shard (0-based) this process builds, with --num_shards (default 0)",
    )
    build.add_argument("--no_progress", action="store_true", help="no progress bar")
    gin_utils.add_gin_flags(build)


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


def _build_index_fn(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """`encode.build_index` with its gin bindings (when gin flags were given), and the bindings."""
    import gin

    from vertjax.retrieval import encode

    if not (args.gin_file or args.gin_bindings):
        return encode.build_index, {}
    gin_utils.parse_from_args(args)
    try:
        return gin.get_configurable(encode.build_index), gin.get_bindings(encode.build_index)
    except ValueError:  # the gin files do not mention build_index: nothing to bind
        return encode.build_index, {}


def run(args: argparse.Namespace) -> int:
    build_index, bindings = _build_index_fn(args)
    flags = {
        "method": args.method,
        "passage_length": args.passage_length,
        "question_length": args.question_length,
        "batch_size": args.batch_size,
        "num_shards": args.num_shards,
        "shard_id": args.shard_id,
    }
    overrides = _scann_params(args.scann)
    if overrides:  # on top of the gin-bound ones
        flags["scann_params"] = {**(bindings.get("scann_params") or {}), **overrides}
    summary = gin_utils.call_configurable(
        build_index,
        passages=args.passages,
        out=args.out,
        retriever=args.retriever,
        vocab=args.vocab,
        bm25=args.bm25,
        progress=not args.no_progress,
        **{name: value for name, value in flags.items() if value is not None},
    )
    if bindings:  # what the index was built with, as T5X keeps MODEL_DIR/config.gin
        gin_utils.write_operative_config(args.out)
    print(json.dumps(summary, indent=2))
    return 0
