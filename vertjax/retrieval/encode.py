"""Passage encoding for dense retrieval and `build_index`: one directory serving bm25|dense|hybrid.

- `tokenize`: texts -> `[n, length]` int32 ids ending in EOS, 0-padded (the encoder's input).
- `BatchEncoder`: `DualEncoderModel.encode` jitted over a data-parallel mesh (the batch is split
  over every local device, params replicated); rows are sorted by length and each batch is padded
  only to the next multiple of `LENGTH_BUCKET` tokens, so it compiles a few shapes and pays little
  for padding.
- `encode_passages`: streams a `PassageStore` through a `BatchEncoder` into an `EmbeddingWriter`
  (memory-mapped, resumable at the last complete shard) with a progress bar.
- `build_index`: passages JSONL + retriever run dir -> an index directory (`DenseIndex` files,
  optionally `bm25/`), plus `retriever.json` saying which checkpoint and vocab encode questions,
  and `build.json` saying what it was built from, with the data pack's `domain`
  (`index_dir.IndexDir` names every file and reads the records back).
  Re-running the same command resumes an interrupted encoding; a finished index is not rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors
from vertjax.retrieval import index_dir, store
from vertjax.retrieval.index_dir import IndexDir

PathLike = str | os.PathLike
EOS_ID = 1
LENGTH_BUCKET = 32  # batches are padded to a multiple of this many tokens (few compilations)
ROWS_PER_CALL = 2048  # passages `encode_passages` tokenizes and length-sorts together


def passage_text(passage: Mapping[str, Any]) -> str:
    """The text a passage is encoded (and trained) as: `title: text`, or the text alone."""
    title, text = str(passage.get("title") or ""), str(passage.get("text") or "")
    return f"{title}: {text}" if title else text


def tokenize(vocab: Any, texts: Sequence[str], *, length: int) -> np.ndarray:
    """`[len(texts), length]` int32: SentencePiece ids truncated to `length - 1`, then EOS, 0-pad."""
    if length < 2:
        raise errors.ConfigError(f"sequence length must be >= 2, got {length}")
    tokens = np.zeros((len(texts), length), np.int32)
    if not texts:
        return tokens
    for i, ids in enumerate(vocab.tokenizer.encode(list(texts), out_type=int)):
        row = list(ids[: length - 1]) + [EOS_ID]
        tokens[i, : len(row)] = row
    return tokens


class BatchEncoder:
    """Embeds token batches with a dual encoder, split over all local devices ("data" axis)."""

    def __init__(self, model: Any, params: Any, *, kind: str, batch_size: int = 64):
        import flax.linen as nn
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        from vertjax.train import partitioning

        if kind not in ("question", "passage"):
            raise ValueError(f"kind must be 'question' or 'passage', got {kind!r}")
        self.mesh = partitioning.create_mesh((-1, 1), devices=jax.local_devices())
        self.rules = partitioning.standard_logical_axis_rules()
        devices = self.mesh.shape["data"]
        self.batch_size = -(-max(batch_size, 1) // devices) * devices
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.params = jax.device_put(params, replicated)
        self._nn = nn
        self._fn = jax.jit(
            lambda p, tokens: model.encode(p, tokens, kind=kind),
            in_shardings=(replicated, partitioning.batch_sharding(self.mesh)),
            out_shardings=replicated,
        )

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """`[n, length]` tokens (0 = padding) -> `[n, dim]` float32 embeddings, in input order.

        Rows are encoded longest first in batches of `batch_size` (the last zero-padded), each
        cut to its longest row rounded up to `LENGTH_BUCKET`: the masked encoder and mean pooling
        give the same embedding for any amount of padding, so this only saves work.
        """
        import jax

        lengths = (tokens > 0).sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        out = []
        with jax.set_mesh(self.mesh), self._nn.logical_axis_rules(self.rules):
            for start in range(0, len(tokens), self.batch_size):
                rows = order[start : start + self.batch_size]
                longest = max(int(lengths[rows].max()), 1)
                width = min(tokens.shape[1], -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET)
                padded = np.zeros((self.batch_size, width), np.int32)
                padded[: len(rows)] = tokens[rows, :width]
                out.append(np.asarray(self._fn(self.params, padded))[: len(rows)])
        embeddings = np.empty((len(tokens), out[0].shape[1]) if out else (0, 0), np.float32)
        if out:
            embeddings[order] = np.concatenate(out, axis=0)
        return embeddings


def encode_passages(
    *,
    encoder: BatchEncoder,
    vocab: Any,
    passages: store.PassageStore,
    out_dir: PathLike,
    dim: int,
    passage_length: int,
    fingerprint: str | None = None,
    shard_size: int = 8192,
    rows_per_call: int = ROWS_PER_CALL,
    progress: bool = True,
) -> int:
    """Encodes every passage into `out_dir/embeddings.npy`, resuming a partial run; returns the
    row it resumed from (0 for a fresh run, `len(passages)` when already complete).

    Passages go to the encoder `rows_per_call` at a time (tokenized and length-sorted together).
    """
    from tqdm import tqdm

    with store.EmbeddingWriter(
        out_dir, dim, len(passages), shard_size=shard_size, fingerprint=fingerprint
    ) as writer:
        resumed = writer.resumed_from
        with tqdm(
            total=len(passages),
            initial=resumed,
            desc="encode passages",
            unit="passage",
            disable=not progress,
        ) as bar:
            step = max(encoder.batch_size, rows_per_call)
            while not writer.complete:
                rows = range(writer.next_row, min(writer.next_row + step, len(passages)))
                texts = [passage_text(passages[r]) for r in rows]
                writer.write(encoder(tokenize(vocab, texts, length=passage_length)))
                bar.update(len(rows))
    return resumed


def source_files(source: pathlib.Path) -> list[pathlib.Path]:
    """The passage JSONL files of `source`: itself, or every non-empty split of a data pack."""
    if source.is_file():
        return [source]
    if (source / "manifest.json").is_file():
        files = [source / f"{s}.jsonl" for s in ("train", "validation", "test")]
        if all(f.is_file() for f in files):
            # a small pack may leave a split empty (few documents to hold out)
            return [f for f in files if f.stat().st_size > 0] or files
    raise errors.DataError("not a passages JSONL nor a data pack folder", path=source)


def _build_record(
    *, source: pathlib.Path, retriever: PathLike | None, vocab: PathLike | None, passage_length: int
) -> dict[str, Any]:
    """What an index is built from; its hash fingerprints the encoding job for resumption."""
    digests = "".join(store.sha256_file(f) for f in source_files(source))
    record: dict[str, Any] = {
        "passages": str(source.resolve()),
        "passages_sha256": hashlib.sha256(digests.encode()).hexdigest(),
        "passage_length": passage_length,
    }
    if retriever is not None:
        from vertjax.data import vocab as vocab_lib
        from vertjax.train import checkpoints, run_vocab

        model_dir, step = checkpoints.resolve_checkpoint(retriever)
        model_path = vocab_lib.resolve_model_path(vocab)
        trained_with = run_vocab.trained_vocab(model_dir)
        if trained_with is not None and store.sha256_file(trained_with) != store.sha256_file(
            model_path
        ):
            raise errors.ConfigError(
                f"--vocab {vocab} is not the vocab the retriever {model_dir} was trained with"
                f" ({trained_with}): pass --vocab {trained_with}"
            )
        record.update(
            retriever=str(model_dir),
            step=step,
            vocab=str(model_path.resolve()),
            vocab_sha256=store.sha256_file(model_path),
        )
    return record


def pack_domain(source: pathlib.Path) -> dict[str, str] | None:
    """The `domain` a data pack folder's manifest records; None for a passages JSONL file or a
    pack built before packs recorded one."""
    from vertjax.data import packs

    if not source.is_dir():
        return None
    return index_dir.checked_domain(packs.read_manifest(source).get("domain"))


def _fingerprint(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def shard_rows(count: int, num_shards: int, shard_id: int) -> range:
    """The passage rows of shard `shard_id`: contiguous, sizes differing by at most one, so a
    shard's row r is global row `start + r` and merged ties fall to the lower global row."""
    return range(count * shard_id // num_shards, count * (shard_id + 1) // num_shards)


def _count_passages(source: pathlib.Path) -> int:
    sources = [store.PassageStore.from_jsonl(f) for f in source_files(source)]
    return sum(len(s) for s in sources)


def _copy_passages(
    source: pathlib.Path, out: IndexDir, record: Mapping[str, Any], rows: range | None = None
) -> None:
    """Writes `out`'s passages (+ offsets): all of `source`, or its global `rows` for a shard;
    skipped when a previous build already wrote them for the same `record`."""
    previous = out.read_record(index_dir.BUILD_FILE) or {}
    same = ("passages_sha256", "shard")
    if all(previous.get(key) == record.get(key) for key in same):
        try:
            out.open_passages()
            return
        except errors.RetrievalIndexError:
            pass
    sources = [store.PassageStore.from_jsonl(f) for f in source_files(source)]

    def records():
        start = 0
        for s in sources:
            span = range(start, start + len(s)) if rows is None else _overlap(rows, start, len(s))
            yield from (s[row - start] for row in span)
            start += len(s)

    store.PassageStore.write(out.passages, records())
    for s in sources:
        s.close()


def _overlap(rows: range, start: int, count: int) -> range:
    return range(max(rows.start, start), min(rows.stop, start + count))


def _claim_shards(
    root: IndexDir, record: Mapping[str, Any], domain: Mapping[str, str] | None, num_shards: int
) -> None:
    """Writes (or checks) the sharded index's `shards.json`: every shard process of one build
    writes the same record, and a shard built from other passages, another retriever or another
    shard count is refused before anything is written."""
    wanted = {"num_shards": num_shards, **record}
    found = root.read_shards()
    if found is not None:
        found.pop("domain", None)
        if found != wanted:
            changed = sorted(k for k in {*found, *wanted} if found.get(k) != wanted.get(k))
            raise errors.ConfigError(
                f"--out {root.root}: a sharded index built with other settings ({', '.join(changed)}"
                " differ); give the same passages, retriever and --num_shards, or a new --out"
            )
    root.root.mkdir(parents=True, exist_ok=True)
    root.write_record(index_dir.SHARDS_FILE, {**wanted, "domain": domain} if domain else wanted)


def _check_shard(num_shards: Any, shard_id: Any) -> None:
    for name, value in (("num_shards", num_shards), ("shard_id", shard_id)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise errors.ConfigError(f"--{name} {value!r}: must be an integer")
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise errors.ConfigError(
            f"--num_shards {num_shards} --shard_id {shard_id}: need num_shards >= 1 and"
            " 0 <= shard_id < num_shards"
        )


def _already_built(out: IndexDir, record: Mapping[str, Any], *, method: str, bm25: bool) -> bool:
    from vertjax.retrieval import index

    built = out.read_record(index_dir.BUILD_FILE)
    if built is None:
        return False
    built.pop("domain", None)  # what the documents are about, not what the index is built from
    if built != record:
        return False
    try:
        if "retriever" in record and index.read_manifest(out.root)["method"] != method:
            return False
    except errors.RetrievalIndexError:
        return False
    return not bm25 or out.has_bm25()


def build_index(
    *,
    passages: PathLike,
    out: PathLike,
    retriever: PathLike | None = None,
    vocab: PathLike | None = None,
    method: str = "scann",
    bm25: bool = False,
    passage_length: int = 256,
    question_length: int = 64,
    batch_size: int = 64,
    scann_params: Mapping[str, Any] | None = None,
    progress: bool = True,
    num_shards: int = 1,
    shard_id: int = 0,
) -> dict[str, Any]:
    """Builds (or resumes, or finds finished) an index directory; returns a summary.

    With `num_shards` > 1 this builds one shard, `out/shard-<shard_id>-of-<num_shards>/`, over a
    contiguous slice of the passages (one process or host per shard, run in parallel); search
    opens `out` and merges the shards' top-k (`sharded`).

    Args:
      passages: passages JSONL `{id, title, text}` (+ `doc_id`, `source`, `url`, kept for
        citations), or a data pack folder (all its splits; its manifest's `domain` is recorded).
      retriever: a dual-encoder run dir (or `checkpoint_<step>`); None for a BM25-only index.
      vocab: the SentencePiece model (or its dir) the retriever was trained with.
      method: "scann" or "brute" (exact search).
      bm25: also build the BM25 index (for `--retriever bm25|hybrid`).
      passage_length / question_length: encoder input lengths (questions: at search time).
      scann_params: overrides of `index.default_scann_params`.
      num_shards, shard_id: which shard of how many this process builds.
    """
    from vertjax.retrieval import bm25 as bm25_lib
    from vertjax.retrieval import index

    source, root = pathlib.Path(passages), IndexDir(out)
    _check_shard(num_shards, shard_id)
    if retriever is None and not bm25:
        raise errors.ConfigError("nothing to build: give a retriever (dense) and/or bm25")
    if retriever is not None and vocab is None:
        raise errors.ConfigError("a dense index needs the retriever's vocab (--vocab)")
    record = _build_record(
        source=source, retriever=retriever, vocab=vocab, passage_length=passage_length
    )
    domain = pack_domain(source)
    out, rows = root, None
    if num_shards > 1:
        root.check_owned(sharded=True)
        count = _count_passages(source)
        if count < num_shards:  # before shards.json records a shard count no build can finish
            raise errors.ConfigError(
                f"--num_shards {num_shards}: more shards than the {count} passages; use fewer"
            )
        _claim_shards(root, record, domain, num_shards)
        rows = shard_rows(count, num_shards, shard_id)
        record = {**record, "shard": {"id": shard_id, "num_shards": num_shards}}
        out = root.shard(shard_id, num_shards)
    out.check_owned()
    out.remove_temporaries()
    summary: dict[str, Any] = {"out": str(out.root), **record, "domain": domain}
    if _already_built(out, record, method=method, bm25=bm25):
        out.set_domain(domain)  # a pack rebuilt under another domain name needs no re-encoding
        return {**summary, "status": "already built"}
    if retriever is not None:  # load and check before writing: a wrong vocab leaves nothing
        from vertjax.data import vocab as vocab_lib
        from vertjax.train import restore

        model, params = restore.load_dual_encoder(str(retriever))
        vocabulary = vocab_lib.load_vocab(vocab)
        vocab_lib.check_fits_model(
            vocabulary, model.config.vocab_size, vocab_path=vocab, model="the retriever"
        )
    out.root.mkdir(parents=True, exist_ok=True)
    # A manifest left by an earlier build must not vouch for this one if it is interrupted.
    out.dense_manifest.unlink(missing_ok=True)
    out.bm25_manifest.unlink(missing_ok=True)
    _copy_passages(source, out, record, rows)
    out.write_record(index_dir.BUILD_FILE, {**record, "domain": domain} if domain else record)
    passage_store = out.open_passages()
    summary["count"] = len(passage_store)
    if retriever is not None:
        summary["resumed_from_row"] = encode_passages(
            encoder=BatchEncoder(model, params, kind="passage", batch_size=batch_size),
            vocab=vocabulary,
            passages=passage_store,
            out_dir=out.root,
            dim=model.projection_dim,
            passage_length=passage_length,
            fingerprint=_fingerprint(record),
            progress=progress,
        )
        out.write_record(
            index_dir.RETRIEVER_FILE,
            {
                "retriever": record["retriever"],
                "step": record["step"],
                "vocab": record["vocab"],
                "question_length": question_length,
                "passage_length": passage_length,
            },
        )
        dense = index.DenseIndex.build(
            out.root, metadata=passage_store, method=method, **dict(scann_params or {})
        )
        dense.save(out.root)
        summary.update(method=method, dimension=dense.dimension, params=dense.params)
    if bm25:
        bm25_lib.BM25Index.build(passage_store).save(out.root)
    summary["status"] = "built"
    return summary
