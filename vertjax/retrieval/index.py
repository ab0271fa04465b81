"""Dense passage index: ScaNN (tree + asymmetric hashing + exact reordering) or brute-force search.

Vectors are compared by dot product (GTR/DPR embeddings are L2-normalised, so this is cosine).
The dense part of an index directory (`index_dir.IndexDir` names the files):

    manifest.json           format, method, dimension, count, dtype, params, per-file size + SHA-256
    embeddings.npy          float32 [count, dim], memory-mapped (written by `EmbeddingWriter`)
    passages.jsonl(+.offsets.npy)   `{id, title, text}` per row, read lazily (`PassageStore`)
    scann/                  `searcher.serialize` output (method "scann" only)

The manifest is written last, so a directory without one is an interrupted build. `import scann`
pulls in TensorFlow (seconds), so it is imported inside the functions that need it. ScaNN's C++
INFO lines are dropped unless logging is at INFO (`vertjax --verbose`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pathlib
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.retrieval import store
from vertjax.retrieval.index_dir import IndexDir
from vertjax.retrieval.types import Hit

FORMAT = "vertjax-dense-index"
VERSION = 1
METHODS = ("scann", "brute")
TINY_CORPUS = 1000
SCANN_PARAMS = (
    "num_leaves",
    "leaves_to_search",
    "reorder_k",
    "training_sample_size",
    "dims_per_block",
    "anisotropic_quantization_threshold",
    "spherical",
    "brute_force",
)

PathLike = str | os.PathLike
Metadata = store.PassageStore | Sequence[Mapping[str, Any]]
# What ScaNN's C++ (absl) logging writes straight to stderr at INFO level, and its preamble.
_NATIVE_INFO = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog")


def default_scann_params(count: int) -> dict[str, Any]:
    """ScaNN parameters by corpus size: ~sqrt(n) leaves, search ~5% of them, reorder the top 200.

    Below `TINY_CORPUS` vectors partitioning and hashing do not pay: ScaNN scores exhaustively.
    """
    if count < TINY_CORPUS:
        return {"brute_force": True}
    return {"brute_force": False, **_partition_params(count)}


def _partition_params(count: int) -> dict[str, Any]:
    """The tree + asymmetric hashing + reorder settings for `count` vectors."""
    num_leaves = int(min(max(round(math.sqrt(count)), 16), 4000))
    return {
        "num_leaves": num_leaves,
        "leaves_to_search": max(8, math.ceil(0.05 * num_leaves)),
        "reorder_k": 200,
        "training_sample_size": min(count, 250_000),
        "dims_per_block": 2,
        "anisotropic_quantization_threshold": 0.2,
    }


def _unit_norm(embeddings: np.ndarray, sample: int = 10_000) -> bool:
    """Whether the vectors (a strided sample) are L2-normalised, as vertjax's encoders make them.

    For unit vectors ScaNN's tree must use spherical k-means: plain k-means centroids have
    different norms, and under dot-product assignment the larger ones swallow the queries (at
    200K x 768 clustered vectors, recall@10 from one leaf was 0.60 plain vs 1.00 spherical).
    """
    rows = np.asarray(embeddings[:: max(1, len(embeddings) // sample)], np.float32)
    return bool(np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3))


def exact_search(
    embeddings: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by dot product over corpus chunks (bounded memory on a memmap).

    Returns (scores float32 [q, k], indices int64 [q, k]), best first; ties go to the lower row.
    """
    count = len(embeddings)
    k = min(k, count)
    chunk_rows = max(4096, (1 << 26) // max(1, len(queries)))
    cand_scores, cand_rows = [], []
    for start in range(0, count, chunk_rows):
        block = queries @ np.asarray(embeddings[start : start + chunk_rows]).T
        kk = min(k, block.shape[1])
        top = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        cand_scores.append(np.take_along_axis(block, top, axis=1))
        cand_rows.append(top + start)
    scores = np.concatenate(cand_scores, axis=1)
    rows = np.concatenate(cand_rows, axis=1)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return (
        np.take_along_axis(scores, order, axis=1).astype(np.float32),
        np.take_along_axis(rows, order, axis=1).astype(np.int64),
    )


class DenseIndex:
    """Embeddings + passage metadata + (for ScaNN) a searcher. Build with `build`, reopen with `load`."""

    def __init__(
        self,
        *,
        embeddings: np.ndarray,
        passages: Metadata,
        method: str,
        params: Mapping[str, Any],
        searcher: Any = None,
    ):
        self.embeddings = embeddings
        self.passages = passages
        self.method = method
        self.params = dict(params)
        self._searcher = searcher

    @property
    def count(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dimension(self) -> int:
        return int(self.embeddings.shape[1])

    @classmethod
    def build(
        cls,
        source: PathLike | np.ndarray,
        *,
        ids: Sequence[str] | None = None,
        metadata: Metadata | PathLike | Iterable[Mapping[str, Any]] | None = None,
        method: str = "scann",
        **params: Any,
    ) -> DenseIndex:
        """Builds an index over `source` (an array, an `.npy`, or an `EmbeddingWriter` directory).

        Args:
          ids: passage ids per row (default: the metadata's ids, else the row numbers).
          metadata: passages `{id, title, text}`: a `PassageStore`, a passages JSONL path, or
            records; row i describes vector i.
          method: "scann" or "brute" (exact search, the reference).
          **params: ScaNN overrides of `default_scann_params` (num_leaves, leaves_to_search,
            reorder_k, training_sample_size, dims_per_block, anisotropic_quantization_threshold,
            brute_force).
        """
        if method not in METHODS:
            raise errors.RetrievalIndexError(
                f"unknown index method {method!r}; use one of {METHODS}"
            )
        embeddings = _open_source(source)
        _check_finite(embeddings)
        passages = _passages(embeddings.shape[0], ids=ids, metadata=metadata)
        if method == "brute":
            if params:
                raise errors.RetrievalIndexError(f"brute-force search takes no params: {params}")
            return cls(embeddings=embeddings, passages=passages, method=method, params={})
        unknown = sorted(set(params) - set(SCANN_PARAMS))
        if unknown:
            raise errors.RetrievalIndexError(
                f"unknown ScaNN params {unknown}; known: {SCANN_PARAMS}"
            )
        full = {**default_scann_params(len(embeddings)), **params}
        if not full["brute_force"]:
            # Partitioning may be asked for on a corpus small enough not to need it by default.
            full = {**_partition_params(len(embeddings)), **full}
            full.setdefault("spherical", _unit_norm(embeddings))
        return cls(
            embeddings=embeddings,
            passages=passages,
            method=method,
            params=full,
            searcher=_build_scann(embeddings, full),
        )

    def search(
        self,
        query_vectors: np.ndarray,
        k: int,
        *,
        leaves_to_search: int | None = None,
        reorder_k: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by dot product: (scores float32 [q, k], indices int64 [q, k]), best first.

        `k` is capped at the corpus size. An approximate search that finds fewer than k
        candidates pads with index -1 and score -inf. `leaves_to_search`/`reorder_k` override
        the ScaNN build-time values for this call (to trade speed for recall).
        """
        queries = np.asarray(query_vectors, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise errors.RetrievalIndexError(
                f"query vectors have shape {queries.shape}, but the index has dimension"
                f" {self.dimension} (was it built with another encoder?)"
            )
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        k = min(k, self.count)
        if self._searcher is None:
            return exact_search(self.embeddings, queries, k)
        reorder = max(k, reorder_k or self.params.get("reorder_k", k))
        rows, scores = self._searcher.search_batched_parallel(
            queries,
            final_num_neighbors=k,
            pre_reorder_num_neighbors=reorder,
            leaves_to_search=leaves_to_search,
        )
        rows, scores = np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float32)
        missing = ~np.isfinite(scores)
        rows[missing], scores[missing] = -1, -np.inf
        return scores, rows

    def hits(self, scores: np.ndarray, indices: np.ndarray) -> list[list[Hit]]:
        """Turns `search` output into ranked `Hit`s with ids, titles and texts."""
        result = []
        for row_scores, row_indices in zip(scores, indices, strict=True):
            hits = []
            for score, row in zip(row_scores, row_indices, strict=True):
                if row < 0:
                    continue
                p = self.passages[int(row)]
                hits.append(Hit.of(p, rank=len(hits) + 1, score=float(score)))
            result.append(hits)
        return result

    def save(self, directory: PathLike) -> pathlib.Path:
        """Writes the index to `directory` (the manifest last); returns the manifest path."""
        layout = IndexDir(directory)
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.dense_manifest.unlink(missing_ok=True)
        if _file_of(self.embeddings) != layout.embeddings.resolve():
            store.save_npy(layout.embeddings, self.embeddings)
        if not (
            isinstance(self.passages, store.PassageStore)
            and self.passages.path.resolve() == layout.passages.resolve()
        ):
            rows = (self.passages[i] for i in range(self.count))
            store.PassageStore.write(layout.passages, rows)
        files = [
            store.EMBEDDINGS_FILE,
            store.PASSAGES_FILE,
            store.PASSAGES_FILE + store.OFFSETS_SUFFIX,
        ]
        records = {name: store.file_record(layout.root / name) for name in files}
        if self._searcher is not None:
            records.update(_save_scann(self._searcher, layout))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "method": self.method,
            "metric": "dot_product",
            "dimension": self.dimension,
            "count": self.count,
            "dtype": "float32",
            "params": self.params,
            "files": records,
        }
        return io_utils.atomic_write_json(layout.dense_manifest, manifest)

    @classmethod
    def load(cls, directory: PathLike, *, verify: bool = True) -> DenseIndex:
        """Opens a saved index; `verify` also checks SHA-256 of every file (sizes are always checked)."""
        layout = IndexDir(directory)
        manifest = read_manifest(layout.root)
        store.check_files(layout.root, manifest["files"], verify=verify)
        embeddings = store.open_embeddings(layout.embeddings)
        expected = (manifest["count"], manifest["dimension"])
        if embeddings.shape != expected:
            raise errors.RetrievalIndexError(
                f"{layout.embeddings}: shape {embeddings.shape} but the manifest"
                f" says count x dimension = {expected} (dimension mismatch; rebuild the index)"
            )
        passages = layout.open_passages()
        if len(passages) != manifest["count"]:
            raise errors.RetrievalIndexError(
                f"{passages.path}: {len(passages)} passages for {manifest['count']} vectors"
            )
        searcher = _load_scann(layout.scann) if manifest["method"] == "scann" else None
        return cls(
            embeddings=embeddings,
            passages=passages,
            method=manifest["method"],
            params=manifest["params"],
            searcher=searcher,
        )


class DenseRetriever:
    """A `Retriever` from a `DenseIndex` and a query encoder (questions -> [q, dim] vectors)."""

    def __init__(self, index: DenseIndex, encode: Callable[[list[str]], np.ndarray]):
        self.index = index
        self.encode = encode

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        if not questions:
            return []
        scores, rows = self.index.search(self.encode(list(questions)), k)
        return self.index.hits(scores, rows)


def read_manifest(directory: PathLike) -> dict[str, Any]:
    """Reads and sanity-checks `manifest.json`; raises `RetrievalIndexError` naming the problem."""
    directory = pathlib.Path(directory)
    path = IndexDir(directory).dense_manifest
    if not directory.is_dir():
        raise errors.RetrievalIndexError(f"{directory}: index directory not found")
    if not path.is_file():
        raise errors.RetrievalIndexError(
            f"{path}: missing (not a vertjax index, or its build was interrupted; rebuild it)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.RetrievalIndexError(f"{path}: corrupted manifest ({e})") from None
    required = ("format", "version", "method", "dimension", "count", "dtype", "params", "files")
    missing = (
        [key for key in required if key not in manifest] if isinstance(manifest, dict) else required
    )
    if missing:
        raise errors.RetrievalIndexError(f"{path}: manifest lacks {', '.join(missing)}")
    if manifest["format"] != FORMAT or manifest["version"] != VERSION:
        raise errors.RetrievalIndexError(
            f"{path}: format {manifest['format']!r} v{manifest['version']}, expected {FORMAT!r} v{VERSION}"
        )
    if manifest["method"] not in METHODS or manifest["dtype"] != "float32":
        raise errors.RetrievalIndexError(
            f"{path}: unsupported method {manifest['method']!r} / dtype {manifest['dtype']!r}"
        )
    return manifest


def _open_source(source: PathLike | np.ndarray) -> np.ndarray:
    """An array, a `.npy` path, or a finished `EmbeddingWriter` directory -> float32 [n, d]."""
    if isinstance(source, np.ndarray):
        if source.ndim != 2 or source.shape[0] == 0 or source.shape[1] == 0:
            raise errors.RetrievalIndexError(
                f"embeddings must be a non-empty [n, d] array, got {source.shape}"
            )
        return np.ascontiguousarray(source, dtype=np.float32)
    path = pathlib.Path(source)
    if path.is_dir():
        progress = store.read_progress(path)
        if not progress.get("complete"):
            raise errors.RetrievalIndexError(
                f"{path}: embeddings incomplete ({progress['rows_done']}/{progress['count']} rows);"
                " resume the encoding first"
            )
        path = path / store.EMBEDDINGS_FILE
    return store.open_embeddings(path)


def _check_finite(embeddings: np.ndarray, *, chunk_rows: int = 65536) -> None:
    for start in range(0, len(embeddings), chunk_rows):
        if not np.isfinite(embeddings[start : start + chunk_rows]).all():
            raise errors.RetrievalIndexError(
                f"non-finite embedding values in rows {start}..{start + chunk_rows}"
            )


def _passages(count: int, *, ids: Sequence[str] | None, metadata: Any) -> Metadata:
    """Row-aligned passage records from ids and/or metadata; checks counts and ids agree."""
    if metadata is None:
        ids = [str(i) for i in range(count)] if ids is None else ids
        passages: Metadata = [{"id": str(i), "title": "", "text": ""} for i in ids]
    elif isinstance(metadata, store.PassageStore):
        passages = metadata
    elif isinstance(metadata, str | os.PathLike):
        passages = store.PassageStore.from_jsonl(metadata)
    else:
        passages = [
            store.passage_record(p, where=f"metadata row {i}") for i, p in enumerate(metadata)
        ]
    if len(passages) != count:
        raise errors.RetrievalIndexError(f"{len(passages)} passages for {count} embeddings")
    if ids is not None and metadata is not None:
        if len(ids) != count:
            raise errors.RetrievalIndexError(f"{len(ids)} ids for {count} embeddings")
        for row, pid in enumerate(ids):
            if str(pid) != passages[row]["id"]:
                raise errors.RetrievalIndexError(
                    f"row {row}: id {pid!r} but the metadata says {passages[row]['id']!r}"
                )
    return passages


def _file_of(array: np.ndarray) -> pathlib.Path | None:
    """The file behind a memmap (or a view of one), else None."""
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = base.base if isinstance(base.base, np.ndarray) else None
    filename = getattr(base, "filename", None)
    return pathlib.Path(filename).resolve() if filename else None


def _build_scann(embeddings: np.ndarray, params: Mapping[str, Any]) -> Any:
    from scann.scann_ops.py import scann_ops_pybind

    k = 10
    builder = scann_ops_pybind.builder(embeddings, k, "dot_product")
    if params["brute_force"]:
        with native_info_logs_dropped():
            return builder.score_brute_force().build()
    with native_info_logs_dropped():
        return _tree_ah(builder, params)


def _tree_ah(builder: Any, params: Mapping[str, Any]) -> Any:
    return (
        builder.tree(
            num_leaves=params["num_leaves"],
            num_leaves_to_search=params["leaves_to_search"],
            training_sample_size=params["training_sample_size"],
            spherical=params.get("spherical", False),
        )
        .score_ah(
            params["dims_per_block"],
            anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"],
        )
        .reorder(params["reorder_k"])
        .build()
    )


def _save_scann(searcher: Any, layout: IndexDir) -> dict[str, dict[str, Any]]:
    """Serialises into a temp dir with relative asset paths, then swaps it in as `scann/`."""
    with io_utils.atomic_dir(layout.scann) as tmp:
        searcher.serialize(os.fspath(tmp), relative_path=True)
        return {
            f"{layout.scann.name}/{p.name}": store.file_record(p) for p in sorted(tmp.iterdir())
        }


def _load_scann(directory: pathlib.Path) -> Any:
    if (directory / "scann_docids.pkl").exists():
        raise errors.RetrievalIndexError(
            f"{directory}: contains scann_docids.pkl; vertjax never unpickles index files"
        )
    from scann.scann_ops.py import scann_ops_pybind

    try:
        with native_info_logs_dropped():
            return scann_ops_pybind.load_searcher(
                os.fspath(directory), assets_backcompat_shim=False
            )
    except (RuntimeError, ValueError, OSError) as e:
        raise errors.RetrievalIndexError(
            f"{directory}: cannot load the ScaNN searcher ({e})"
        ) from None


@contextlib.contextmanager
def native_info_logs_dropped() -> Iterator[None]:
    """Drops the INFO lines native code writes to file descriptor 2 meanwhile ("I0000 ...
    partitioner_factory_base.cc:58] Size of sampled dataset ..."), unless the root logger is at
    INFO (`vertjax --verbose`); warnings and errors are written on after the block."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _NATIVE_INFO.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
