"""`vertjax ood train`: a folder `--gin.OOD_DIR` loads, per-retriever calibration, clear errors."""

from __future__ import annotations

import json

import pytest
from conftest import make_retriever, tiny_corpus_records, write_tiny_pack
from ood_helpers import write_general_pack

from vertjax import cli
from vertjax.system import calibration, ood_training

HELD_IN = f"Which part {tiny_corpus_records()[17]['text'].split('. ')[0].lower()}?"


@pytest.fixture(scope="module")
def packs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("packs")
    return {"pack": write_tiny_pack(root / "pack"), "general": write_general_pack(root / "gen")}


def _train(packs_dir, out, *extra) -> int:
    argv = [
        "ood",
        "train",
        "--pack",
        str(packs_dir["pack"]),
        "--general",
        str(packs_dir["general"]),
    ]
    return cli.main([*argv, "--out", str(out), *extra])


def _answer(index, ood_dir, *bindings) -> list[str]:
    return [
        "answer",
        "--config",
        "system/default.gin",
        f"--gin.INDEX_DIR={index}",
        f"--gin.OOD_DIR={ood_dir}",
        *bindings,
    ]


def test_trains_a_folder_the_assistant_loads(packs_dir, tmp_path, capsys):
    index = tmp_path / "index"
    build = ["index", "build", "--passages", str(packs_dir["pack"]), "--out", str(index), "--bm25"]
    assert cli.main(build) == 0
    out = tmp_path / "ood"
    assert _train(packs_dir, out, "--index", str(index)) == 0
    printed = capsys.readouterr().out
    assert (
        "| classifier P(in-domain) |" in printed and "| bm25 top score < percentile 5 |" in printed
    )
    report = json.loads((out / ood_training.REPORT_FILE).read_text())
    assert {"precision", "recall"} <= set(report["classifier"])
    assert f"--gin.OOD_DIR={out} --gin.MIN_TOP_SCORE_PERCENTILE=5" in printed

    argv = _answer(index, out, "--gin.MIN_TOP_SCORE_PERCENTILE=5", "--json")
    assert cli.main([*argv, HELD_IN]) == 0
    assert not json.loads(capsys.readouterr().out)["refused"]
    assert cli.main([*argv, "When does the farmer harvest ripe tomatoes?"]) == 0
    refused = json.loads(capsys.readouterr().out)
    assert refused["refused"] and refused["refusal_kind"] == "outside_domain"
    assert cli.main([*argv, "What about the night?"]) == 0  # domain words, no close passage
    vague = json.loads(capsys.readouterr().out)
    assert vague["refused"] and vague["refusal_kind"] == "no_match"

    assert _train(packs_dir, out, "--index", str(index)) == 0  # same settings: reused
    assert "already trained with these settings" in capsys.readouterr().out


@pytest.mark.slow  # a dense index: a JAX encoder over the tiny pack (~30 s on one core)
def test_calibrates_every_retriever_of_a_dense_index(packs_dir, tmp_path, tiny_vocab, capsys):
    index = tmp_path / "index"
    build = ["index", "build", "--passages", str(packs_dir["pack"]), "--out", str(index), "--bm25"]
    build += ["--retriever", str(make_retriever(tmp_path / "gtr")), "--vocab", str(tiny_vocab)]
    assert cli.main([*build, "--method", "brute", "--no_progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "ood"
    assert _train(packs_dir, out, "--index", str(index), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["retrieval"]) == {"bm25", "dense", "hybrid"}
    table = calibration.RetrievalCalibration.load(out)
    p5 = {kind: table.threshold(kind, 5) for kind in ("bm25", "dense", "hybrid")}
    assert p5["hybrid"] < 0.1 < p5["bm25"] and -1.0 <= p5["dense"] <= 1.0


def test_bad_input_is_one_line_and_exit_2(packs_dir, tmp_path, capsys):
    assert _train({**packs_dir, "pack": tmp_path / "missing"}, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pack" in err and "neither a built pack folder" in err

    index = tmp_path / "index"
    build = ["index", "build", "--passages", str(packs_dir["pack"]), "--out", str(index), "--bm25"]
    assert cli.main(build) == 0
    plain = tmp_path / "plain"  # trained without --index: no calibration
    assert _train(packs_dir, plain) == 0
    capsys.readouterr()
    assert cli.main([*_answer(index, plain, "--gin.MIN_TOP_SCORE_PERCENTILE=5"), "q?"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vertjax ood train" in err and "--index" in err

    calibrated = tmp_path / "calibrated"
    assert _train(packs_dir, calibrated, "--index", str(index)) == 0
    capsys.readouterr()
    assert cli.main([*_answer(index, calibrated, "--gin.MIN_TOP_SCORE_PERCENTILE=150"), "q?"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MIN_TOP_SCORE_PERCENTILE = 150" in err and "0..100" in err
    assert _train(packs_dir, calibrated, "--seed", "3") == 2  # other settings, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
