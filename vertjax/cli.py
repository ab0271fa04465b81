"""`vertjax <command>`: the single command-line entry point.

Each command lives in `vertjax/commands/<name>.py` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`; modules import their heavy dependencies inside `run` so `vertjax --help` is fast.
T5X-style gin flags (`--gin_file`, `--gin.NAME=VALUE`, `--gin_search_paths`) are accepted by every
command that declares them through `vertjax.gin_utils.add_gin_flags`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from vertjax import errors, gin_utils

# (command name, module). Order is the order `vertjax --help` lists them.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("train", "vertjax.commands.train"),
    ("eval", "vertjax.commands.eval"),
    ("infer", "vertjax.commands.infer"),
    ("convert", "vertjax.commands.convert"),
    ("vocab", "vertjax.commands.vocab"),
    ("data", "vertjax.commands.data"),
    ("synth", "vertjax.commands.synth"),
    ("index", "vertjax.commands.index"),
    ("retrieve", "vertjax.commands.retrieve"),
    ("ood", "vertjax.commands.ood"),
    ("consistency", "vertjax.commands.consistency"),
    ("answer", "vertjax.commands.answer"),
    ("chat", "vertjax.commands.chat"),
    ("serve", "vertjax.commands.serve"),
    ("llm", "vertjax.commands.llm"),
    ("demo", "vertjax.commands.demo"),
)


def _available_commands() -> list[tuple[str, object]]:
    """Imports the command modules that exist (later issues add more)."""
    found = []
    for name, module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        found.append((name, module))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vertjax",
        description="T5X-style JAX/Flax recipes for trustworthy vertical-domain language models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, module in _available_commands():
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def configure_logging(*, verbose: bool) -> None:
    """INFO with --verbose, else warnings only. The level is also set on the console handler:
    libraries that set their own logger to DEBUG on import (bm25s) would otherwise print
    their DEBUG lines past the root logger's level."""
    if not verbose:  # orbax/absl chatter (e.g. read-only manager notices) is not for users
        logging.getLogger("absl").setLevel(logging.ERROR)
    level = logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    """Parses argv, runs the command and maps `VertjaxError` to one line on stderr and exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(gin_utils.normalize_argv(argv))
    configure_logging(verbose=args.verbose)
    try:
        return int(args._run(args) or 0)
    except errors.VertjaxError as e:
        print(f"vertjax {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"vertjax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
