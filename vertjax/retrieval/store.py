"""On-disk pieces of a retrieval index: passage metadata, resumable embeddings, file checksums.

- `PassageStore`: passages `{id, title, text}` (+ `doc_id`, `source`, `url` for citations when the
  records have them) in a JSONL file plus an int64 byte-offset `.npy`, so
  row i is one seek + one `json.loads` — a 1M-passage corpus is never loaded eagerly.
- `EmbeddingWriter`: fills a memory-mapped float32 `embeddings.npy` shard by shard and records the
  last complete shard in a small JSON file, so an interrupted encoding resumes there.
- `file_record`/`check_files`: sizes and SHA-256 of index files, so truncation and corruption are
  reported as `RetrievalIndexError` instead of wrong search results.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils

PathLike = str | os.PathLike
EMBEDDINGS_FILE = "embeddings.npy"
PROGRESS_FILE = "embeddings.progress.json"
PASSAGES_FILE = "passages.jsonl"
OFFSETS_SUFFIX = ".offsets.npy"


def sha256_file(path: PathLike, *, chunk_bytes: int = 1 << 24) -> str:
    """Hex SHA-256 of a file, read in chunks (a 3 GB embeddings file takes a few seconds)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: PathLike) -> dict[str, Any]:
    """`{bytes, sha256}` of a file, as stored in an index manifest."""
    return {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def check_files(root: PathLike, files: Mapping[str, Mapping[str, Any]], *, verify: bool) -> None:
    """Checks that every manifest file exists with its size (and, if `verify`, its SHA-256)."""
    root = pathlib.Path(root)
    for name, record in files.items():
        if not io_utils.contained_name(name):
            raise errors.RetrievalIndexError(
                f"{root}: the manifest names {str(name)[:100]!r}, outside the index (refused)"
            )
        path = root / name
        if not path.is_file():
            raise errors.RetrievalIndexError(f"{path}: missing index file (rebuild the index)")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise errors.RetrievalIndexError(
                f"{path}: {size} bytes, the manifest says {record['bytes']} (truncated or replaced"
                " file; rebuild the index)"
            )
        if verify and sha256_file(path) != record["sha256"]:
            raise errors.RetrievalIndexError(
                f"{path}: checksum mismatch (corrupted file; rebuild the index)"
            )


def open_embeddings(path: PathLike, *, mode: str = "r") -> np.memmap:
    """Memory-maps a float32 [count, dim] `.npy`; a bad header raises `RetrievalIndexError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.RetrievalIndexError(f"{path}: embeddings file not found")
    try:
        array = np.load(path, mmap_mode=mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise errors.RetrievalIndexError(f"{path}: unreadable embeddings file ({e})") from None
    if array.ndim != 2 or array.dtype != np.float32:
        raise errors.RetrievalIndexError(
            f"{path}: expected a float32 [count, dim] array, found {array.dtype} {array.shape}"
        )
    return array


class PassageStore:
    """Row-addressable passages in `<name>.jsonl` with byte offsets in `<name>.jsonl.offsets.npy`.

    `offsets` has count + 1 entries: row i is the bytes `offsets[i]:offsets[i + 1]` of the JSONL.
    """

    def __init__(self, path: PathLike, offsets: np.ndarray):
        self.path = pathlib.Path(path)
        self.offsets = offsets
        self._file = None

    @staticmethod
    def offsets_path(path: PathLike) -> pathlib.Path:
        return pathlib.Path(f"{os.fspath(path)}{OFFSETS_SUFFIX}")

    @classmethod
    def write(cls, path: PathLike, passages: Iterable[Mapping[str, Any]]) -> PassageStore:
        """Streams passages to JSONL `{id, title, text, ...}` + offsets, both written atomically."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = [0]
        seen: set[str] = set()
        with io_utils.atomic_file(path, "wb") as f:
            for row, passage in enumerate(passages):
                record = passage_record(passage, where=f"passage {row}")
                if record["id"] in seen:
                    raise errors.DataError(f"duplicate passage id {record['id']!r} (row {row})")
                seen.add(record["id"])
                line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
                f.write(line)
                offsets.append(offsets[-1] + len(line))
            save_npy(cls.offsets_path(path), np.asarray(offsets, dtype=np.int64))
        return cls(path, np.asarray(offsets, dtype=np.int64))

    @classmethod
    def from_jsonl(cls, path: PathLike) -> PassageStore:
        """Indexes an existing passages JSONL (`id` required) in one pass, without keeping texts."""
        path = pathlib.Path(path)
        if not path.is_file():
            raise errors.DataError("passages file not found", path=path)
        offsets: list[int] = []
        seen: set[str] = set()
        position = 0
        with path.open("rb") as f:
            for line_no, raw in enumerate(f, start=1):
                start, position = position, position + len(raw)
                if not raw.strip():
                    continue  # a blank line stays inside the previous record's byte range
                try:
                    record = json.loads(raw)
                    pid = passage_record(record, where="record")["id"]
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise errors.DataError(f"invalid JSON ({e})", path=path, line=line_no) from None
                except errors.DataError as e:
                    raise errors.DataError(str(e), path=path, line=line_no) from None
                if pid in seen:
                    raise errors.DataError(f"duplicate passage id {pid!r}", path=path, line=line_no)
                seen.add(pid)
                offsets.append(start)
        if not offsets:
            raise errors.DataError("no passages (empty file)", path=path)
        offsets.append(position)
        return cls(path, np.asarray(offsets, dtype=np.int64))

    @classmethod
    def open(cls, path: PathLike) -> PassageStore:
        """Opens a store written by `write`/`save_offsets`; checks offsets against the file size."""
        path = pathlib.Path(path)
        offsets_path = cls.offsets_path(path)
        for p in (path, offsets_path):
            if not p.is_file():
                raise errors.RetrievalIndexError(f"{p}: passage store file not found")
        try:
            offsets = np.load(offsets_path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise errors.RetrievalIndexError(f"{offsets_path}: unreadable ({e})") from None
        if offsets.ndim != 1 or offsets.dtype != np.int64 or len(offsets) < 1:
            raise errors.RetrievalIndexError(f"{offsets_path}: not a 1-D int64 offsets array")
        if int(offsets[-1]) != path.stat().st_size:
            raise errors.RetrievalIndexError(
                f"{path}: {path.stat().st_size} bytes but its offsets end at {int(offsets[-1])}"
                " (truncated or replaced passages file)"
            )
        return cls(path, offsets)

    def save_offsets(self) -> pathlib.Path:
        """Writes the offsets next to the JSONL (used after `from_jsonl`)."""
        return save_npy(self.offsets_path(self.path), np.asarray(self.offsets, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> dict[str, Any]:
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range [0, {len(self)})")
        if self._file is None:
            self._file = self.path.open("rb")
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        # pread has no shared file position, so concurrent searches (the HTTP server) are safe.
        raw = os.pread(self._file.fileno(), end - start, start)
        try:
            return passage_record(json.loads(raw), where=f"row {row}")
        except (json.JSONDecodeError, UnicodeDecodeError, errors.DataError) as e:
            raise errors.RetrievalIndexError(
                f"{self.path}: row {row} is not a passage record ({e}); the file is corrupted"
            ) from None

    def get(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """The passages at `rows`, in that order."""
        return [self[int(r)] for r in rows]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# What a citation shows besides the title: the document, its file (relative path) and its URL.
CITATION_KEYS = ("doc_id", "source", "url")


def passage_record(passage: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Normalises a passage to `{id: str, title: str, text: str}` plus whichever of
    `CITATION_KEYS` it has as non-empty strings (older packs and indexes lack them)."""
    if not isinstance(passage, Mapping) or "id" not in passage:
        raise errors.DataError(f"{where}: a passage needs an 'id' key")
    pid = passage["id"]
    if not isinstance(pid, str | int) or isinstance(pid, bool) or str(pid) == "":
        raise errors.DataError(f"{where}: 'id' must be a non-empty string or integer")
    if not isinstance(passage.get("text"), str):
        raise errors.DataError(f"{where}: passage {str(pid)!r} needs a string 'text'")
    record = {"id": str(pid), "title": str(passage.get("title") or ""), "text": passage["text"]}
    for key in CITATION_KEYS:
        if isinstance(passage.get(key), str) and passage[key]:
            record[key] = passage[key]
    return record


def save_npy(path: pathlib.Path, array: np.ndarray) -> pathlib.Path:
    """`np.save` to a temp file in the same folder, then rename (never a half-written `.npy`)."""
    with io_utils.atomic_file(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
    return path


class EmbeddingWriter:
    """Writes `count` float32 vectors of size `dim` to `<dir>/embeddings.npy`, resumably.

    Batches of any size are written in order; every time a shard of `shard_size` rows is complete
    the memmap is flushed and `embeddings.progress.json` records it. Reopening the same dir resumes:
    `next_row` is the first row of the first incomplete shard, where the caller restarts encoding.
    `fingerprint` (e.g. a hash of the corpus and encoder checkpoint) guards against resuming a
    different job.
    """

    def __init__(
        self,
        directory: PathLike,
        dim: int,
        count: int,
        *,
        shard_size: int = 8192,
        fingerprint: str | None = None,
    ):
        if dim <= 0 or count <= 0 or shard_size <= 0:
            raise ValueError(
                f"dim, count and shard_size must be > 0 ({dim}, {count}, {shard_size})"
            )
        self.directory = pathlib.Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dim, self.count, self.shard_size = dim, count, shard_size
        self.fingerprint = fingerprint
        self.path = self.directory / EMBEDDINGS_FILE
        self.progress_path = self.directory / PROGRESS_FILE
        expected = {
            "dimension": dim,
            "count": count,
            "dtype": "float32",
            "shard_size": shard_size,
            "fingerprint": fingerprint,
        }
        self._expected = expected
        progress = read_progress(self.directory) if self.progress_path.exists() else None
        if progress is not None and self.path.exists():
            changed = {k: (progress.get(k), v) for k, v in expected.items() if progress.get(k) != v}
            if changed:
                detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                raise errors.RetrievalIndexError(
                    f"{self.progress_path}: cannot resume a different encoding job ({detail});"
                    " use a new directory or delete the old one"
                )
            self._array = open_embeddings(self.path, mode="r+")
            if self._array.shape != (count, dim):
                raise errors.RetrievalIndexError(
                    f"{self.path}: shape {self._array.shape}, expected {(count, dim)}"
                )
            self.next_row = int(progress["rows_done"])
        else:
            self._array = np.lib.format.open_memmap(
                self.path, mode="w+", dtype=np.float32, shape=(count, dim)
            )
            self.next_row = 0
            self._record(0)
        self.resumed_from = self.next_row

    @property
    def complete(self) -> bool:
        return self.next_row >= self.count

    def write(self, vectors: np.ndarray) -> None:
        """Appends a [batch, dim] batch at `next_row`; records progress at each complete shard."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise errors.RetrievalIndexError(
                f"embedding batch has shape {vectors.shape}, expected [batch, {self.dim}]"
            )
        end = self.next_row + len(vectors)
        if end > self.count:
            raise errors.RetrievalIndexError(
                f"too many embeddings: rows {self.next_row}..{end} but count is {self.count}"
            )
        if not np.isfinite(vectors).all():
            raise errors.RetrievalIndexError(
                f"non-finite values in the embedding batch for rows {self.next_row}..{end}"
            )
        self._array[self.next_row : end] = vectors.astype(np.float32, copy=False)
        shards_before = self.next_row // self.shard_size
        self.next_row = end
        if end // self.shard_size > shards_before or end == self.count:
            self._array.flush()
            done = self.count if end == self.count else end // self.shard_size * self.shard_size
            self._record(done)

    def _record(self, rows_done: int) -> None:
        io_utils.atomic_write_json(
            self.progress_path,
            {**self._expected, "rows_done": rows_done, "complete": rows_done >= self.count},
        )

    def close(self) -> None:
        """Flushes the memmap; rows after the last recorded shard are redone on resume."""
        self._array.flush()
        del self._array

    def __enter__(self) -> EmbeddingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_progress(directory: PathLike) -> dict[str, Any]:
    """The `embeddings.progress.json` of an encoding dir; a bad file raises `RetrievalIndexError`."""
    path = pathlib.Path(directory) / PROGRESS_FILE
    try:
        progress = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.RetrievalIndexError(f"{path}: progress file not found") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.RetrievalIndexError(f"{path}: unreadable progress file ({e})") from None
    keys = ("rows_done", "count", "dimension")
    if not isinstance(progress, dict) or not all(isinstance(progress.get(k), int) for k in keys):
        raise errors.RetrievalIndexError(f"{path}: progress file lacks integer {', '.join(keys)}")
    return progress
