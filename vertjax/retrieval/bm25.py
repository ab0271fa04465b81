"""BM25 lexical retrieval (the baseline beside dense retrieval), built on the `bm25s` library.

A BM25 index lives in `<dir>/bm25/` (bm25s's sparse score matrix + vocab, and our manifest) and
shares `<dir>/passages.jsonl` with a dense index saved to the same directory, so one directory can
serve `--retriever bm25|dense|hybrid`. Stemming (PyStemmer) is optional and off by default; the
stemmer and stopwords are recorded so queries are tokenised exactly like the corpus.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.retrieval import store
from vertjax.retrieval.index_dir import IndexDir
from vertjax.retrieval.types import Hit

FORMAT = "vertjax-bm25-index"
VERSION = 1
PathLike = str | os.PathLike


def _stemmer(name: str | None) -> Any:
    """A PyStemmer stemmer for `name` (e.g. "english"), or None for no stemming."""
    if name is None:
        return None
    try:
        import Stemmer
    except ImportError:
        raise errors.ConfigError(
            f"stemmer {name!r} needs PyStemmer (pip install PyStemmer), or use stemmer=None"
        ) from None
    try:
        return Stemmer.Stemmer(name)
    except KeyError:
        raise errors.ConfigError(f"unknown stemmer language {name!r}") from None


class BM25Index:
    """Okapi BM25 over passages `{id, title, text}` (title and text are indexed together)."""

    def __init__(self, *, model: Any, passages: Any, params: Mapping[str, Any]):
        self.model = model
        self.passages = passages
        self.params = dict(params)
        self._stem = _stemmer(self.params["stemmer"])

    @classmethod
    def build(
        cls,
        passages: store.PassageStore | PathLike | Iterable[Mapping[str, Any]],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        stemmer: str | None = None,
        stopwords: str | None = "en",
    ) -> BM25Index:
        """Indexes passages (a `PassageStore`, a passages JSONL path, or records).

        Args:
          k1, b: BM25 term-frequency saturation and length normalisation.
          method: bm25s scoring variant ("lucene", "robertson", "atire", "bm25l", "bm25+").
          stemmer: a PyStemmer language such as "english", or None.
          stopwords: a bm25s stopword list name such as "en", or None to keep every token.
        """
        import bm25s

        if isinstance(passages, store.PassageStore):
            rows: Any = passages
        elif isinstance(passages, str | os.PathLike):
            rows = store.PassageStore.from_jsonl(passages)
        else:
            rows = [store.passage_record(p, where=f"passage {i}") for i, p in enumerate(passages)]
            if len({p["id"] for p in rows}) != len(rows):
                raise errors.DataError("duplicate passage ids in the BM25 corpus")
        if len(rows) == 0:
            raise errors.DataError("cannot build a BM25 index over no passages")
        params = {"k1": k1, "b": b, "method": method, "stemmer": stemmer, "stopwords": stopwords}
        texts = (f"{rows[i]['title']} {rows[i]['text']}" for i in range(len(rows)))
        tokens = bm25s.tokenize(
            texts, stopwords=stopwords or [], stemmer=_stemmer(stemmer), show_progress=False
        )
        try:
            model = bm25s.BM25(k1=k1, b=b, method=method)
        except (ValueError, KeyError) as e:
            raise errors.ConfigError(f"bad BM25 parameters {params}: {e}") from None
        model.index(tokens, show_progress=False)
        return cls(model=model, passages=rows, params=params)

    @property
    def count(self) -> int:
        return len(self.passages)

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        """Up to `k` hits per question; passages sharing no term with the question are not hits."""
        import bm25s

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not questions:
            return []
        tokens = bm25s.tokenize(
            list(questions),
            stopwords=self.params["stopwords"] or [],
            stemmer=self._stem,
            return_ids=False,
            show_progress=False,
        )
        token_ids = [self.model.get_tokens_ids(t) for t in tokens]
        asked = [i for i, ids in enumerate(token_ids) if ids]
        results: list[list[Hit]] = [[] for _ in questions]
        if not asked:
            return results
        rows, scores = self.model.retrieve(
            [token_ids[i] for i in asked],
            k=min(k, self.count),
            backend_selection="numpy",
            show_progress=False,
            n_threads=0,
        )
        for qi, q_rows, q_scores in zip(asked, rows, scores, strict=True):
            order = np.lexsort((q_rows, -q_scores))  # best first, ties to the lower row
            for j in order:
                if q_scores[j] <= 0:
                    break
                p = self.passages[int(q_rows[j])]
                results[qi].append(Hit.of(p, rank=len(results[qi]) + 1, score=float(q_scores[j])))
        return results

    def save(self, directory: PathLike) -> pathlib.Path:
        """Writes `<dir>/bm25/` (swapped in whole, manifest included) and `<dir>/passages.jsonl` unless already there."""
        layout = IndexDir(directory)
        layout.root.mkdir(parents=True, exist_ok=True)
        if not (
            isinstance(self.passages, store.PassageStore)
            and self.passages.path.resolve() == layout.passages.resolve()
        ):
            store.PassageStore.write(layout.passages, (self.passages[i] for i in range(self.count)))
        with io_utils.atomic_dir(layout.bm25) as tmp:
            self.model.save(os.fspath(tmp), show_progress=False)
            files = {
                f"{layout.bm25.name}/{p.name}": store.file_record(p) for p in sorted(tmp.iterdir())
            }
            for name in (store.PASSAGES_FILE, store.PASSAGES_FILE + store.OFFSETS_SUFFIX):
                files[name] = store.file_record(layout.root / name)
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "count": self.count,
                "params": self.params,
                "files": files,
            }
            io_utils.atomic_write_json(tmp / layout.bm25_manifest.name, manifest)
        return layout.bm25_manifest

    @classmethod
    def load(cls, directory: PathLike, *, verify: bool = True) -> BM25Index:
        """Opens a saved BM25 index; sizes (and with `verify`, SHA-256) of its files are checked."""
        import bm25s

        layout = IndexDir(directory)
        path = layout.bm25_manifest
        if not path.is_file():
            raise errors.RetrievalIndexError(
                f"{path}: missing (no BM25 index here, or its build was interrupted; rebuild it)"
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            files, params, count = manifest["files"], manifest["params"], manifest["count"]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise errors.RetrievalIndexError(f"{path}: corrupted manifest ({e})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise errors.RetrievalIndexError(f"{path}: not a {FORMAT} v{VERSION} manifest")
        store.check_files(layout.root, files, verify=verify)
        passages = layout.open_passages()
        try:
            model = bm25s.BM25.load(
                os.fspath(layout.bm25), mmap=True, load_corpus=False, verbosity=0
            )
        except (ValueError, OSError, KeyError) as e:
            raise errors.RetrievalIndexError(f"{layout.bm25}: unreadable ({e})") from None
        if len(passages) != count or model.scores["num_docs"] != count:
            raise errors.RetrievalIndexError(
                f"{layout.root}: {len(passages)} passages and {model.scores['num_docs']} BM25"
                f" documents, the manifest says {count}"
            )
        return cls(model=model, passages=passages, params=params)
