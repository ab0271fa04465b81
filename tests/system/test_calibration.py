"""Calibrated retrieval confidence: per-retriever percentiles of in-domain top scores."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import tiny_corpus_records
from system_helpers import build_index, make_assistant

from vertjax import errors
from vertjax.retrieval import bm25, fusion
from vertjax.system import calibration, parsing


def _question(i: int) -> str:
    """A question quoting passage i's first sentence (a confident BM25 match)."""
    return f"Which part {tiny_corpus_records()[i]['text'].split('. ')[0].lower()}?"


IN_DOMAIN = [_question(i) for i in range(0, 200, 5)]
HELD_IN = _question(17)
# Looks like the domain (its words are the corpus's) but matches no passage well.
VAGUE = "What does the database do?"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    return build_index(tmp_path_factory.mktemp("index"))


@pytest.fixture(scope="module")
def retrievers(index_dir):
    index = bm25.BM25Index.load(index_dir)
    return {"bm25": index, "hybrid": fusion.HybridRetriever([index])}


@pytest.fixture(scope="module")
def table(retrievers, index_dir):
    return calibration.RetrievalCalibration.measure(retrievers, IN_DOMAIN, index_dir=index_dir)


def test_thresholds_are_per_retriever_and_survive_a_save(table, retrievers, tmp_path):
    assert {k: len(s) for k, s in table.scores.items()} == {"bm25": 40, "hybrid": 40}
    bm25_p5, hybrid_p5 = table.threshold("bm25", 5), table.threshold("hybrid", 5)
    assert hybrid_p5 < 0.1 < bm25_p5  # RRF scores vs BM25 sums: one number cannot serve both
    assert table.threshold("bm25", 0) == min(table.scores["bm25"])
    assert table.threshold("bm25", 100) == max(table.scores["bm25"])
    assert calibration.retriever_kind(retrievers["hybrid"]) == "hybrid"
    table.save(tmp_path)
    record = json.loads((tmp_path / calibration.CALIBRATION_FILE).read_text())
    assert record["retrievers"]["bm25"]["quantiles"]["p5"] == pytest.approx(bm25_p5)
    assert calibration.RetrievalCalibration.load(tmp_path) == table


def test_a_percentile_refuses_a_vague_question_and_answers_a_held_in_one(table, retrievers):
    bot = make_assistant(
        None, min_top_score_percentile=5, retrieval_calibration=table, retriever=retrievers["bm25"]
    )
    vague, held_in = bot.answer(VAGUE), bot.answer(HELD_IN)
    assert vague.refused and vague.refusal_kind == parsing.NO_MATCH
    assert "percentile 5 of in-domain questions' top bm25 scores" in vague.refusal_reason
    assert not held_in.refused and held_in.sentences
    assert (
        vague.sub_questions[0].top_score
        < table.threshold("bm25", 5)
        <= max(p.score for p in held_in.retrieved)
    )


def test_bad_thresholds_are_config_errors(table, retrievers, tmp_path):
    with pytest.raises(errors.ConfigError, match="vertjax ood train"):
        make_assistant(None, retriever=retrievers["bm25"], min_top_score_percentile=5)
    for bad in (-1, 100.5, "5", True):
        with pytest.raises(errors.ConfigError, match="0..100"):
            make_assistant(
                None,
                retriever=retrievers["bm25"],
                min_top_score_percentile=bad,
                retrieval_calibration=table,
            )
    with pytest.raises(errors.ConfigError, match="not both"):
        make_assistant(
            None,
            retriever=retrievers["bm25"],
            min_top_score=1.0,
            min_top_score_percentile=5,
            retrieval_calibration=table,
        )
    bm25_only = calibration.RetrievalCalibration(scores={"bm25": table.scores["bm25"]})
    with pytest.raises(errors.ConfigError, match="covers bm25, not the hybrid retriever"):
        make_assistant(
            None,
            retriever=retrievers["hybrid"],
            min_top_score_percentile=5,
            retrieval_calibration=bm25_only,
        )
    (tmp_path / calibration.CALIBRATION_FILE).write_text('{"format": "other"}')
    with pytest.raises(errors.CheckpointError, match="corrupted"):
        calibration.load_calibration(tmp_path)
    assert calibration.load_calibration(tmp_path / "absent") is None


def test_a_calibration_of_another_index_or_fusion_choice_is_flagged(
    table, index_dir, tmp_path, caplog
):
    table.save(tmp_path)
    calibration.load_calibration(tmp_path, index_dir=index_dir)
    assert not caplog.records
    calibration.load_calibration(tmp_path, index_dir=tmp_path / "other")
    assert "was calibrated on the index" in caplog.text and "--overwrite" in caplog.text
    caplog.clear()
    tuned = dataclasses.replace(table, fusion={"kind": "hybrid", "method": "rrf", "weights": [1]})
    tuned.save(tmp_path)
    calibration.load_calibration(tmp_path, index_dir=index_dir)
    assert "fusion.json changed" in caplog.text
