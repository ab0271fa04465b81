"""`vertjax retrieve --index DIR --question "..."`: ranked passages from a built index."""

from __future__ import annotations

import argparse
import json

from vertjax.commands import flags

HELP = "search an index: ranked passages with ids, titles and scores (bm25 | dense | hybrid)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="a directory built by `vertjax index build`")
    parser.add_argument("--question", required=True, action="append", help="repeatable")
    parser.add_argument("-k", type=int, default=5, help="passages per question")
    parser.add_argument(
        "--retriever",
        choices=("bm25", "dense", "hybrid"),
        default="dense",
        help="bm25 and hybrid need an index built with --bm25",
    )
    flags.add_keyword_flags(
        parser,
        help_text="append keywords to the question: lexical (IDF, offline; the default when bare)"
        " or llm (few-shot, ChatDoctor-style, through --keywords_base_url)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per hit")
    parser.add_argument("--width", type=int, default=200, help="text characters shown per hit")
    parser.add_argument(
        "--no_verify", action="store_true", help="skip the SHA-256 check of the index files"
    )


def run(args: argparse.Namespace) -> int:
    from vertjax import errors
    from vertjax.retrieval import dense, keywords

    if args.k < 1:
        raise errors.ConfigError(f"-k must be >= 1, got {args.k}")
    retriever = dense.open_retriever(args.index, args.retriever, verify=not args.no_verify)
    if args.keywords:
        extractor = keywords.open_extractor(
            args.keywords,
            index_dir=args.index,
            base_url=args.keywords_base_url,
            model=args.keywords_model,
        )
        retriever = keywords.KeywordRetriever(retriever, extractor)
    results = retriever.search(list(args.question), args.k)
    for question, hits in zip(args.question, results, strict=True):
        if args.json:
            for hit in hits:
                print(json.dumps(hit.to_json(), ensure_ascii=False))
            continue
        print(f"# {question}")
        if not hits:
            print("  (no passages)")
        for hit in hits:
            text = " ".join(hit.text.split())
            if len(text) > args.width:
                text = text[: args.width - 3] + "..."
            where = hit.url or hit.source
            shown = f"{hit.title} ({where})" if where else hit.title
            print(f"{hit.rank:>3}  {hit.score:9.4f}  {hit.id}  {shown}")
            print(f"     {text}")
    return 0
