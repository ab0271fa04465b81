"""`vertjax eval <what>`: perplexity now; retrieval and consistency evaluations register here too."""

from __future__ import annotations

import argparse
import json

from vertjax import gin_utils

HELP = "evaluate a checkpoint: `vertjax eval ppl --gin_file=runs/eval.gin --gin.CHECKPOINT=...`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="<what>", required=True)
    ppl = sub.add_parser("ppl", help="per-task perplexity of a checkpoint (gin-configured)")
    gin_utils.add_gin_flags(ppl)
    ppl.set_defaults(_eval=_run_ppl)


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
