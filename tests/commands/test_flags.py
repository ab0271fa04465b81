"""`flags.add_flag`: the visible underscore flag, hidden old spellings that warn, required kept."""

from __future__ import annotations

import argparse

import pytest

from vertjax.commands import flags


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    flags.add_flag(parser, "--out", aliases=("--output",), required=True, help="output file")
    flags.add_flag(parser, "--batch_size", aliases=("--batch-size",), type=int, default=8, help="b")
    flags.add_flag(parser, "--to_hf", aliases=("--to-hf",), action="store_true", help="direction")
    flags.add_flag(parser, "--seed", type=int, default=0, help="no old spelling")
    return parser


def test_new_spellings_parse_with_defaults_and_no_note(capsys):
    args = _parser().parse_args(["--out", "o"])
    assert vars(args) == {"out": "o", "batch_size": 8, "to_hf": False, "seed": 0}
    assert capsys.readouterr().err == ""


def test_old_spellings_set_the_same_dest_and_each_prints_one_note(capsys):
    args = _parser().parse_args(["--output", "o", "--batch-size", "3", "--to-hf"])
    assert vars(args) == {"out": "o", "batch_size": 3, "to_hf": True, "seed": 0}
    assert capsys.readouterr().err.splitlines() == [
        "vertjax: --output is deprecated and goes in the next release; use --out",
        "vertjax: --batch-size is deprecated and goes in the next release; use --batch_size",
        "vertjax: --to-hf is deprecated and goes in the next release; use --to_hf",
    ]


def test_help_shows_only_the_new_spellings():
    text = _parser().format_help()
    assert "--batch_size" in text and "--to_hf" in text and "--out OUT" in text
    assert not any(old in text for old in ("--output", "--batch-size", "--to-hf"))


def test_a_required_flag_is_still_required_and_not_given_twice(capsys):
    for argv in ([], ["--out", "a", "--output", "b"]):
        with pytest.raises(SystemExit) as exit_info:
            _parser().parse_args(argv)
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out is required" in err and "--output: not allowed with argument --out" in err


@pytest.mark.parametrize(
    ("name", "kwargs"), [("--batch-size", {"help": "b"}), ("--batch_size", {}), ("--out", {})]
)
def test_a_dashed_name_or_missing_help_is_refused(name, kwargs):
    with pytest.raises(ValueError, match="underscores and need a help text"):
        flags.add_flag(argparse.ArgumentParser(), name, **kwargs)
