"""io_utils: JSONL readers name file:line; the appender resumes without ever dropping good records."""

from __future__ import annotations

import json
import logging

import pytest

from vertjax import errors, io_utils


def _write(path, records):
    with io_utils.JsonlAppender(path) as out:
        for r in records:
            out.append(r)


def test_appender_resumes_and_skips_seen_keys(tmp_path):
    path = tmp_path / "out.jsonl"
    _write(path, [{"id": i} for i in range(3)])
    with io_utils.JsonlAppender(path) as out:
        assert out.seen == {0, 1, 2} and len(out.records) == 3
        out.append({"id": 3})
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == [0, 1, 2, 3]


def test_appender_truncates_only_a_torn_last_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    _write(path, [{"id": i} for i in range(3)])
    good = path.read_bytes()
    with path.open("ab") as f:
        f.write(b'{"id": "to')
    with caplog.at_level(logging.WARNING), io_utils.JsonlAppender(path) as out:
        assert len(out.records) == 3
    assert path.read_bytes() == good
    assert "torn last line" in caplog.text


def test_appender_never_drops_records_after_a_damaged_line(tmp_path):
    path = tmp_path / "out.jsonl"
    _write(path, [{"id": i} for i in range(30)])
    lines = path.read_text().splitlines(keepends=True)
    lines[20] = lines[20][:5] + "\n"  # line 21 cut short, 9 valid records after it
    path.write_text("".join(lines))
    damaged = path.read_bytes()
    with pytest.raises(errors.DataError, match=r"out\.jsonl:21: damaged record"):
        io_utils.JsonlAppender(path)
    assert path.read_bytes() == damaged


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\n[1, 2]\n')
    with pytest.raises(errors.DataError, match=r"bad\.jsonl:2: expected a JSON object"):
        io_utils.load_jsonl(path)
