"""`vertjax answer --config system/default.gin "question"`: one cited answer."""

from __future__ import annotations

import argparse

from vertjax import gin_utils

HELP = "answer a question with citations: retrieve, select, generate, check (gin-configured)"


def add_system_flags(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` (a gin file, like --gin_file) plus the T5X gin flags."""
    gin_utils.add_gin_flags(parser)
    parser.add_argument(
        "--config",
        dest="gin_file",
        action="append",
        metavar="FILE",
        help="the system's gin file, e.g. system/default.gin (same as --gin_file)",
    )


def build_assistant(args: argparse.Namespace):
    """Parses the gin flags and builds the configured `Assistant`."""
    from vertjax import errors
    from vertjax.system import build

    if not args.gin_file:
        raise errors.ConfigError("pass --config system/default.gin (or --gin_file)")
    gin_utils.parse_from_args(args)
    return build.from_gin()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_system_flags(parser)
    parser.add_argument("question", help="the question (several sub-questions are fine)")
    parser.add_argument(
        "--history",
        action="append",
        default=[],
        metavar="TURN",
        help="an earlier user turn, for context rewriting; repeatable, oldest first",
    )
    parser.add_argument("--json", action="store_true", help="print the structured result")


def print_result(result, *, verbose: bool = False) -> None:
    """The answer, then (verbose) how it was reached: rewriting, sub-questions, verdicts."""
    if verbose:
        if result.rewritten_question != result.question:
            print(f"(rewritten: {result.rewritten_question})")
        if len(result.sub_questions) > 1:
            for i, sub in enumerate(result.sub_questions, start=1):
                print(f"(sub-question {i}: {sub.text})")
    print(result.answer)
    if verbose and not result.refused:
        for s in result.sentences:
            p = "n/a" if s.p_entailment is None else f"{s.p_entailment:.2f}"
            r = "n/a" if s.relevance is None else f"{s.relevance:.2f}"
            print(f"  - {s.status} (p_entailment {p}), relevance {r}: {s.text[:80]}")
        stages = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
        print(f"  timings: {stages}")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    result = build_assistant(args).answer(args.question, history=args.history)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), ensure_ascii=False, indent=2))
    else:
        print_result(result, verbose=True)
    return 0
