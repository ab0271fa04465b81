"""Which SentencePiece vocabulary a run directory was trained with, and the warm-start check.

A run dir names its vocab in its operative `config.gin` (`VOCAB = '...'`, written by `vertjax
train`); a converted checkpoint keeps its own `spm.model`. Token ids only mean the same pieces
under the same vocabulary, so warm-starting (`--gin.INITIAL_CHECKPOINT_PATH`) from a checkpoint
trained with another one is refused, naming both (files are compared by content, not by path).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import pathlib
import re
from typing import Any

from vertjax import errors
from vertjax.data import vocab as vocab_lib

PathLike = str | os.PathLike
_VOCAB_BINDING = re.compile(r"^VOCAB = (.+)$", re.MULTILINE)


def trained_vocab(model_dir: PathLike) -> pathlib.Path | None:
    """The SentencePiece model a run dir names: its own `spm.model` (a converted checkpoint) or
    the `VOCAB` of its `config.gin` (a trained one) when that file exists; else None."""
    model_dir = pathlib.Path(model_dir)
    own = model_dir / vocab_lib.MODEL_FILENAME
    if own.is_file():
        return own
    config = model_dir / "config.gin"
    if not config.is_file():
        return None
    match = _VOCAB_BINDING.search(config.read_text(encoding="utf-8"))
    if match is None:
        return None
    try:
        named = ast.literal_eval(match.group(1).strip())
        path = vocab_lib.resolve_model_path(named) if isinstance(named, str) else None
    except (ValueError, SyntaxError, errors.VertjaxError):
        return None
    return path if path is not None and path.is_file() else None


def data_vocab(data: Any) -> pathlib.Path | None:
    """The SentencePiece model a training data source tokenizes with: its `vocab` (retriever and
    NLI pairs) or its seqio task's; None when it names none (or the task is not registered)."""
    named = getattr(data, "vocab", None)
    if isinstance(named, str | os.PathLike):
        try:
            return vocab_lib.resolve_model_path(named)
        except errors.DataError:
            return None
    name = getattr(data, "mixture_or_task_name", None)
    if not isinstance(name, str):
        return None
    from vertjax.data import pipeline

    try:
        vocabulary = pipeline.get_vocabulary(name)
    except ValueError:  # not registered: reading the data reports that
        return None
    path = getattr(vocabulary, "sentencepiece_model_file", None)
    return pathlib.Path(path) if path and pathlib.Path(path).is_file() else None


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_warm_start_vocab(initial_checkpoint_path: PathLike, *, vocab: PathLike | None) -> None:
    """`ConfigError` naming both vocabularies when the checkpoint at `initial_checkpoint_path`
    (a run dir or its `checkpoint_<step>`) was trained with another SentencePiece model than
    `vocab`, the new run's. Nothing to compare (either unknown) passes, with a log line."""
    path = pathlib.Path(initial_checkpoint_path)
    model_dir = path.parent if path.name.startswith("checkpoint_") else path
    theirs = trained_vocab(model_dir)
    if vocab is None or theirs is None:
        logging.info(
            "warm start from %s: vocabulary not recorded on one side (%s vs %s), not compared",
            path,
            theirs,
            vocab,
        )
        return
    mine = pathlib.Path(vocab)
    if _sha256(mine) != _sha256(theirs):
        raise errors.ConfigError(
            f"INITIAL_CHECKPOINT_PATH {path} was trained with the vocabulary {theirs}, but this"
            f" run tokenizes with {mine} (another SentencePiece model: the same ids are other"
            f" pieces); train with --gin.VOCAB={theirs}, or start without a checkpoint"
        )
