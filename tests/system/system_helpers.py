"""Shared builders for the answering-system tests: a BM25 index of the tiny corpus, an assistant."""

from __future__ import annotations

import pathlib

from conftest import tiny_corpus_records

from vertjax.retrieval import bm25, rewrite
from vertjax.system import assistant, generation


def build_index(root: pathlib.Path) -> pathlib.Path:
    bm25.BM25Index.build(tiny_corpus_records()).save(root)
    return root


def make_assistant(index_dir: pathlib.Path | None, **options) -> assistant.Assistant:
    """BM25 over `index_dir` (or `options["retriever"]`) + rule rewriting + extractive answers +
    lexical checks (override with options)."""
    retriever = options.pop("retriever", None) or bm25.BM25Index.load(index_dir)
    settings = {
        "rewriter": rewrite.RuleRewriter(),
        "generator": generation.ExtractiveGenerator(),
        "consistency_scorer": assistant.LexicalScorer(),
        "domain": "databases",
    }
    settings.update(options)
    return assistant.Assistant(retriever, **settings)
