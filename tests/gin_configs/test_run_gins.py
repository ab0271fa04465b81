"""runs/*.gin: each run binds the model gins' required DROPOUT_RATE, and runs/finetune.gin (dropout
0.1, constant learning rate) parses and trains."""

from __future__ import annotations

import json

import gin
import pytest
from conftest import TINY_MODEL_GIN_BINDINGS, tiny_corpus_records

from vertjax import cli, errors, gin_utils, io_utils
from vertjax.train import checkpoints

# Each run gin → the dropout it trains with (fine-tuning alone uses dropout, as in T5X).
RUN_DROPOUT = {
    "runs/pretrain.gin": 0.0,
    "runs/pretrain_mixture.gin": 0.0,
    "runs/nli.gin": 0.0,
    "runs/nli_true.gin": 0.0,
    "runs/nli_classifier.gin": 0.0,
    "runs/retriever.gin": 0.0,
    "runs/finetune.gin": 0.1,
}


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


def test_every_run_gin_that_trains_a_t5_is_listed():
    runs = gin_utils.BUILTIN_GIN_DIR / "runs"
    trains = {f"runs/{p.name}" for p in runs.glob("*.gin") if p.name != "eval.gin"}
    assert trains == set(RUN_DROPOUT)


@pytest.mark.parametrize("run_gin", sorted(RUN_DROPOUT))
def test_run_gins_bind_the_dropout_rate(run_gin):
    gin_utils.parse_gin(gin_files=["models/t5_1_1/tiny.gin", run_gin])
    assert gin_utils.query_macro("DROPOUT_RATE") == RUN_DROPOUT[run_gin]


def test_a_model_gin_alone_requires_the_dropout_rate():
    gin_utils.parse_gin(gin_files=["models/t5_1_1/small.gin"])
    with pytest.raises(errors.ConfigError, match=r"required gin macros not set: DROPOUT_RATE"):
        gin_utils.check_required_macros()


def test_finetune_requires_the_initial_checkpoint():
    gin_utils.parse_gin(
        gin_files=["models/t5_1_1/tiny.gin", "runs/finetune.gin"],
        gin_bindings=["MODEL_DIR=/tmp/x", "TRAIN_STEPS=1", "MIXTURE_OR_TASK_NAME=t"]
        + ["TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 8}"],
    )
    with pytest.raises(errors.ConfigError, match=r"not set: INITIAL_CHECKPOINT_PATH"):
        gin_utils.check_required_macros()


@pytest.mark.slow
def test_finetune_trains_from_scratch_with_dropout_and_a_constant_rate(tmp_path, tiny_vocab):
    records = [{"inputs": r["title"], "targets": r["text"]} for r in tiny_corpus_records()]
    io_utils.write_jsonl(tmp_path / "train.jsonl", records[:180])
    io_utils.write_jsonl(tmp_path / "validation.jsonl", records[180:])
    files = {
        "train": str(tmp_path / "train.jsonl"),
        "validation": str(tmp_path / "validation.jsonl"),
    }
    model_dir = tmp_path / "ft"
    argv = [
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        "--gin_file=runs/finetune.gin",
        f"--gin.MODEL_DIR={model_dir}",
        "--gin.INITIAL_CHECKPOINT_PATH=None",
        "--gin.TRAIN_STEPS=3",
        "--gin.MIXTURE_OR_TASK_NAME=finetune_gin_task",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 32}",
        f"--gin.VOCAB={tiny_vocab}",
        f"--gin.TRAIN_FILES={files!r}",
        "--gin.BATCH_SIZE=4",
        *TINY_MODEL_GIN_BINDINGS,
        "--gin.VOCAB_SIZE=400",
    ]
    assert cli.main(argv) == 0
    assert checkpoints.CheckpointManager(model_dir, read_only=True).all_steps() == [3]
    assert checkpoints.load_model_config(model_dir).dropout_rate == 0.1
    lines = (model_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rates = {r["train/learning_rate"] for r in map(json.loads, lines) if "train/learning_rate" in r}
    assert rates == {0.001}
