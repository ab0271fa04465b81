"""Calibrated retrieval confidence: a top-score threshold stated as a percentile per retriever.

A raw `MIN_TOP_SCORE` has no common scale: BM25 scores are unbounded sums that grow with the
question's length (an in-domain question of the SQLite manual scored 4.96), dense scores are
cosine similarities in [-1, 1], and hybrid RRF scores are about 0.03. `vertjax ood train --index`
runs each retriever an index has on held-out in-domain questions and keeps their sorted top scores
(`retrieval_calibration.json`, beside the domain classifier); `MIN_TOP_SCORE_PERCENTILE = 5` then
refuses a question whose top score is below what 95% of in-domain questions reach with the
retriever in use, whichever it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.retrieval.types import Retriever
from vertjax.system.parsing import ScoreThreshold

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike
CALIBRATION_FILE = "retrieval_calibration.json"
FORMAT = "vertjax-retrieval-calibration"
VERSION = 1
# The percentiles `ood train` reports, and the quantiles the file lists for a reader.
REPORTED_PERCENTILES = (1, 5, 10, 25, 50)
NEEDS_CALIBRATION = (
    "run `vertjax ood train --pack PACK --index INDEX_DIR --out DIR` and bind --gin.OOD_DIR=DIR"
)


def retriever_kind(retriever: Retriever) -> str:
    """ "bm25", "dense" or "hybrid" for the retrievers `vertjax index build` makes (a sharded
    index's retriever is the kind of its shards), else the retriever's class name (which no
    calibration covers)."""
    from vertjax.retrieval import bm25, fusion, index, sharded

    if isinstance(retriever, bm25.BM25Index):
        return "bm25"
    if isinstance(retriever, fusion.HybridRetriever):
        return "hybrid"
    if isinstance(retriever, index.DenseRetriever | sharded.ShardedDenseRetriever):
        return "dense"
    if isinstance(retriever, sharded.ShardedRetriever) and retriever.shards:
        return retriever_kind(retriever.shards[0])
    return type(retriever).__name__


def index_kinds(index_dir: PathLike) -> list[str]:
    """The retrievers an index can open: bm25 with a BM25 part, dense with a dense part, hybrid
    with both."""
    from vertjax.retrieval.index_dir import IndexDir

    layout = IndexDir(index_dir)
    has_bm25, has_dense = layout.has_bm25(), layout.has_dense()
    kinds = ["bm25"] if has_bm25 else []
    kinds += ["dense"] if has_dense else []
    kinds += ["hybrid"] if has_bm25 and has_dense else []
    if not kinds:
        raise errors.RetrievalIndexError(
            f"--index {index_dir}: not an index (no BM25 or dense part); build one with"
            " `vertjax index build`"
        )
    return kinds


def top_scores(retriever: Retriever, questions: Sequence[str], *, k: int = 10) -> list[float]:
    """The best hit's score per question (questions without any hit are left out)."""
    hits = retriever.search(list(questions), k)
    return [max(h.score for h in hs) for hs in hits if hs]


@dataclasses.dataclass(frozen=True)
class RetrievalCalibration:
    """Sorted top scores of held-out in-domain questions, per retriever kind.

    Args:
      scores: kind -> the top score of each calibration question, ascending.
      index_dir: the index measured; fusion: its `fusion.json` choice then (what "hybrid"
        meant). `load_calibration` warns when the index in use differs in either.
    """

    scores: Mapping[str, tuple[float, ...]]
    index_dir: str = ""
    fusion: Mapping[str, Any] | None = None

    @classmethod
    def measure(
        cls,
        retrievers: Mapping[str, Retriever],
        questions: Sequence[str],
        *,
        index_dir: PathLike = "",
        k: int = 10,
    ) -> RetrievalCalibration:
        """Runs each retriever on the in-domain `questions` and keeps the sorted top scores
        (`index_dir`: the index they open, recorded with its fusion choice)."""
        from vertjax.retrieval import fusion

        if not questions:
            raise errors.DataError("no held-out in-domain questions to calibrate retrieval on")
        scores = {
            kind: tuple(sorted(top_scores(r, questions, k=k))) for kind, r in retrievers.items()
        }
        empty = [kind for kind, s in scores.items() if not s]
        if empty:
            raise errors.RetrievalIndexError(
                f"{index_dir}: the {', '.join(empty)} retriever found no passage for any of"
                f" {len(questions)} in-domain questions (an empty index?)"
            )
        if not str(index_dir):
            return cls(scores=scores)
        where = str(pathlib.Path(index_dir).resolve())
        return cls(scores=scores, index_dir=where, fusion=fusion.read_choice(index_dir))

    def threshold(self, kind: str, percentile: float) -> float:
        """The `percentile`-th percentile (0..100, linear interpolation) of `kind`'s scores."""
        check_percentile(percentile)
        if kind not in self.scores:
            covered = ", ".join(sorted(self.scores)) or "no retriever"
            raise errors.ConfigError(
                f"the retrieval calibration covers {covered}, not the {kind} retriever in use;"
                f" {NEEDS_CALIBRATION} (with an index that has a {kind} retriever)"
            )
        return float(np.percentile(np.asarray(self.scores[kind], np.float64), percentile))

    def quantiles(self, kind: str) -> dict[str, float]:
        """`{"p1": ..., "p5": ..., ...}`: the reported percentiles of `kind`'s top scores."""
        return {f"p{p}": self.threshold(kind, p) for p in REPORTED_PERCENTILES}

    def save(self, directory: PathLike) -> pathlib.Path:
        """Writes `directory/retrieval_calibration.json` (sorted scores and quantiles per kind)."""
        retrievers = {
            kind: {"questions": len(s), "quantiles": self.quantiles(kind), "scores": list(s)}
            for kind, s in self.scores.items()
        }
        record = {
            "format": FORMAT,
            "version": VERSION,
            "index_dir": self.index_dir,
            "fusion": self.fusion,
            "retrievers": retrievers,
        }
        return io_utils.atomic_write_json(pathlib.Path(directory) / CALIBRATION_FILE, record)

    @classmethod
    def load(cls, directory: PathLike) -> RetrievalCalibration:
        """Opens `directory/retrieval_calibration.json`; `CheckpointError` when bad."""
        path = pathlib.Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            raise errors.CheckpointError(f"{path}: missing; {NEEDS_CALIBRATION}")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("format") != FORMAT or record.get("version") != VERSION:
                raise ValueError(f"not a {FORMAT} v{VERSION} file")
            scores = {
                str(kind): tuple(sorted(float(x) for x in entry["scores"]))
                for kind, entry in record["retrievers"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise errors.CheckpointError(f"{path}: corrupted ({e})") from None
        if any(not s or not all(map(math.isfinite, s)) for s in scores.values()):
            raise errors.CheckpointError(f"{path}: a retriever has no or non-finite scores")
        return cls(
            scores=scores,
            index_dir=str(record.get("index_dir", "")),
            fusion=record.get("fusion"),
        )


def load_calibration(
    directory: PathLike | None, *, index_dir: PathLike | None = None
) -> RetrievalCalibration | None:
    """The calibration `ood train --index` wrote into `directory` (the OOD_DIR); None when
    `directory` is None or holds none (a classifier trained without --index).

    With `index_dir` (the index in use), warns when the calibration measured another index or
    the index's fusion choice changed since: its percentiles may no longer hold.
    """
    if directory is None or not (pathlib.Path(directory) / CALIBRATION_FILE).is_file():
        return None
    table = RetrievalCalibration.load(directory)
    if index_dir is not None and table.index_dir:
        from vertjax.retrieval import fusion

        rerun = f"rerun `vertjax ood train --index {index_dir} --out {directory} --overwrite`"
        if pathlib.Path(index_dir).resolve() != pathlib.Path(table.index_dir).resolve():
            logger.warning(
                "%s was calibrated on the index %s, not %s; %s",
                CALIBRATION_FILE,
                table.index_dir,
                index_dir,
                rerun,
            )
        elif fusion.read_choice(index_dir) != table.fusion:
            logger.warning("the index's fusion.json changed since %s; %s", CALIBRATION_FILE, rerun)
    return table


def check_percentile(percentile: Any) -> float:
    """`percentile` as a float in 0..100; `ConfigError` naming the gin macro otherwise."""
    if (
        isinstance(percentile, bool)
        or not isinstance(percentile, int | float)
        or not 0.0 <= percentile <= 100.0
    ):
        raise errors.ConfigError(
            f"MIN_TOP_SCORE_PERCENTILE = {percentile!r}: must be a number in 0..100"
        )
    return float(percentile)


def gate_threshold(
    retriever: Retriever,
    *,
    min_top_score: float | None = None,
    percentile: float | None = None,
    calibration: RetrievalCalibration | None = None,
) -> ScoreThreshold | None:
    """The retrieval-score threshold of `parsing.DomainGate`: a raw `min_top_score` on the
    retriever's own scale, or the `percentile` of in-domain top scores that `calibration`
    measured for this retriever's kind; None when neither is set."""
    kind = retriever_kind(retriever)
    if percentile is None:
        if min_top_score is None:
            return None
        return ScoreThreshold(float(min_top_score), f"a raw {kind} score")
    percentile = check_percentile(percentile)
    if min_top_score is not None:
        raise errors.ConfigError(
            "set MIN_TOP_SCORE (a raw score) or MIN_TOP_SCORE_PERCENTILE (calibrated), not both"
        )
    if calibration is None:
        raise errors.ConfigError(
            f"MIN_TOP_SCORE_PERCENTILE = {percentile:g} needs a retrieval calibration"
            f" (OOD_DIR/{CALIBRATION_FILE}); {NEEDS_CALIBRATION}"
        )
    value = calibration.threshold(kind, percentile)
    scale = f"percentile {percentile:g} of in-domain questions' top {kind} scores"
    return ScoreThreshold(value, scale)
