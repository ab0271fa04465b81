"""Building an `assistant.Assistant` from files and gin: the parts default.gin binds, two builders.

The answering pipeline itself is `vertjax.system.assistant`; this module puts one together. The
parts: `load_retriever` (a built index's retriever), `load_ood_classifier` (a trained domain
classifier), `index_domain` (what the index's documents are about, named in refusals and prompts),
`build_bm25_index` (a data pack's BM25 index, once) and `LexicalScorer` (the model-free
consistency check). The builders: `offline_assistant`, the zero-model system (BM25 + extractive
answers + lexical consistency) over a built data pack, the demo's fallback; and `from_gin`, the
assistant the parsed gin files bind (`vertjax answer | chat | serve`). Gin names the parts
`build.<name>` (e.g. `--gin.build.load_ood_classifier.threshold=0.6`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from vertjax import errors
from vertjax.retrieval.types import Retriever
from vertjax.system import assistant, calibration, generation
from vertjax.system.generation import NEUTRAL_DOMAIN

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class _LexicalPrediction:
    p_entailment: float
    label: str


class LexicalScorer:
    """A model-free consistency check: the share of a sentence's words found in its premise.

    The trivial baseline of `consistency.metrics.lexical_overlap`; it is what the zero-model
    system reports until an NLI model is trained (`nli.Scorer` drops in for it). It catches
    answers that drift from their sources, not subtle contradictions.
    """

    name = "lexical-overlap"

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[Any]:
        from vertjax.consistency import metrics

        out = []
        for premise, hypothesis in zip(premises, hypotheses, strict=True):
            p = metrics.lexical_overlap(premise, hypothesis)
            out.append(_LexicalPrediction(p, "entailment" if p >= 0.5 else "neutral"))
        return out


def load_retriever(index_dir: PathLike, *, kind: str = "bm25", verify: bool = True) -> Retriever:
    """The retriever of an index built by `vertjax index build` (or `build_bm25_index`), one
    index or the shards of a sharded one."""
    from vertjax.retrieval import dense

    return dense.open_retriever(index_dir, kind, verify=verify)


def build_bm25_index(pack_dir: PathLike, index_dir: PathLike) -> pathlib.Path:
    """Builds (once) a BM25 index of every passage of a built data pack into `index_dir`, and
    records the pack's domain there."""
    from vertjax.data import packs
    from vertjax.retrieval import bm25, encode
    from vertjax.retrieval.index_dir import IndexDir

    layout = IndexDir(index_dir)
    if not layout.has_bm25():
        bm25.BM25Index.build(packs.load_passages(pack_dir)).save(layout.root)
    domain = encode.pack_domain(pathlib.Path(pack_dir))
    if domain is not None and layout.domain() != domain:
        layout.set_domain(domain)
    return layout.root


def index_domain(index_dir: PathLike, name: str = "") -> str:
    """What an index's documents are about: `name` when given (`--gin.DOMAIN`), else its data
    pack's domain name as `vertjax index build` records it, else "the indexed documents"."""
    from vertjax.retrieval.index_dir import IndexDir

    if not isinstance(name, str):
        raise errors.ConfigError(f"build.index_domain.name = {name!r}: must be a string")
    if name.strip():
        return name.strip()
    domain = IndexDir(index_dir).domain()
    return domain["name"] if domain is not None else NEUTRAL_DOMAIN


def load_ood_classifier(directory: PathLike | None, *, threshold: float | None = None) -> Any:
    """A saved `ood.HashedLogisticClassifier`, or None when `directory` is None."""
    from vertjax.system import ood

    return (
        None
        if directory is None
        else ood.HashedLogisticClassifier.load(directory, threshold=threshold)
    )


def offline_assistant(
    *,
    index_dir: PathLike,
    pack_dir: PathLike | None = None,
    ood_dir: PathLike | None = None,
    k: int = 4,
    min_top_score: float | None = None,
    min_top_score_percentile: float | None = None,
    postprocess_policy: str = "flag",
    domain: str | None = None,
) -> assistant.Assistant:
    """The zero-model system: BM25 + rule rewriting + extractive cited answers + lexical checks.

    With `pack_dir`, a BM25 index of the pack is built into `index_dir` first if none is there.
    `ood_dir` adds the trained domain classifier (and its retrieval calibration, which
    `min_top_score_percentile` needs); `min_top_score` the raw retrieval-score fallback.
    `domain` defaults to the index's (`index_domain`).
    """
    from vertjax.retrieval import rewrite

    if pack_dir is not None:
        build_bm25_index(pack_dir, index_dir)
    return assistant.Assistant(
        load_retriever(index_dir, kind="bm25"),
        rewriter=rewrite.RuleRewriter(),
        generator=generation.ExtractiveGenerator(),
        consistency_scorer=LexicalScorer(),
        postprocess_policy=postprocess_policy,
        ood_classifier=load_ood_classifier(ood_dir),
        k=k,
        min_top_score=min_top_score,
        min_top_score_percentile=min_top_score_percentile,
        retrieval_calibration=calibration.load_calibration(ood_dir, index_dir=index_dir),
        domain=domain or index_domain(index_dir),
    )


def from_gin() -> assistant.Assistant:
    """The `Assistant` the parsed gin files bind (after `gin_utils.parse_gin`)."""
    import gin

    from vertjax import gin_utils

    gin_utils.check_required_macros()
    return gin_utils.call_configurable(gin.get_configurable(assistant.Assistant))
