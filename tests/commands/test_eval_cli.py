"""`vertjax eval consistency` is the home of the consistency evaluation; the old
`vertjax consistency eval` still runs it, hidden from help, with a deprecation note."""

from __future__ import annotations

from vertjax import cli
from vertjax.commands import consistency


def test_consistency_eval_is_a_hidden_alias_of_eval_consistency(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(consistency, "run_eval", lambda args: calls.append(args) or 0)
    flags = ["--checkpoint", "run", "--vocab", "v", "--pairs", "p.jsonl"]
    assert cli.main(["eval", "consistency", *flags]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["consistency", "eval", *flags]) == 0
    assert "vertjax consistency eval is deprecated" in capsys.readouterr().err
    shared = ("checkpoint", "vocab", "pairs", "out", "threshold")
    assert [{k: getattr(a, k) for k in shared} for a in calls] == [
        {"checkpoint": "run", "vocab": "v", "pairs": "p.jsonl", "out": None, "threshold": 0.5}
    ] * 2
    help_text = _subparser(cli.build_parser(), "consistency").format_help()
    assert "eval" not in help_text.split("positional arguments:")[1]


def _subparser(parser, name):
    (sub,) = (a for a in parser._actions if a.dest == "command")
    return sub.choices[name]
