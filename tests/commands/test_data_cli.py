"""`vertjax data list|build|report` through the real CLI entry point."""

from __future__ import annotations

import json

from vertjax import cli


def test_data_list_build_report(tmp_path, capsys):
    assert cli.main(["data", "list"]) == 0
    listed = capsys.readouterr().out
    assert "python-stdlib" in listed and "tfds:NAME" in listed

    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        (source / f"n{i}.txt").write_text(
            f"Note {i}\n\n" + " ".join(f"w{i}x{k}" for k in range(60)), encoding="utf-8"
        )
    out = tmp_path / "pack"
    code = cli.main(
        [
            "data",
            "build",
            "folder",
            "--source",
            str(source),
            "--out",
            str(out),
            "--max_tokens",
            "20",
            "--overlap",
            "4",
            "--validation_fraction",
            "0.2",
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"{json.dumps(manifest['counts'])}" in capsys.readouterr().out
    assert manifest["chunking"]["max_tokens"] == 20 and manifest["counts"]["documents"] == 6
    assert manifest["domain"]["name"] == "src"  # a folder's domain defaults to its name

    assert cli.main(["data", "report", str(out)]) == 0
    assert f"{manifest['counts']['passages']} passages" in capsys.readouterr().out
    assert (out / "corpus_report.json").is_file() and (out / "passage_lengths.png").is_file()


def test_data_build_python_stdlib(tmp_path, capsys):
    out = tmp_path / "stdlib"
    assert cli.main(["data", "build", "python-stdlib", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents"] > 100 and manifest["counts"]["passages"] > 1000
    assert manifest["license"] == "PSF-2.0"


def test_data_errors_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(
        [
            "data",
            "build",
            "folder",
            "--source",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no documents" in err and len(err.splitlines()) == 1
    assert cli.main(["data", "report", str(tmp_path / "empty")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "data",
                "build",
                "python-stdlib",
                "--out",
                str(tmp_path / "x"),
                "--max_tokens",
                "8",
                "--overlap",
                "8",
            ]
        )
        == 2
    )
    assert "overlap" in capsys.readouterr().err


def test_data_build_domain_flags(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.md").write_text("# A\n\n" + " ".join(f"w{k}" for k in range(40)), encoding="utf-8")
    out = tmp_path / "pack"
    args = ["data", "build", "folder", "--source", str(source), "--out", str(out)]
    assert cli.main([*args, "--domain_name", "SQLite", "--domain_description", "the manual"]) == 0
    assert json.loads((out / "manifest.json").read_text())["domain"] == {
        "name": "SQLite",
        "description": "the manual",
    }
    assert "domain: SQLite" in capsys.readouterr().out
