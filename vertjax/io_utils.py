"""JSONL records and atomic files: the one place that reads and writes vertjax's record files.

Readers name the file and line of a bad record; writers never leave a half-written file or folder
that looks complete (`atomic_file`/`atomic_dir`: write a temp sibling, then rename it into place,
with the modes `open`/`mkdir` would give), and append-only writers let long jobs resume.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from vertjax import errors

PathLike = str | os.PathLike
# Every temporary of `atomic_file`/`atomic_dir` is named `.<name>.<random>.tmp`.
TEMP_SUFFIX = ".tmp"


def read_jsonl(path: PathLike, *, required_keys: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Yields one dict per non-blank line; a bad line raises `DataError` naming file and line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.DataError("file not found", path=path)
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise errors.DataError("line is not valid UTF-8", path=path, line=line_no) from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise errors.DataError(f"invalid JSON ({e.msg})", path=path, line=line_no) from None
            if not isinstance(record, dict):
                raise errors.DataError("expected a JSON object", path=path, line=line_no)
            missing = [k for k in required_keys if k not in record]
            if missing:
                raise errors.DataError(
                    f"missing key(s) {', '.join(missing)}", path=path, line=line_no
                )
            yield record


def load_jsonl(path: PathLike, *, required_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Reads a whole JSONL file; raises `DataError` if it holds no record."""
    records = list(read_jsonl(path, required_keys=required_keys))
    if not records:
        raise errors.DataError("no records (empty file)", path=path)
    return records


@contextlib.contextmanager
def atomic_file(path: PathLike, mode: str = "w", *, private: bool = False) -> Iterator[IO[Any]]:
    """Yields a file (text "w" in UTF-8, or binary "wb") that replaces `path` only when the block
    ends without error: a temp file in the same folder, fsynced, then renamed over `path`; on
    error the temp file is removed and `path` is untouched.

    The file gets the mode `open` would give (0644 under umask 022); `mkstemp` makes 0600, which
    other users sharing an artifact could not read. `private=True` keeps 0600.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes with mode 'w' or 'wb', not {mode!r}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        if not private:
            os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding="utf-8" if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike, *, private: bool = False) -> Iterator[pathlib.Path]:
    """Yields an empty temp folder beside `path` to fill; when the block ends without error it
    replaces `path` whole (an earlier `path` is moved aside, then deleted), on error it is removed.

    Temporaries a killed earlier run left beside `path` are removed first (so two runs must not
    write the same `path` at once). The folder gets the mode `mkdir` would give (0755 under umask
    022); `mkdtemp` makes 0700. `private=True` keeps 0700.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_temporaries(path)
    tmp = pathlib.Path(
        tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    )
    try:
        if not private:
            os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = path.with_name(f".{path.name}.old-{os.getpid()}{TEMP_SUFFIX}")
        replacing = path.exists() or path.is_symlink()
        if replacing:
            os.replace(path, old)
        os.replace(tmp, path)
        if replacing:
            _remove(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_temporaries(path: PathLike) -> list[pathlib.Path]:
    """Deletes the temp files and folders that an interrupted `atomic_file(path)` or
    `atomic_dir(path)` left beside `path`; returns them."""
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        return []
    found = sorted(path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"))
    for left in found:
        _remove(left)
    return found


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes, *, private: bool = False) -> pathlib.Path:
    """Writes bytes to `path` atomically (see `atomic_file`)."""
    with atomic_file(path, "wb", private=private) as f:
        f.write(data)
    return pathlib.Path(path)


def atomic_write_text(path: PathLike, text: str, *, private: bool = False) -> pathlib.Path:
    """Writes UTF-8 text to `path` atomically (see `atomic_file`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), private=private)


def contained_name(name: Any) -> bool:
    """Whether a file name read from a manifest stays inside the manifest's folder: a non-empty
    relative path without `..` parts (a manifest naming `../../etc/passwd` must not be followed)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    path = pathlib.PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def _umask() -> int:
    """The process umask; read from /proc where it can be, since setting it to read it races
    with other threads creating files."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_jsonl(path: PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Atomically writes records as JSONL; returns how many were written."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def atomic_write_json(path: PathLike, obj: Any, *, private: bool = False) -> pathlib.Path:
    """Writes `obj` as indented JSON to `path` atomically (see `atomic_file`)."""
    return atomic_write_text(
        path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", private=private
    )


class JsonlAppender:
    """Append-only JSONL for resumable jobs: one flushed, fsynced line per record.

    On open, a torn last line (a kill mid-write leaves one without its newline) is truncated away
    with a warning, and the keys already written are available as `seen` so a restarted job skips
    them and writes no duplicates. A damaged complete line is never dropped: it is a `DataError`
    naming the file and line, and the file is left as it is.
    """

    def __init__(self, path: PathLike, *, key: str = "id"):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.seen: set[Any] = set()
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            self._recover()
        self._f = self.path.open("a", encoding="utf-8")

    def _recover(self) -> None:
        data = self.path.read_bytes()
        good_end = 0
        for line_no, line in enumerate(data.splitlines(keepends=True), start=1):
            if not line.endswith(b"\n"):
                break  # torn final line: the only thing a kill can leave behind
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise errors.DataError(
                    f"damaged record ({e}); fix or remove this line and rerun to resume "
                    "(nothing was changed)",
                    path=self.path,
                    line=line_no,
                ) from None
            if not isinstance(record, dict):
                raise errors.DataError(
                    "expected a JSON object; fix or remove this line and rerun to resume",
                    path=self.path,
                    line=line_no,
                )
            good_end += len(line)
            self.records.append(record)
            self.seen.add(record.get(self.key))
        if good_end != len(data):
            torn = len(data) - good_end
            logging.warning(
                "%s: dropping a torn last line (%d bytes, no newline) left by an interrupted write",
                self.path,
                torn,
            )
            with self.path.open("r+b") as f:
                f.truncate(good_end)

    def append(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.seen.add(record.get(self.key))
        self.records.append(record)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
