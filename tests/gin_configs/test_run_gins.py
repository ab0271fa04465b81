"""runs/*.gin: each run binds the model gins' required DROPOUT_RATE, and runs/finetune.gin (dropout
0.1, constant learning rate) parses and trains."""

from __future__ import annotations

import dataclasses
import json

import gin
import pytest
from conftest import TINY_MODEL_GIN_BINDINGS, tiny_corpus_records

from vertjax import cli, errors, gin_utils, io_utils
from vertjax.train import checkpoints, restore

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


@pytest.mark.parametrize("run_gin", sorted(RUN_DROPOUT))
def test_every_run_gin_binds_the_scale_knobs_to_the_trainer(run_gin):
    """ASYNC_CHECKPOINTING (False in the gins) reaches `trainer.train` from every run gin."""
    gin_utils.parse_gin(
        gin_files=["models/t5_1_1/tiny.gin", run_gin], gin_bindings=["ASYNC_CHECKPOINTING=True"]
    )
    bound = gin.query_parameter("trainer.train.async_checkpointing")
    assert str(bound) == "%ASYNC_CHECKPOINTING"
    assert gin_utils.query_macro("ASYNC_CHECKPOINTING") is True


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


def _finetune_argv(model_dir, initial_checkpoint, files, vocab, steps) -> list[str]:
    return [
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        "--gin_file=runs/finetune.gin",
        f"--gin.MODEL_DIR={model_dir}",
        f"--gin.INITIAL_CHECKPOINT_PATH={initial_checkpoint!r}",
        f"--gin.TRAIN_STEPS={steps}",
        "--gin.MIXTURE_OR_TASK_NAME=finetune_gin_task",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 32}",
        f"--gin.VOCAB={vocab}",
        f"--gin.TRAIN_FILES={files!r}",
        "--gin.BATCH_SIZE=4",
        *TINY_MODEL_GIN_BINDINGS,
        "--gin.VOCAB_SIZE=400",
    ]


@pytest.mark.slow
def test_finetune_trains_with_dropout_from_scratch_or_from_a_checkpoint_without(
    tmp_path, tiny_vocab
):
    records = [{"inputs": r["title"], "targets": r["text"]} for r in tiny_corpus_records()]
    io_utils.write_jsonl(tmp_path / "train.jsonl", records[:180])
    io_utils.write_jsonl(tmp_path / "validation.jsonl", records[180:])
    files = {
        "train": str(tmp_path / "train.jsonl"),
        "validation": str(tmp_path / "validation.jsonl"),
    }
    scratch = tmp_path / "scratch"
    assert cli.main(_finetune_argv(scratch, None, files, tiny_vocab, steps=3)) == 0
    assert checkpoints.CheckpointManager(scratch, read_only=True).all_steps() == [3]
    assert restore.load_model_config(scratch).dropout_rate == 0.1
    lines = (scratch / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    rates = {r["train/learning_rate"] for r in map(json.loads, lines) if "train/learning_rate" in r}
    assert rates == {0.001}

    # T5X's recipe: the pretrained checkpoint has dropout 0; fine-tuning adds 0.1.
    config, params = restore.load_params(scratch)
    pretrained = tmp_path / "pretrained"
    restore.save_params(
        pretrained, config=dataclasses.replace(config, dropout_rate=0.0), params=params
    )
    tuned = tmp_path / "tuned"
    argv = _finetune_argv(tuned, str(pretrained), files, tiny_vocab, steps=2)
    assert cli.main([*argv, "--gin.NUM_MICROBATCHES=2"]) == 0
    assert restore.load_model_config(tuned).dropout_rate == 0.1
    assert checkpoints.CheckpointManager(tuned, read_only=True).all_steps() == [2]
