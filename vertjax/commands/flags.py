"""One way to declare a CLI flag: underscore names (absl/T5X style) with help, and old spellings
kept for one release as hidden aliases that still work and say on stderr what replaces them."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def deprecation_note(old: str, new: str) -> None:
    """Prints the one-line note that `old` (a flag or command) is deprecated in favour of `new`."""
    print(f"vertjax: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def _deprecated(base: type[argparse.Action], new: str) -> type[argparse.Action]:
    """`base` that first prints the deprecation note naming `new`."""

    class DeprecatedAlias(base):
        def __call__(self, parser, namespace, values, option_string=None):
            deprecation_note(option_string, new)
            super().__call__(parser, namespace, values, option_string)

    return DeprecatedAlias


def add_flag(
    parser: argparse._ActionsContainer, name: str, *, aliases: tuple[str, ...] = (), **kwargs: Any
) -> argparse.Action:
    """Adds flag `name` (as `parser.add_argument(name, **kwargs)`) and each old spelling in
    `aliases` as a hidden flag with the same dest that warns when used.

    A required flag with aliases becomes a required group of one visible flag and its hidden
    aliases, so that passing an old spelling alone satisfies it.
    """
    if "-" in name.removeprefix("--") or not kwargs.get("help"):
        raise ValueError(f"{name}: flags are spelt with underscores and need a help text")
    if not aliases:
        return parser.add_argument(name, **kwargs)
    target = parser
    if kwargs.pop("required", False):
        target = parser.add_mutually_exclusive_group(required=True)
    action = target.add_argument(name, **kwargs)
    alias_kwargs = {
        k: v for k, v in kwargs.items() if k not in ("action", "default", "dest", "help")
    }
    for alias in aliases:
        target.add_argument(
            alias,
            action=_deprecated(type(action), name),
            dest=action.dest,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            **alias_kwargs,
        )
    return action


def add_keyword_flags(parser: argparse.ArgumentParser, *, help_text: str) -> None:
    """`--keywords [lexical|llm]` (bare: lexical) and the LLM server it may use."""
    parser.add_argument(
        "--keywords",
        nargs="?",
        const="lexical",
        choices=("lexical", "llm"),
        help=help_text,
    )
    parser.add_argument(
        "--keywords_base_url",
        default=os.environ.get("OPENAI_BASE_URL"),
        help="OpenAI-compatible server for --keywords llm (default: $OPENAI_BASE_URL)",
    )
    parser.add_argument("--keywords_model", help="the model that server serves (--keywords llm)")
