"""`vertjax eval consistency` is the same command as `vertjax consistency eval`."""

from __future__ import annotations

from vertjax import cli
from vertjax.commands import consistency


def test_eval_consistency_alias_runs_the_consistency_evaluation():
    argv = ["eval", "consistency", "--checkpoint", "run", "--vocab", "v", "--pairs", "p.jsonl"]
    args = cli.build_parser().parse_args(argv)
    assert args._eval is consistency.run_eval
    direct = cli.build_parser().parse_args(["consistency", "eval", *argv[2:]])
    assert direct._consistency is consistency.run_eval
    shared = ("checkpoint", "vocab", "pairs", "out", "threshold")
    assert {k: getattr(args, k) for k in shared} == {k: getattr(direct, k) for k in shared}
