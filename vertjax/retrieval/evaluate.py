"""`vertjax eval retrieval`: every retriever of one or more index dirs, side by side.

For labelled questions (`{id, question, positive_ids}` or `{id, question, answers}`, optionally
with a dialogue `history`) it scores BM25, dense and hybrid retrieval of each index, optionally
with keywords in front (lexical, offline) and with context rewriting (rule-based, for questions
that have a history), and writes:

    retrieval_metrics.md     recall@{1,3,5,10,20,100}, MRR@10, nDCG@10 per system
    retrieval_metrics.json   the same numbers (+ precision/recall curves)
    precision_recall_vs_k.png

BM25 is scored once (from the first index that has it); systems are named `bm25`, `<name> dense`,
`<name> hybrid` (`dense`, `hybrid` for a single unnamed index), with `+keywords` / `+rewrite`.

`tune_fusion` scores the hybrid's fusion grid on validation questions the same way and records the
best choice in the index dir's `fusion.json`.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils
from vertjax.eval import plots
from vertjax.retrieval import dense, fusion, keywords, metrics, rewrite
from vertjax.retrieval.index_dir import FUSION_FILE, IndexDir
from vertjax.retrieval.types import Retriever

PathLike = str | os.PathLike
COLUMNS = (*(f"recall@{k}" for k in metrics.RECALL_KS), "mrr@10", "ndcg@10")
CURVE_K = 20


def _histories(path: PathLike) -> dict[str, list[str]]:
    """Question id -> dialogue history, for the questions that have one."""
    out = {}
    for line, record in enumerate(io_utils.read_jsonl(path), start=1):
        if record.get("history"):
            out[str(record["id"])] = rewrite.parse_history(record["history"], path=path, line=line)
    return out


def _systems(
    indexes: Mapping[str, PathLike], kinds: Sequence[str], *, verify: bool
) -> dict[str, Retriever]:
    systems: dict[str, Retriever] = {}
    for name, directory in indexes.items():
        prefix = f"{name} " if name else ""
        layout = IndexDir(directory)
        has_bm25, has_dense = layout.has_bm25(), layout.has_dense()
        for kind in kinds:
            if kind == "bm25" and has_bm25 and "bm25" not in systems:
                systems["bm25"] = dense.open_retriever(directory, "bm25", verify=verify)
            elif kind == "dense" and has_dense:
                systems[f"{prefix}dense"] = dense.open_retriever(directory, "dense", verify=verify)
            elif kind == "hybrid" and has_dense and has_bm25:
                systems[f"{prefix}hybrid"] = dense.open_retriever(
                    directory, "hybrid", verify=verify
                )
    if not systems:
        raise errors.RetrievalIndexError(
            f"no {'/'.join(kinds)} retriever found in {', '.join(map(str, indexes.values()))}"
        )
    return systems


def evaluate_indexes(
    *,
    questions: PathLike,
    indexes: Mapping[str, PathLike],
    out_dir: PathLike,
    kinds: Sequence[str] = dense.KINDS,
    keyword_kind: str | None = None,
    keywords_base_url: str | None = None,
    keywords_model: str | None = None,
    with_rewrite: bool = True,
    depth: int = 100,
    verify: bool = True,
) -> dict[str, Any]:
    """Scores every system on `questions`; writes the table, JSON and PNG into `out_dir`.

    Args:
      indexes: name -> index dir ("" as the name of a single index).
      kinds: which of "bm25", "dense", "hybrid" to score where an index has them.
      keyword_kind: also score each system with keywords appended to the question: "lexical" or
        "llm" (`keywords.open_extractor`, through the server at `keywords_base_url`).
      with_rewrite: score each system on rule-rewritten questions too when some have a history.
    """
    labelled = metrics.load_questions(questions)
    histories = _histories(questions)
    texts = [q.question for q in labelled]
    variants: dict[str, list[str]] = {"": texts}
    if with_rewrite and histories:
        rewriter = rewrite.RuleRewriter()
        variants["+rewrite"] = rewriter([histories.get(q.id, []) for q in labelled], texts)
    systems = _systems(indexes, kinds, verify=verify)
    if keyword_kind:
        extractor = keywords.open_extractor(
            keyword_kind,
            index_dir=next(iter(indexes.values())),
            base_url=keywords_base_url,
            model=keywords_model,
        )
        systems.update(
            {
                f"{n} +keywords": keywords.KeywordRetriever(r, extractor)
                for n, r in list(systems.items())
            }
        )
    table: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for name, system in systems.items():
        system.search(texts[:1], depth)  # compile/warm up outside the timed loop
        for suffix, asked in variants.items():
            start = time.perf_counter()
            queried = [
                metrics.Question(q.id, text, q.positive_ids, q.answers)
                for q, text in zip(labelled, asked, strict=True)
            ]
            results = metrics.run_retriever(system, queried, depth=depth)
            seconds = time.perf_counter() - start
            label = f"{name} {suffix}".strip()
            table[label] = {
                **metrics.evaluate(labelled, results),
                "ms_per_question": 1000 * seconds / len(labelled),
            }
            curves[label] = metrics.curves(labelled, results, max_k=CURVE_K)
    out = pathlib.Path(out_dir)
    markdown = plots.markdown_table(table, columns=[*COLUMNS, "ms_per_question"])
    io_utils.atomic_write_text(out / "retrieval_metrics.md", markdown)
    plot = plots.plot_vs_k(
        curves, path=out / "precision_recall_vs_k.png", title=f"{len(labelled)} questions"
    )
    summary = {
        "questions": str(questions),
        "num_questions": len(labelled),
        "with_history": len(histories),
        "indexes": {k: str(v) for k, v in indexes.items()},
        "metrics": table,
        "curves": curves,
        "table": str(out / "retrieval_metrics.md"),
        "plot": str(plot),
    }
    io_utils.atomic_write_json(out / "retrieval_metrics.json", summary)
    return {**summary, "markdown": markdown}


def tune_fusion(
    index_dir: PathLike,
    *,
    questions: PathLike,
    grid: Sequence[float] = fusion.DEFAULT_GRID,
    methods: Sequence[str] = fusion.FUSION_METHODS,
    rrf_k: float = 60.0,
    metric: str = "recall@5",
    depth: int = 100,
    verify: bool = True,
) -> dict[str, Any]:
    """Chooses the fusion method and dense weight of an index's hybrid on validation `questions`
    (every method of `methods` x every weight of `grid`), writes the choice to
    `<index>/fusion.json` (read by `dense.open_retriever`) and returns that record.

    Use questions held apart from every test set: the choice is fitted to them. The record's
    `kind` is the best of bm25 / dense / hybrid on them ("auto" retrievers open that one).
    """
    labelled = metrics.load_questions(questions)
    lexical = metrics.run_retriever(
        dense.open_retriever(index_dir, "bm25", verify=verify), labelled, depth=depth
    )
    embedded = metrics.run_retriever(
        dense.open_retriever(index_dir, "dense", verify=verify), labelled, depth=depth
    )
    rows = [
        row
        for method in methods
        for row in fusion.sweep(
            lexical, embedded, labelled, grid=grid, method=method, rrf_k=rrf_k, metric=metric
        )
    ]
    chosen = fusion.choose(rows, metric=metric)
    record = {
        "method": chosen["method"],
        "rrf_k": rrf_k,
        "weights": [1.0 - chosen["dense_weight"], chosen["dense_weight"]],
        "kind": chosen["kind"],
        "metric": metric,
        "chosen": chosen,
        "sweep": rows,
        "questions": str(questions),
        "num_questions": len(labelled),
    }
    IndexDir(index_dir).write_record(FUSION_FILE, record)
    return record


def parse_index_args(values: Sequence[str]) -> dict[str, str]:
    """`--index DIR` or `--index NAME=DIR` (repeatable) -> {name: dir}; one bare DIR is named ""."""
    indexes: dict[str, str] = {}
    for value in values:
        name, sep, directory = value.partition("=")
        if not sep:
            name, directory = ("" if len(values) == 1 else pathlib.Path(value).name), value
        if name in indexes:
            raise errors.ConfigError(f"--index name {name!r} given twice")
        indexes[name] = directory
    return indexes
