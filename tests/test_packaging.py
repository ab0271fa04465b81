"""The built wheel on its own: it ships the gin configs and resources, and `python -m vertjax train
--gin_file=models/t5_1_1/tiny.gin` works from another folder with no checkout on the path.

The wheel is built from a copy of the sources (so the shared checkout gets no `build/` folder),
installed with `pip install --no-deps --target`, and run with the project venv's interpreter for the
dependencies.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import TINY_MODEL_GIN_BINDINGS, tiny_corpus_records

from vertjax import io_utils

REPO = pathlib.Path(__file__).resolve().parent.parent
_SOURCES = ("setup.py", "pyproject.toml", "requirements.txt", "requirements-test.txt")


def _pip(*args: str, cwd: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    """The vertjax wheel built (no build isolation: offline) from a copy of the package sources."""
    src = tmp_path_factory.mktemp("src")
    for name in _SOURCES:
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(
        REPO / "vertjax", src / "vertjax", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(src), cwd=src)
    (built,) = out.glob("vertjax-*.whl")
    return built


@pytest.mark.slow
def test_wheel_ships_the_gin_configs_and_resources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {
        "vertjax/__main__.py",
        "vertjax/gin_configs/models/t5_1_1/tiny.gin",
        "vertjax/gin_configs/runs/pretrain.gin",
        "vertjax/gin_configs/system/default.gin",
        "vertjax/resources/synth/seed_tasks.jsonl",
    }
    assert packaged <= names
    in_repo = {
        f"vertjax/{p.relative_to(REPO / 'vertjax').as_posix()}"
        for p in (REPO / "vertjax" / "gin_configs").rglob("*.gin")
    }
    assert in_repo <= names


@pytest.mark.slow
def test_installed_wheel_trains_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "runs").mkdir(parents=True)  # a user's output folder must not shadow runs/*.gin
    records = tiny_corpus_records()
    io_utils.write_jsonl(elsewhere / "train.jsonl", records[:180])
    io_utils.write_jsonl(elsewhere / "validation.jsonl", records[180:])
    env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    where = run("-c", "import vertjax; print(vertjax.__file__)")
    assert where.returncode == 0, where.stderr[-2000:]
    assert pathlib.Path(where.stdout.strip()).is_relative_to(site)

    vocab = run(
        "-c",
        "from vertjax.data import vocab; "
        "vocab.train_vocab(inputs=['train.jsonl'], out_dir='vocab', vocab_size=80, seed=0)",
    )
    assert vocab.returncode == 0, vocab.stderr[-2000:]
    files = {"train": "train.jsonl", "validation": "validation.jsonl"}
    train = run(
        "-m",
        "vertjax",
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        "--gin_file=runs/pretrain.gin",
        "--gin.MODEL_DIR=runs/wheel",
        "--gin.TRAIN_STEPS=2",
        "--gin.MIXTURE_OR_TASK_NAME=wheel_task",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
        "--gin.VOCAB=vocab/spm.model",
        f"--gin.TRAIN_FILES={files!r}",
        "--gin.BATCH_SIZE=4",
        "--gin.CHECKPOINT_PERIOD=2",
        *TINY_MODEL_GIN_BINDINGS,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert (elsewhere / "runs" / "wheel" / "checkpoint_2").is_dir()
    assert "models/t5_1_1/tiny.gin" not in train.stderr  # no "not found" noise from gin
