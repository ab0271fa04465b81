"""The layout of an index directory: one type that knows every file `vertjax index build` writes.

    build.json                      what the index was built from (+ the data pack's `domain`)
    passages.jsonl(+.offsets.npy)   the passages, read lazily (`store.PassageStore`)
    embeddings.npy                  float32 vectors, and `embeddings.progress.json` while encoding
    manifest.json, scann/           the dense index (`index.DenseIndex`)
    retriever.json                  which checkpoint and vocab encode questions (dense indexes)
    bm25/                           the BM25 index (`bm25.BM25Index`, its own manifest inside)
    fusion.json                     hybrid weights tuned on validation questions (`fusion`)
    shards.json, shard-I-of-N/      a sharded index: each shard folder is an index directory

Every module that reads or writes part of an index asks `IndexDir` for the path and the JSON
records, so the layout is written down once; the file formats stay with their owners (`store`,
`index`, `bm25`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

from vertjax import errors, io_utils
from vertjax.retrieval import store

PathLike = str | os.PathLike
BUILD_FILE = "build.json"
RETRIEVER_FILE = "retriever.json"
DENSE_MANIFEST_FILE = "manifest.json"
SCANN_DIR = "scann"
BM25_DIR = "bm25"
BM25_MANIFEST_FILE = "manifest.json"
FUSION_FILE = "fusion.json"
SHARDS_FILE = "shards.json"
CONFIG_FILE = "config.gin"
# What a killed build leaves behind: the temp folders of `atomic_dir` swaps (bm25/, scann/)
# and the temp files of atomic writes.
TEMPORARIES = (".bm25.*", ".scann.*", ".*.tmp")


def shard_name(shard_id: int, num_shards: int) -> str:
    """`shard-00001-of-00004`: the folder of shard `shard_id` (0-based) of `num_shards`."""
    return f"shard-{shard_id:05d}-of-{num_shards:05d}"


@dataclasses.dataclass(frozen=True)
class IndexDir:
    """An index folder (built, being built, or not yet created) and the records in it."""

    root: pathlib.Path

    def __init__(self, root: PathLike):
        object.__setattr__(self, "root", pathlib.Path(root))

    # Paths.
    @property
    def passages(self) -> pathlib.Path:
        return self.root / store.PASSAGES_FILE

    @property
    def embeddings(self) -> pathlib.Path:
        return self.root / store.EMBEDDINGS_FILE

    @property
    def dense_manifest(self) -> pathlib.Path:
        return self.root / DENSE_MANIFEST_FILE

    @property
    def scann(self) -> pathlib.Path:
        return self.root / SCANN_DIR

    @property
    def bm25(self) -> pathlib.Path:
        return self.root / BM25_DIR

    @property
    def bm25_manifest(self) -> pathlib.Path:
        return self.bm25 / BM25_MANIFEST_FILE

    def shard(self, shard_id: int, num_shards: int) -> IndexDir:
        return IndexDir(self.root / shard_name(shard_id, num_shards))

    # What is there.
    def has_bm25(self) -> bool:
        """Whether a finished BM25 index is here (its manifest is written last); for a sharded
        index, in every shard."""
        return all(d.bm25_manifest.is_file() for d in self._parts())

    def has_dense(self) -> bool:
        """Whether a dense index is here: its question encoder is recorded (`retriever.json`);
        for a sharded index, in every shard."""
        return all((d.root / RETRIEVER_FILE).is_file() for d in self._parts())

    def _parts(self) -> list[IndexDir]:
        """The shard folders of a sharded index, built or not; [self] for one index."""
        record = self.read_shards()
        if record is None:
            return [self]
        return [self.shard(i, record["num_shards"]) for i in range(record["num_shards"])]

    def is_sharded(self) -> bool:
        return (self.root / SHARDS_FILE).is_file()

    def open_passages(self) -> store.PassageStore:
        return store.PassageStore.open(self.passages)

    # JSON records.
    def read_record(self, name: str) -> dict[str, Any] | None:
        """The JSON object in `name` (one of the layout's files), None when absent."""
        path = self.root / name
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.RetrievalIndexError(f"{path}: corrupted ({e})") from None
        if not isinstance(record, dict):
            raise errors.RetrievalIndexError(f"{path}: corrupted (not a JSON object)")
        return record

    def write_record(self, name: str, record: Mapping[str, Any]) -> pathlib.Path:
        return io_utils.atomic_write_json(self.root / name, dict(record))

    def read_retriever(self) -> dict[str, Any]:
        """`retriever.json`: which checkpoint and vocab encode questions for the dense index."""
        recorded = self.read_record(RETRIEVER_FILE)
        path = self.root / RETRIEVER_FILE
        if recorded is None:
            raise errors.RetrievalIndexError(
                f"{path}: missing (no dense index here; build one with `vertjax index build"
                " --retriever RUN_DIR`, or use --retriever bm25)"
            )
        if not {"retriever", "vocab"} <= set(recorded):
            raise errors.RetrievalIndexError(f"{path}: lacks 'retriever' and 'vocab'")
        return recorded

    def read_shards(self) -> dict[str, Any] | None:
        """`shards.json` (`num_shards`, what they are built from), or None for one index."""
        record = self.read_record(SHARDS_FILE)
        if record is None:
            return None
        count = record.get("num_shards")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise errors.RetrievalIndexError(
                f"{self.root / SHARDS_FILE}: 'num_shards' must be an integer >= 1"
            )
        return record

    def shard_dirs(self) -> list[IndexDir]:
        """The shard folders of a sharded index ([self] for one index); a missing shard is an
        error naming the build command that makes it."""
        shards = self._parts()
        if shards == [self]:
            return shards
        missing = [i for i, s in enumerate(shards) if not (s.root / BUILD_FILE).is_file()]
        if missing:
            count = len(shards)
            raise errors.RetrievalIndexError(
                f"{self.root}: shards {missing} of {count} are not built yet (run `vertjax index"
                f" build ... --num_shards {count} --shard_id I` for each)"
            )
        return shards

    def _domain_file(self) -> str:
        """Where the domain is recorded: `shards.json` at a sharded index's root, else `build.json`."""
        return SHARDS_FILE if self.is_sharded() else BUILD_FILE

    def domain(self) -> dict[str, str] | None:
        """The `{name, description}` of the documents, copied from the data pack at build time;
        None for an index built from a JSONL file or before domains were recorded."""
        record = self.read_record(self._domain_file()) or {}
        return checked_domain(record.get("domain"))

    def set_domain(self, domain: Mapping[str, str] | None) -> None:
        """Sets (or, for None, removes) the recorded `domain`, keeping the rest of the record."""
        name = self._domain_file()
        record = self.read_record(name)
        if record is None and domain is None:
            return
        record = dict(record or {})
        record.pop("domain", None)
        if domain is not None:
            record["domain"] = dict(domain)
        self.write_record(name, record)

    # Housekeeping for builds.
    def owned_names(self) -> frozenset[str]:
        """Every name the layout defines at the top of an index folder."""
        return frozenset(
            {
                BUILD_FILE,
                RETRIEVER_FILE,
                CONFIG_FILE,
                DENSE_MANIFEST_FILE,
                SCANN_DIR,
                BM25_DIR,
                FUSION_FILE,
                store.PASSAGES_FILE,
                store.PASSAGES_FILE + store.OFFSETS_SUFFIX,
                store.EMBEDDINGS_FILE,
                store.PROGRESS_FILE,
            }
        )

    def check_owned(self, *, flag: str = "--out", sharded: bool = False) -> None:
        """Refuses a folder that holds anything but an index (a data pack, a run dir, other
        files): a build deletes and rewrites the files it owns, so pointing it at another kind of
        folder would destroy that folder's contents. `sharded`: the root of a sharded index."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise errors.ConfigError(f"{flag} {self.root}: exists and is not a directory")
        names = {p.name for p in self.root.iterdir() if not p.name.startswith(".")}
        if sharded:
            allowed = {SHARDS_FILE, FUSION_FILE, CONFIG_FILE}
            foreign = sorted(n for n in names if n not in allowed and not n.startswith("shard-"))
        else:
            foreign = sorted(names - self.owned_names())
        if not foreign and not sharded and self.dense_manifest.is_file():
            if not (self.root / BUILD_FILE).is_file() and "method" not in (
                self._json_or_empty(self.dense_manifest)
            ):
                foreign = [DENSE_MANIFEST_FILE + " (not an index manifest)"]
        if foreign:
            raise errors.ConfigError(
                f"{flag} {self.root}: holds files that are not part of a vertjax index "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); "
                "give an empty or new directory, or an index built earlier"
            )

    @staticmethod
    def _json_or_empty(path: pathlib.Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return {}

    def remove_temporaries(self) -> list[pathlib.Path]:
        """Deletes what an interrupted build left here (see `TEMPORARIES`); returns it."""
        if not self.root.is_dir():
            return []
        found = sorted({p for pattern in TEMPORARIES for p in self.root.glob(pattern)})
        for path in found:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return found


def checked_domain(domain: Any) -> dict[str, str] | None:
    """A recorded `domain` as `{name, description}`, or None when absent or nameless."""
    if not isinstance(domain, dict) or not isinstance(domain.get("name"), str):
        return None
    if not domain["name"].strip():
        return None
    return {"name": domain["name"], "description": str(domain.get("description") or "")}
