"""Shared builders for the answering-system tests: a tiny pack, its BM25 index, an assistant."""

from __future__ import annotations

import json
import pathlib

from conftest import tiny_corpus_records

from vertjax import io_utils
from vertjax.retrieval import bm25, rewrite
from vertjax.system import assistant, generation


def write_tiny_pack(root: pathlib.Path) -> pathlib.Path:
    """A built-pack folder (manifest + splits) over the 200 tiny passages: docs 0-39 train,
    40-44 validation, 45-49 test."""
    records = tiny_corpus_records()
    split = {"train": [], "validation": [], "test": []}
    for r in records:
        doc = int(r["doc_id"][3:])
        split["train" if doc < 40 else "validation" if doc < 45 else "test"].append(r)
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in split.items():
        io_utils.write_jsonl(root / f"{name}.jsonl", rows)
    (root / "manifest.json").write_text(json.dumps({"pack": "tiny"}), encoding="utf-8")
    return root


def build_index(root: pathlib.Path) -> pathlib.Path:
    bm25.BM25Index.build(tiny_corpus_records()).save(root)
    return root


def make_assistant(index_dir: pathlib.Path, **options) -> assistant.Assistant:
    """BM25 + rule rewriting + extractive answers + lexical checks (override with options)."""
    settings = {
        "rewriter": rewrite.RuleRewriter(),
        "generator": generation.ExtractiveGenerator(),
        "consistency_scorer": assistant.LexicalScorer(),
        "domain": "databases",
    }
    settings.update(options)
    return assistant.Assistant(bm25.BM25Index.load(index_dir), **settings)
