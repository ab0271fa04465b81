"""Shared builders for the answering-system tests: a BM25 index of the tiny corpus, an assistant,
a question about a tiny-corpus passage, a built pack with a domain."""

from __future__ import annotations

import pathlib

from conftest import tiny_corpus_records

from vertjax.retrieval import bm25, rewrite
from vertjax.system import assistant, build, generation


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
        "consistency_scorer": build.LexicalScorer(),
        "domain": "databases",
    }
    settings.update(options)
    return assistant.Assistant(retriever, **settings)


def passage_question(i: int) -> str:
    """A question made of the words of passage i's first sentence (BM25 finds that passage)."""
    first = tiny_corpus_records()[i]["text"].split(". ")[0]
    return f"Which part {first.lower()}?"


def domain_pack(tmp_path: pathlib.Path, **options) -> pathlib.Path:
    """A folder pack of 8 HTML pages (domain and base URL as `options` say), built for real."""
    from vertjax.data import packs

    source = tmp_path / "sqlite_docs"
    (source / "lang").mkdir(parents=True)
    for i in range(8):
        words = " ".join(f"topic{i}word{k}" for k in range(30))
        (source / "lang" / f"page{i}.html").write_text(
            f"<html><head><title>Page {i}</title></head><body><p>The page {i} statement "
            f"creates an index on two columns. It mentions {words}.</p></body></html>",
            encoding="utf-8",
        )
    out = tmp_path / "pack"
    packs.build_pack("folder", out, source=source, cache=tmp_path / "cache", **options)
    return out
