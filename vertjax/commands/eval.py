"""`vertjax eval ppl|retrieval|consistency`: perplexity, retrieval metrics, NLI consistency."""

from __future__ import annotations

import argparse
import json

from vertjax import gin_utils
from vertjax.commands import consistency, flags

HELP = (
    "evaluate: `vertjax eval ppl --gin_file=runs/eval.gin --gin.CHECKPOINT=...` | "
    "`vertjax eval retrieval --questions Q.jsonl --index DIR` | "
    "`vertjax eval consistency --checkpoint RUN --vocab V --pairs P.jsonl`"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="<what>", required=True)
    ppl = sub.add_parser("ppl", help="per-task perplexity of a checkpoint (gin-configured)")
    gin_utils.add_gin_flags(ppl)
    ppl.set_defaults(_eval=_run_ppl)
    retrieval = sub.add_parser(
        "retrieval", help="recall@k, MRR@10, nDCG@10 of bm25/dense/hybrid retrieval side by side"
    )
    retrieval.add_argument(
        "--questions", required=True, help="JSONL {id, question, positive_ids | answers}"
    )
    retrieval.add_argument(
        "--index", required=True, action="append", metavar="[NAME=]DIR", help="repeatable"
    )
    retrieval.add_argument("--out", help="report folder (default: DIR/eval of the first index)")
    retrieval.add_argument(
        "--retrievers", default="bm25,dense,hybrid", help="comma-separated: bm25, dense, hybrid"
    )
    flags.add_keyword_flags(
        retrieval,
        help_text="also score each system with keywords appended: lexical (the default when"
        " bare) or llm (few-shot through --keywords_base_url)",
    )
    retrieval.add_argument(
        "--no_rewrite", action="store_true", help="skip rewriting questions that have a history"
    )
    retrieval.add_argument("--no_verify", action="store_true", help="skip index SHA-256 checks")
    retrieval.set_defaults(_eval=_run_retrieval)
    consistency_eval = sub.add_parser("consistency", help=consistency.EVAL_HELP)
    consistency.add_eval_arguments(consistency_eval)
    consistency_eval.set_defaults(_eval=consistency.run_eval)


def run(args: argparse.Namespace) -> int:
    return args._eval(args)


def _run_ppl(args: argparse.Namespace) -> int:
    import gin

    from vertjax.eval import ppl

    gin_utils.parse_from_args(args)
    gin_utils.check_required_macros()
    results = gin_utils.call_configurable(gin.get_configurable(ppl.evaluate_ppl))
    print(json.dumps(results, indent=2))
    return 0


def _run_retrieval(args: argparse.Namespace) -> int:
    import pathlib

    from vertjax.retrieval import evaluate

    indexes = evaluate.parse_index_args(args.index)
    result = evaluate.evaluate_indexes(
        questions=args.questions,
        indexes=indexes,
        out_dir=args.out or pathlib.Path(next(iter(indexes.values()))) / "eval",
        kinds=[k.strip() for k in args.retrievers.split(",") if k.strip()],
        keyword_kind=args.keywords,
        keywords_base_url=args.keywords_base_url,
        keywords_model=args.keywords_model,
        with_rewrite=not args.no_rewrite,
        verify=not args.no_verify,
    )
    print(result["markdown"])
    print(f"table: {result['table']}\nplot: {result['plot']}")
    return 0
