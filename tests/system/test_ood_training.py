"""`train_ood_dir`: held-out refusal metrics, the folder the assistant loads, reuse and overwrite."""

from __future__ import annotations

import json

import pytest
from conftest import write_tiny_pack
from ood_helpers import write_general_pack
from system_helpers import build_index

from vertjax import errors
from vertjax.data import packs
from vertjax.system import calibration, ood, ood_training


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    return {
        "pack_dir": write_tiny_pack(root / "pack"),
        "general_dir": write_general_pack(root / "general"),
        "index_dir": build_index(root / "index"),
    }


def test_trains_measures_on_held_out_documents_and_writes_the_folder(inputs, tmp_path):
    out = tmp_path / "ood"
    report = ood_training.train_ood_dir(out_dir=out, **inputs)
    assert not report["reused"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [ood.CONFIG_FILE, ood.WEIGHTS_FILE, ood_training.REPORT_FILE, calibration.CALIBRATION_FILE]
    )
    saved = json.loads((out / ood_training.REPORT_FILE).read_text())
    held, metrics = saved["held_out"], saved["classifier"]
    assert held["domain_questions"] > 0 and held["general_questions"] > 0
    assert metrics["in_domain"] == held["domain_questions"]
    assert metrics["out_of_domain"] == held["general_questions"]
    assert 0.5 < metrics["precision"] <= 1.0 and 0.5 < metrics["recall"] <= 1.0
    bm25_row = saved["retrieval"]["bm25"]
    assert bm25_row["questions"] == held["domain_questions"]
    assert set(bm25_row["refusal_by_percentile"]) == {
        f"p{p}" for p in calibration.REPORTED_PERCENTILES
    }
    classifier = ood.HashedLogisticClassifier.load(out)
    p_general, p_domain = classifier.probabilities(
        ["When does the farmer harvest ripe tomatoes?", "What does the query planner estimate?"]
    )
    assert p_general < classifier.threshold < p_domain
    assert calibration.load_calibration(out).scores.keys() == {"bm25"}
    # The lexicon is the whole pack's, as in use: held-out documents' words are known to it.
    assert classifier.featurizer.lexicon == ood.domain_lexicon(
        packs.load_passages(inputs["pack_dir"])
    )


def test_a_rerun_reuses_and_other_settings_need_overwrite(inputs, tmp_path):
    out = tmp_path / "ood"
    ood_training.train_ood_dir(out_dir=out, **inputs)
    weights = (out / ood.WEIGHTS_FILE).stat().st_mtime_ns
    assert ood_training.train_ood_dir(out_dir=out, **inputs)["reused"]
    assert (out / ood.WEIGHTS_FILE).stat().st_mtime_ns == weights
    with pytest.raises(errors.ConfigError, match=r"seed differ.*--overwrite"):
        ood_training.train_ood_dir(out_dir=out, seed=1, **inputs)
    report = ood_training.train_ood_dir(out_dir=out, seed=1, overwrite=True, **inputs)
    assert not report["reused"] and report["settings"]["seed"] == 1
    without_index = {**inputs, "index_dir": None}
    ood_training.train_ood_dir(out_dir=out, overwrite=True, **without_index)
    assert not (out / calibration.CALIBRATION_FILE).exists()  # replaced whole


def test_bad_inputs_are_one_clear_error(inputs, tmp_path):
    with pytest.raises(errors.DataError, match="neither a built pack folder .* nor a pack name"):
        ood_training.resolve_pack(str(tmp_path / "nowhere"), flag="--pack")
    (tmp_path / "empty").mkdir()
    with pytest.raises(errors.DataError, match="not a built data pack"):
        ood_training.resolve_pack(str(tmp_path / "empty"), flag="--pack")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(errors.ConfigError, match="holds no OOD classifier"):
        ood_training.train_ood_dir(out_dir=tmp_path / "busy", overwrite=True, **inputs)
    with pytest.raises(errors.RetrievalIndexError, match="not an index"):
        ood_training.train_ood_dir(
            out_dir=tmp_path / "o", **{**inputs, "index_dir": tmp_path / "empty"}
        )
    with pytest.raises(errors.ConfigError, match="test_fraction"):
        ood_training.train_ood_dir(out_dir=tmp_path / "o", test_fraction=1.0, **inputs)
