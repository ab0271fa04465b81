"""Bad input to `vertjax train`: exit status 2, one line naming the file/line/key, no traceback,
and an existing run directory left exactly as it was.

Most cases run `vertjax.cli.main` in this process (an uncaught exception would fail the test, so
"no traceback" holds there too); two run as real processes to check the whole of stderr.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import TINY_MODEL_GIN_BINDINGS, tiny_corpus_records

from vertjax import cli, io_utils


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A vocab, good and bad corpora, and a run dir trained to step 2 by the CLI."""
    from vertjax.data import vocab

    root = tmp_path_factory.mktemp("cli_errors")
    good = tiny_corpus_records()
    io_utils.write_jsonl(root / "good.jsonl", good)
    vocab.train_vocab(inputs=[root / "good.jsonl"], out_dir=root / "vocab", vocab_size=80, seed=0)
    lines = (root / "good.jsonl").read_bytes().splitlines(keepends=True)
    (root / "bad_line.jsonl").write_bytes(b"".join(lines[:3]) + b'{"id": "x", "text": \n')
    (root / "latin1.jsonl").write_bytes(b"".join(lines[:3]) + b'{"id": "y", "text": "caf\xe9"}\n')
    (root / "empty.jsonl").write_bytes(b"")
    paths = {name: root / f"{name}.jsonl" for name in ("good", "bad_line", "latin1", "empty")}
    paths["vocab"] = root / "vocab" / vocab.MODEL_FILENAME
    paths["run"] = root / "run"
    assert cli.main(argv(paths, task="err_good", steps=2)) == 0
    return paths


def argv(paths, *, task: str, steps: int = 4, train: str = "good", drop=(), extra=()) -> list[str]:
    files = {"train": str(paths.get(train, train))}
    args = [
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        "--gin_file=runs/pretrain.gin",
        f"--gin.MODEL_DIR={paths['run']}",
        f"--gin.TRAIN_STEPS={steps}",
        f"--gin.MIXTURE_OR_TASK_NAME={task}",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
        f"--gin.VOCAB={paths['vocab']}",
        f"--gin.TRAIN_FILES={files!r}",
        "--gin.BATCH_SIZE=4",
        "--gin.CHECKPOINT_PERIOD=2",
        "--no_progress",
        *TINY_MODEL_GIN_BINDINGS,
        *extra,
    ]
    return [a for a in args if not any(a.startswith(d) for d in drop)]


def _snapshot(run_dir: pathlib.Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and not p.name.startswith("events.out.tfevents")
    }


CASES = {
    "missing_gin_file": (
        dict(extra=("--gin_file=models/t5_1_1/nope.gin",)),
        "gin file 'models/t5_1_1/nope.gin' not found (searched: ",
    ),
    "unknown_parameter": (
        dict(extra=("--gin.trainer.train.nonexistent=1",)),
        "Configurable 'trainer.train' doesn't have a parameter named 'nonexistent'",
    ),
    "typo_configurable": (
        dict(extra=("--gin.t5.T5Confg.emb_dim=32",)),
        "No configurable matching 't5.T5Confg'",
    ),
    "no_model_dir": (
        dict(drop=("--gin.MODEL_DIR",)),
        "required gin macros not set: MODEL_DIR (pass --gin.MODEL_DIR=...)",
    ),
    "non_integer_steps": (
        dict(extra=("--gin.TRAIN_STEPS=abc",)),
        "trainer.train.total_steps = 'abc': must be an integer >= 0",
    ),
    "bad_jsonl_line": (dict(train="bad_line"), "bad_line.jsonl:4: invalid JSON"),
    "non_utf8": (dict(train="latin1"), "latin1.jsonl:4: line is not valid UTF-8"),
    "empty_corpus": (dict(train="empty"), "empty.jsonl: no records (empty file)"),
    "missing_corpus": (dict(train="/nonexistent/train.jsonl"), "/nonexistent/train.jsonl"),
    "model_mismatch": (
        dict(extra=("--gin.t5.T5Config.mlp_dim=96",)),
        "checkpoint_2: cannot restore",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_the_run_dir_is_kept(case, workspace, capsys):
    options, message = CASES[case]
    before = _snapshot(workspace["run"])
    assert "config.gin" in before and any(k.startswith("checkpoint_2/") for k in before)
    capsys.readouterr()
    assert cli.main(argv(workspace, task=f"err_{case}", **options)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vertjax train: error: ")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert _snapshot(workspace["run"]) == before


def _run_process(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vertjax.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing_gin_file", "bad_jsonl_line"])
def test_a_real_process_prints_no_traceback(case, workspace):
    options, message = CASES[case]
    proc = _run_process(argv(workspace, task=f"proc_{case}", **options))
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("vertjax train: error: ") and message in last
