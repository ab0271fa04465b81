"""`vertjax train` end to end on seqio JSONL tasks: a real process, rerun-to-resume, the NaN guard.

The model is tiny.gin shrunk further by `--gin` bindings (emb 32, 2+2 layers, vocab 180), which
also exercises T5X-style bindings of nested configurables from the command line.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import TINY_MODEL_GIN_BINDINGS, tiny_corpus_records

from vertjax import cli, io_utils
from vertjax.train import checkpoints, restore


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, pathlib.Path]:
    """Train/validation JSONL splits of the tiny corpus and an 80-piece vocab (180 with extras)."""
    from vertjax.data import vocab

    root = tmp_path_factory.mktemp("train_cli")
    records = tiny_corpus_records()
    io_utils.write_jsonl(root / "train.jsonl", records[:180])
    io_utils.write_jsonl(root / "validation.jsonl", records[180:])
    vocab.train_vocab(inputs=[root / "train.jsonl"], out_dir=root / "vocab", vocab_size=80, seed=0)
    return {
        "train": root / "train.jsonl",
        "validation": root / "validation.jsonl",
        "vocab": root / "vocab" / vocab.MODEL_FILENAME,
    }


def train_argv(corpus, model_dir, *, task: str, steps: int, extra=()) -> list[str]:
    files = {"train": str(corpus["train"]), "validation": str(corpus["validation"])}
    return [
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        "--gin_file=runs/pretrain.gin",
        f"--gin.MODEL_DIR={model_dir}",
        f"--gin.TRAIN_STEPS={steps}",
        f"--gin.MIXTURE_OR_TASK_NAME={task}",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 16}",
        f"--gin.VOCAB={corpus['vocab']}",
        f"--gin.TRAIN_FILES={files!r}",
        "--gin.BATCH_SIZE=8",
        "--gin.CHECKPOINT_PERIOD=2",
        "--gin.EVAL_PERIOD=2",
        "--gin.EVAL_BATCHES=2",
        "--no_progress",
        *TINY_MODEL_GIN_BINDINGS,
        *extra,
    ]


def _steps_logged(model_dir: pathlib.Path) -> list[int]:
    lines = (model_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r["step"] for r in map(json.loads, lines) if "train/loss" in r]


@pytest.mark.slow
def test_train_in_a_process_then_rerun_resumes(corpus, tmp_path, capsys):
    model_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vertjax.cli",
            *train_argv(corpus, model_dir, task="cli_a", steps=4),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"trained to step 4 in {model_dir} (final loss " in proc.stdout
    assert checkpoints.CheckpointManager(model_dir, read_only=True).all_steps() == [2, 4]
    assert _steps_logged(model_dir) == [1, 2, 3, 4]
    records = [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval/perplexity" in r] == [2, 4]
    config = (model_dir / "config.gin").read_text(encoding="utf-8")
    for expected in ("TRAIN_STEPS = 4", "emb_dim = 32", "trainer.train.", "MODEL_DIR = "):
        assert expected in config
    assert restore.load_model_config(model_dir).emb_dim == 32

    # The same command with more steps resumes from checkpoint 4 (the data position included).
    assert cli.main(train_argv(corpus, model_dir, task="cli_a", steps=6)) == 0
    assert "trained to step 6" in capsys.readouterr().out
    assert _steps_logged(model_dir) == [1, 2, 3, 4, 5, 6]
    assert "TRAIN_STEPS = 6" in (model_dir / "config.gin").read_text(encoding="utf-8")
    # Once done, rerunning is a no-op that says so.
    assert cli.main(train_argv(corpus, model_dir, task="cli_a", steps=6)) == 0
    out = capsys.readouterr().out
    assert "trained to step 6" in out and "(already complete)" in out
    assert checkpoints.CheckpointManager(model_dir, read_only=True).all_steps() == [2, 4, 6]


@pytest.mark.slow
def test_divergence_exits_2_with_one_line_naming_the_step(corpus, tmp_path, capsys):
    model_dir = tmp_path / "run"
    argv = train_argv(
        corpus,
        model_dir,
        task="cli_nan",
        steps=6,
        extra=("--gin.optimizers.rsqrt_schedule.base_learning_rate=1e30",),
    )
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("vertjax train: error: loss is ") and " at step " in last
    step = int(last.split(" at step ")[1].split(";")[0])
    assert 1 <= step <= 6
    assert "base_learning_rate = 1e+30" in (model_dir / "config.gin").read_text(encoding="utf-8")
