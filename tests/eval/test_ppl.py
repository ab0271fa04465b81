"""Perplexity: the definition, padding of the last batch, per-task reports and the CLI."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
from conftest import tiny_t5_config

from vertjax import cli, io_utils
from vertjax.eval import ppl
from vertjax.models import encoder_decoder, losses
from vertjax.train import restore

LENGTHS = {"inputs": 32, "targets": 8}


def _model(vocab_size: int) -> encoder_decoder.EncoderDecoderModel:
    return encoder_decoder.EncoderDecoderModel(tiny_t5_config(vocab_size))


def test_padded_batches_keep_every_example_and_pad_with_zero_rows():
    examples = [{"x": np.full(3, i + 1)} for i in range(5)]
    batches = list(ppl.padded_batches(iter(examples), 2))
    assert [b["x"].shape for b in batches] == [(2, 3)] * 3
    np.testing.assert_array_equal(batches[-1]["x"], [[5, 5, 5], [0, 0, 0]])


def test_perplexity_is_exp_of_mean_nll_per_target_token():
    model = _model(40)
    params = model.init_params(jax.random.key(0))
    rng = np.random.default_rng(0)
    targets = rng.integers(2, 40, (3, 6)).astype(np.int32)
    targets[0, 4:] = 0  # padding must not count
    batch = {
        "encoder_input_tokens": rng.integers(2, 40, (3, 7)).astype(np.int32),
        "decoder_input_tokens": np.concatenate([np.zeros((3, 1), np.int32), targets[:, :-1]], 1),
        "decoder_target_tokens": targets,
    }
    result = ppl.perplexity(model, params, iter([batch]))
    logits = model.logits(params, batch)
    log_likelihood = np.asarray(losses.token_log_likelihood(logits, targets))
    mask = targets > 0
    expected = -log_likelihood[mask].mean()
    assert result["tokens"] == mask.sum() == 16
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(result["ppl"], math.exp(expected), rtol=1e-5)


def test_eval_ppl_cli_writes_json_and_report(tmp_path, tiny_vocab, tiny_corpus_records):
    from vertjax.data import vocab

    io_utils.write_jsonl(tmp_path / "val.jsonl", tiny_corpus_records[:20])
    size = vocab.load_vocab(tiny_vocab).vocab_size
    model = _model(size)
    run = tmp_path / "run"
    restore.save_params(run, config=model.config, params=model.init_params(jax.random.key(1)))
    code = cli.main(
        [
            "eval",
            "ppl",
            "--gin_file=runs/eval.gin",
            f"--gin.CHECKPOINT={run}",
            "--gin.MIXTURE_OR_TASK_NAME=ppl_cli_task",
            f"--gin.VOCAB={tiny_vocab}",
            f"--gin.EVAL_FILES={{'validation': '{tmp_path / 'val.jsonl'}'}}",
            f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}",
            "--gin.BATCH_SIZE=4",
        ]
    )
    assert code == 0
    history = json.loads((run / "eval_ppl.json").read_text())
    result = history[-1]["tasks"]["ppl_cli_task"]
    assert result["ppl"] > 1.0 and result["tokens"] > 0
    assert math.isclose(result["ppl"], math.exp(result["loss"]), rel_tol=1e-9)
    report = (run / "report.md").read_text()
    assert "| run@0 | validation | ppl_cli_task |" in report


def test_eval_ppl_without_checkpoint_is_a_one_line_error(capsys, tmp_path):
    code = cli.main(
        [
            "eval",
            "ppl",
            "--gin_file=runs/eval.gin",
            "--gin.MIXTURE_OR_TASK_NAME=x",
            f"--gin.TASK_FEATURE_LENGTHS={LENGTHS}",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "CHECKPOINT" in err and len(err.splitlines()) == 1
