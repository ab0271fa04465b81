"""`vertjax chat --config ...`: a multi-turn REPL on stdin; follow-ups are rewritten in context."""

from __future__ import annotations

import argparse
import sys

from vertjax.commands import answer

HELP = "multi-turn chat on stdin (history kept, follow-ups rewritten); /reset, /exit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    answer.add_system_flags(parser)
    parser.add_argument(
        "--max_history", type=int, default=10, help="user turns kept for context rewriting"
    )
    parser.add_argument("--quiet", action="store_true", help="print answers only")


def run(args: argparse.Namespace) -> int:
    assistant = answer.build_assistant(args)
    interactive = sys.stdin.isatty()
    history: list[str] = []
    if interactive:
        print("Ask a question (/reset clears the history, /exit or Ctrl-D quits).")
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            break
        question = line.strip()
        if not question:
            continue
        if question in ("/exit", "/quit"):
            break
        if question == "/reset":
            history.clear()
            print("(history cleared)")
            continue
        result = assistant.answer(question, history=history[-args.max_history :])
        answer.print_result(result, verbose=not args.quiet)
        print(flush=True)
        history.append(result.rewritten_question)
    return 0
