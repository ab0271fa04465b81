"""io_utils: JSONL readers name file:line; the appender resumes without ever dropping good records;
atomic files and folders replace their target whole, with ordinary (or private) modes."""

from __future__ import annotations

import json
import logging
import os
import stat

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


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("private", [False, True])
def test_atomic_file_modes_follow_the_umask_unless_private(tmp_path, umask, private):
    path = tmp_path / "out.txt"
    with io_utils.atomic_file(path, private=private) as f:
        f.write("hello")
    assert path.read_text() == "hello"
    assert _mode(path) == (0o600 if private else 0o666 & ~umask)


def test_atomic_file_replaces_the_content_only_on_success(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with io_utils.atomic_file(path, "wb") as f:
        f.write(b"half")
        assert path.read_bytes() == b"old"  # not visible until the block ends
    assert path.read_bytes() == b"half"
    with pytest.raises(RuntimeError), io_utils.atomic_file(path, "wb") as f:
        f.write(b"broken")
        raise RuntimeError("killed")
    assert path.read_bytes() == b"half"
    assert _leftovers(tmp_path) == []


def test_atomic_file_refuses_modes_other_than_write(tmp_path):
    with pytest.raises(ValueError, match="'a'"), io_utils.atomic_file(tmp_path / "x", "a"):
        pass


@pytest.mark.parametrize("private", [False, True])
def test_atomic_dir_modes_follow_the_umask_unless_private(tmp_path, umask, private):
    out = tmp_path / "out"
    with io_utils.atomic_dir(out, private=private) as tmp:
        (tmp / "part").write_text("x")
    assert _mode(out) == (0o700 if private else 0o777 & ~umask)
    assert (out / "part").read_text() == "x"


def test_atomic_dir_replaces_an_earlier_folder_whole_and_only_on_success(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale").write_text("old")
    with pytest.raises(RuntimeError), io_utils.atomic_dir(out) as tmp:
        (tmp / "new").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["stale"]
    assert _leftovers(tmp_path) == []
    with io_utils.atomic_dir(out) as tmp:
        (tmp / "new").write_text("done")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert _leftovers(tmp_path) == []


def test_atomic_dir_removes_what_a_killed_run_left(tmp_path):
    out = tmp_path / "out"
    killed = tmp_path / ".out.k1ll3d.tmp"
    killed.mkdir()
    (killed / "part").write_text("x")
    other = tmp_path / ".outer.k1ll3d.tmp"  # another target's temporary: not ours to delete
    other.mkdir()
    with io_utils.atomic_dir(out) as tmp:
        (tmp / "part").write_text("y")
    assert _leftovers(tmp_path) == [other.name]
