"""Every `vertjax` flag is spelt with underscores and has help; old spellings still work, hidden."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from vertjax import cli


def _parsers(
    parser: argparse.ArgumentParser, path: str = "vertjax"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """`(command path, parser)` for the top-level parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_has_help_and_every_visible_flag_uses_underscores():
    problems = []
    for path, parser in _parsers(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help:
                problems.append(f"{path} {name}: no help")
            if action.help is argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                if "-" in option.lstrip("-"):
                    problems.append(f"{path} {option}: dashed")
    assert problems == []


def test_the_walk_sees_every_command():
    paths = {path for path, _ in _parsers(cli.build_parser())}
    assert {"vertjax synth self-qa", "vertjax eval consistency", "vertjax serve"} <= paths
    assert len(paths) > len(cli.COMMANDS)


OLD_SPELLINGS = [
    (["synth", "self-qa", "--passages", "p", "--out", "o"], "--api-key-env", "K", "api_key_env"),
    (["synth", "self-kg", "--out", "o"], "--max-entities", "7", "max_entities"),
    (["data", "build", "stdlib", "--out", "o"], "--max-tokens", "64", "max_tokens"),
    (["convert", "--out", "o"], "--from-hf", "hf", "from_hf"),
    (["infer", "--checkpoint", "c", "--vocab", "v", "--input", "i"], "--output", "x", "out"),
]


@pytest.mark.parametrize(("argv", "old", "value", "dest"), OLD_SPELLINGS)
def test_an_old_spelling_still_works_warns_and_is_hidden(argv, old, value, dest, capsys):
    args = cli.build_parser().parse_args([*argv, old, value])
    assert str(getattr(args, dest)) == value
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{old} is deprecated" in err
    new = "--" + dest
    assert f"use {new}" in err
    parsers = dict(_parsers(cli.build_parser()))
    command = " ".join(["vertjax", *(a for a in argv[:2] if not a.startswith("-"))])
    usage = parsers.get(command, parsers[f"vertjax {argv[0]}"]).format_help()
    assert new in usage and old not in usage


def test_the_new_spelling_does_not_warn(capsys):
    args = cli.build_parser().parse_args(["synth", "self-kg", "--out", "o", "--max_entities", "7"])
    assert args.max_entities == 7
    assert capsys.readouterr().err == ""


def test_library_debug_and_info_logs_only_with_verbose(tmp_path):
    """bm25s sets its logger to DEBUG when imported: `index build` printed "DEBUG bm25s:
    Building index from IDs objects" until the console handler got the level too."""
    import os
    import subprocess
    import sys

    from conftest import tiny_corpus_records

    from vertjax import io_utils

    io_utils.write_jsonl(tmp_path / "p.jsonl", tiny_corpus_records(20))

    def stderr(*flags: str, out: str) -> str:
        argv = ["index", "build", "--passages", str(tmp_path / "p.jsonl"), "--bm25"]
        proc = subprocess.run(
            [sys.executable, "-m", "vertjax.cli", *flags, *argv, "--out", str(tmp_path / out)],
            capture_output=True,
            text=True,
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stderr

    assert stderr(out="quiet") == ""
    assert "DEBUG" not in stderr("--verbose", out="verbose")
