"""The NLI Scorer's plumbing on a tiny random T5: label scoring, windows, CLI score/eval."""

from __future__ import annotations

import dataclasses
import json
import re

import jax
import numpy as np
import pytest
from conftest import tiny_t5_config

from vertjax import cli, errors, io_utils
from vertjax.consistency import metrics, nli, nli_data
from vertjax.data import vocab as vocab_lib
from vertjax.demo import consistency as demo_consistency
from vertjax.generators.t5 import T5Client
from vertjax.models import encoder_decoder
from vertjax.train import restore

LONG_PREMISE = " ".join(
    f"The index number {i} stores a sorted run of pages before the commit." for i in range(12)
)


@pytest.fixture(scope="module")
def nli_checkpoint(tmp_path_factory, tiny_vocab):
    vocabulary = vocab_lib.load_vocab(tiny_vocab)
    config = tiny_t5_config(vocabulary.vocab_size)
    model = encoder_decoder.EncoderDecoderModel(config)
    params = model.init_params(jax.random.key(0))
    run_dir = tmp_path_factory.mktemp("nli_run")
    restore.save_params(run_dir, config=config, params=params)
    return run_dir, model, params, vocabulary


def manual_probs(model, params, vocabulary, premise, hypothesis, labels):
    """log P(label) from scratch: one unbatched, unpadded forward pass per label."""
    inputs = list(vocabulary.encode(nli_data.format_input(premise, hypothesis))) + [1]
    scores = []
    for label in labels:
        target = list(vocabulary.encode(label)) + [1]
        batch = {
            "encoder_input_tokens": np.array([inputs], np.int32),
            "decoder_input_tokens": np.array([[0] + target[:-1]], np.int32),
            "decoder_target_tokens": np.array([target], np.int32),
        }
        scores.append(float(model.score_batch(params, batch)[0]))
    scores = np.array(scores)
    return np.exp(scores - np.logaddexp.reduce(scores))


def test_scorer_scores_each_label_and_normalises(nli_checkpoint, tiny_vocab):
    run_dir, model, params, vocabulary = nli_checkpoint
    scorer = nli.Scorer.from_run_dir(run_dir, tiny_vocab, batch_size=4)
    pairs = [("The cache flushes the page.", "The page is flushed."), ("A client reads.", "x")]
    predictions = scorer.predict([p for p, _ in pairs], [h for _, h in pairs])
    for (premise, hypothesis), prediction in zip(pairs, predictions, strict=True):
        expected = manual_probs(model, params, vocabulary, premise, hypothesis, nli_data.NLI_LABELS)
        got = np.array([prediction.probabilities[label] for label in nli_data.NLI_LABELS])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert prediction.p_entailment == pytest.approx(expected[0], rel=1e-4)
        assert prediction.label == nli_data.NLI_LABELS[int(np.argmax(expected))]
    np.testing.assert_allclose(
        scorer([p for p, _ in pairs], [h for _, h in pairs]),
        [p.p_entailment for p in predictions],
    )


def test_long_premises_take_the_max_over_windows(nli_checkpoint, tiny_vocab):
    run_dir, model, params, vocabulary = nli_checkpoint
    scorer = nli.Scorer.from_run_dir(run_dir, tiny_vocab, max_premise_tokens=40, window_stride=20)
    windows = scorer.premise_windows(LONG_PREMISE)
    assert len(windows) >= 3
    n_tokens = len(scorer.vocabulary.encode(LONG_PREMISE))
    assert len(windows) == -(-(n_tokens - 40) // 20) + 1
    hypothesis = "The index stores pages."
    unwindowed = nli.Scorer(
        T5Client(model, params, vocabulary), max_premise_tokens=1000, window_stride=1000
    )
    per_window = unwindowed(windows, [hypothesis] * len(windows))
    [whole] = scorer([LONG_PREMISE], [hypothesis])
    assert whole == pytest.approx(float(per_window.max()), rel=1e-5)
    assert scorer.premise_windows("Short premise.") == ["Short premise."]


def test_binary_labels_and_bad_options(nli_checkpoint, tiny_vocab):
    run_dir, model, params, vocabulary = nli_checkpoint
    client = T5Client(model, params, vocabulary)
    scorer = nli.Scorer(client, labels=nli_data.BINARY_LABELS)
    [p] = scorer.predict(["A client reads."], ["A client writes."])
    assert set(p.probabilities) == set(nli_data.BINARY_LABELS)
    assert p.p_entailment == pytest.approx(p.probabilities["consistent"])
    assert sum(p.probabilities.values()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(errors.ConfigError, match="positive_label"):
        nli.Scorer(client, positive_label="yes")
    with pytest.raises(errors.ConfigError, match="window_stride"):
        nli.Scorer(client, max_premise_tokens=8, window_stride=9)
    big = vocab_lib.load_vocab(tiny_vocab, extra_ids=500)
    with pytest.raises(errors.CheckpointError, match="vocab"):
        nli.Scorer(T5Client(model, params, big))


def test_scorer_refuses_a_vocab_bigger_than_the_model(nli_checkpoint, tiny_vocab, tmp_path):
    _, model, _, vocabulary = nli_checkpoint
    small = dataclasses.replace(model.config, vocab_size=vocabulary.vocab_size - 50)
    params = encoder_decoder.EncoderDecoderModel(small).init_params(jax.random.key(0))
    restore.save_params(tmp_path / "small", config=small, params=params)
    expected = (
        f"vocab {tiny_vocab} has {vocabulary.vocab_size} ids but the model in "
        f"{tmp_path / 'small'} only {small.vocab_size}"
    )
    with pytest.raises(errors.ConfigError, match=re.escape(expected)):
        nli.Scorer.from_run_dir(tmp_path / "small", tiny_vocab)


def test_cli_score_is_resumable(nli_checkpoint, tiny_vocab, tmp_path):
    run_dir, *_ = nli_checkpoint
    pairs = tmp_path / "pairs.jsonl"
    io_utils.write_jsonl(
        pairs,
        [
            {"id": "a", "premise": "The cache flushes.", "hypothesis": "It flushes."},
            {"id": "b", "premise": LONG_PREMISE, "hypothesis": "Pages are sorted."},
        ],
    )
    out = tmp_path / "scores.jsonl"
    out.write_text(json.dumps({"id": "a", "p_entailment": -1.0, "label": "done"}) + "\n")
    argv = ["consistency", "score", "--checkpoint", str(run_dir), "--vocab", str(tiny_vocab)]
    argv += ["--pairs", str(pairs), "--out", str(out)]
    assert cli.main(argv) == 0
    rows = io_utils.load_jsonl(out)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["p_entailment"] == -1.0  # kept, not recomputed
    assert 0.0 < rows[1]["p_entailment"] < 1.0 and rows[1]["label"] in nli_data.NLI_LABELS
    assert cli.main(argv) == 0 and len(io_utils.load_jsonl(out)) == 2


def test_cli_score_names_a_bad_line(nli_checkpoint, tiny_vocab, tmp_path, capsys):
    run_dir, *_ = nli_checkpoint
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"id": 1, "premise": "p", "hypothesis": "h"}\n{"id": 2, "premise": "p"}\n')
    argv = ["consistency", "score", "--checkpoint", str(run_dir), "--vocab", str(tiny_vocab)]
    assert cli.main(argv + ["--pairs", str(pairs), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f"{pairs}:2: missing key(s) hypothesis" in capsys.readouterr().err


def test_cli_eval_writes_metrics_plot_and_baseline(nli_checkpoint, tiny_vocab, tmp_path):
    run_dir, *_ = nli_checkpoint
    claims = str(demo_consistency.CLAIM_SETS["domain_claims"])
    argv = ["eval", "consistency", "--checkpoint", str(run_dir), "--vocab", str(tiny_vocab)]
    argv += ["--pairs", claims, "--out", str(tmp_path / "eval")]
    assert cli.main(argv) == 0
    results = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    records = io_utils.load_jsonl(claims)
    assert results["pairs"] == len(records) >= 40
    assert 0.0 <= results["model"]["roc_auc"] <= 1.0
    assert "accuracy_3way" in results["model"]
    positives = [nli_data.is_positive(r["label"]) for r in records]
    overlap = [metrics.lexical_overlap(r["premise"], r["hypothesis"]) for r in records]
    assert results["lexical_overlap"]["roc_auc"] == pytest.approx(
        metrics.roc_auc(overlap, positives)
    )
    assert (tmp_path / "eval" / "calibration.png").read_bytes()[:4] == b"\x89PNG"


def test_labels_that_do_not_fit_the_targets_length_are_refused(tiny_vocab):
    vocabulary = vocab_lib.load_vocab(tiny_vocab)
    ids = nli.label_token_ids(vocabulary, nli_data.NLI_LABELS)
    longest = max(len(i) for i in ids)
    assert longest > 4 and all(i[-1] == vocabulary.eos_id for i in ids)
    assert nli.check_label_length(vocabulary, nli_data.NLI_LABELS, longest) == longest
    with pytest.raises(errors.ConfigError, match=r"'(entailment|contradiction)' is \d+ tokens"):
        nli.check_label_length(vocabulary, nli_data.NLI_LABELS, 4, vocab_path=tiny_vocab)


def test_nli_training_refuses_to_trim_labels(tmp_path, tiny_vocab, tiny_corpus_records):
    from vertjax.data import tasks
    from vertjax.train import data_config

    nli_data.write_splits(
        nli_data.synthesize(tiny_corpus_records, seed=0, antonyms={"first": "last"}), tmp_path
    )
    tasks.register_jsonl_task(
        "test_nli_label_guard",
        split_files={"train": tmp_path / "train.jsonl"},
        vocab_path=tiny_vocab,
        kind="seq2seq",
    )
    config = data_config.DatasetConfig(
        mixture_or_task_name="test_nli_label_guard",
        task_feature_lengths={"inputs": 64, "targets": 4},
        batch_size=2,
        targets_must_fit=True,
    )
    with pytest.raises(errors.ConfigError, match="test_nli_label_guard.*would be cut"):
        config.iterator()
    batch = next(config.replace(task_feature_lengths={"inputs": 64, "targets": 16}).iterator())
    assert batch["decoder_target_tokens"].shape == (2, 16)


def test_scorer_reads_a_classifier_run(tmp_path, tiny_vocab):
    from vertjax.consistency import classifier_data
    from vertjax.models import nli_classifier

    vocabulary = vocab_lib.load_vocab(tiny_vocab)
    model = nli_classifier.NLIClassifierModel(tiny_t5_config(vocabulary.vocab_size), hidden_dim=16)
    params = model.init_params(jax.random.key(1))
    restore.save_params(tmp_path / "clf", config=model.config, params=params)
    restore.save_config(tmp_path / "clf", model)
    scorer = nli.Scorer.from_run_dir(
        tmp_path / "clf", tiny_vocab, max_premise_tokens=24, window_stride=12, batch_size=4
    )
    assert scorer.is_classifier and scorer.labels == nli_data.NLI_LABELS
    premises = ["The cache flushes the page.", LONG_PREMISE]
    hypotheses = ["The page is flushed.", "The index stores pages."]
    predictions = scorer.predict(premises, hypotheses)
    expected = np.exp(
        np.asarray(
            model.log_probs(
                params,
                {
                    "hypothesis_tokens": classifier_data.tokenize(
                        vocabulary, hypotheses[:1], length=129
                    ),
                    "premise_tokens": classifier_data.tokenize(vocabulary, premises[:1], length=25),
                },
            )
        )
    )[0]
    np.testing.assert_allclose(
        [predictions[0].probabilities[label] for label in nli_data.NLI_LABELS], expected, rtol=1e-4
    )
    windows = scorer.premise_windows(LONG_PREMISE)
    assert len(windows) > 1
    best = max(scorer([w], hypotheses[1:])[0] for w in windows)
    assert predictions[1].p_entailment == pytest.approx(best, rel=1e-5)
