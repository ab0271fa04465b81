"""The hashed n-gram logistic OOD classifier: learns, is deterministic, saves without pickle."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_tiny_pack

from vertjax import errors
from vertjax.data import packs
from vertjax.synth import refusals
from vertjax.system import ood

SMALL = ood.Featurizer(num_buckets=1 << 12)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    pack = write_tiny_pack(tmp_path_factory.mktemp("pack"))
    train = packs.load_passages(pack, splits=("train",))
    test = packs.load_passages(pack, splits=("test",))
    general_train, general_test = ood.split_by_hash(
        refusals.OUT_OF_DOMAIN_QUESTIONS, test_fraction=0.4
    )
    featurizer = ood.Featurizer(num_buckets=1 << 12, lexicon=ood.domain_lexicon(train))
    return {
        "domain_train": ood.questions_from_passages(train, per_passage=3, seed=0),
        "domain_test": ood.questions_from_passages(test, per_passage=3, seed=1),
        "general_train": general_train,
        "general_test": general_test,
        "featurizer": featurizer,
    }


def test_separates_held_out_domain_and_general_questions(data):
    clf = ood.HashedLogisticClassifier.fit(
        data["domain_train"], data["general_train"], featurizer=data["featurizer"]
    )
    questions = data["domain_test"] + data["general_test"]
    truth = [False] * len(data["domain_test"]) + [True] * len(data["general_test"])
    refused = [p < clf.threshold for p in clf.probabilities(questions)]
    metrics = ood.refusal_metrics(truth, refused)
    assert metrics["out_of_domain"] == len(data["general_test"]) > 5
    assert metrics["precision"] >= 0.8 and metrics["recall"] >= 0.8, metrics


def test_deterministic_and_round_trips_through_json_and_npz(data, tmp_path):
    a = ood.HashedLogisticClassifier.fit(
        data["domain_train"], data["general_train"], featurizer=SMALL
    )
    b = ood.HashedLogisticClassifier.fit(
        data["domain_train"], data["general_train"], featurizer=SMALL
    )
    np.testing.assert_array_equal(a.weights, b.weights)
    a.save(tmp_path)
    loaded = ood.HashedLogisticClassifier.load(tmp_path)
    probe = ["How do I boil an egg?", "The database reads every row"]
    np.testing.assert_allclose(loaded.probabilities(probe), a.probabilities(probe), rtol=1e-6)
    assert ood.HashedLogisticClassifier.load(tmp_path, threshold=0.7).threshold == 0.7
    with np.load(tmp_path / ood.WEIGHTS_FILE, allow_pickle=False) as arrays:
        assert set(arrays.files) == {"weights", "bias"}


def test_corrupted_or_missing_files_are_checkpoint_errors(data, tmp_path):
    clf = ood.HashedLogisticClassifier.fit(["what is a table"], ["what is a cat"], featurizer=SMALL)
    clf.save(tmp_path)
    weights = tmp_path / ood.WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-3] + b"xyz")
    with pytest.raises(errors.CheckpointError, match="checksum"):
        ood.HashedLogisticClassifier.load(tmp_path)
    with pytest.raises(errors.CheckpointError, match="missing"):
        ood.HashedLogisticClassifier.load(tmp_path / "nowhere")
    with pytest.raises(errors.DataError, match="domain and general"):
        ood.HashedLogisticClassifier.fit([], ["x"], featurizer=SMALL)


def test_refusal_metrics_by_hand():
    m = ood.refusal_metrics([True, True, False, False, True], [True, False, True, False, True])
    assert (m["true_refusals"], m["false_refusals"], m["missed_refusals"]) == (2, 1, 1)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)


def test_split_by_hash_is_stable_and_disjoint():
    train, test = ood.split_by_hash(refusals.OUT_OF_DOMAIN_QUESTIONS, test_fraction=0.4)
    assert not set(train) & set(test) and len(train) + len(test) == len(
        refusals.OUT_OF_DOMAIN_QUESTIONS
    )
    assert (train, test) == ood.split_by_hash(refusals.OUT_OF_DOMAIN_QUESTIONS, test_fraction=0.4)
