"""Perplexity per task: exp(mean negative log-likelihood per non-padding target token).

`vertjax eval ppl --gin_file=runs/eval.gin --gin.CHECKPOINT=...` evaluates each task of a mixture
separately (so domain and general PPL are reported side by side), writes `eval_ppl.json` and adds a
line per task to `report.md` in the output directory.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from vertjax import errors, io_utils
from vertjax.models import encoder_decoder

Batch = Mapping[str, np.ndarray]


def padded_batches(examples: Iterator[Batch], batch_size: int) -> Iterator[Batch]:
    """Groups examples into fixed-size batches, padding the last with all-zero (ignored) rows."""
    chunk: list[Batch] = []
    for example in examples:
        chunk.append(example)
        if len(chunk) == batch_size:
            yield {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}
            chunk = []
    if chunk:
        pad = {k: np.zeros_like(v) for k, v in chunk[0].items()}
        chunk.extend([pad] * (batch_size - len(chunk)))
        yield {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}


def perplexity(
    model: encoder_decoder.EncoderDecoderModel, params: Any, batches: Iterator[Batch]
) -> dict[str, float]:
    """Mean NLL and PPL over every non-padding target token of `batches`."""
    metrics_fn = jax.jit(lambda p, b: model.loss_fn(p, b)[1])
    nll = tokens = examples = 0.0
    for batch in batches:
        metrics = jax.device_get(metrics_fn(params, dict(batch)))
        nll += float(metrics["nll_sum"])
        tokens += float(metrics["num_tokens"])
        examples += float(metrics["num_examples"])
    if tokens == 0:
        raise errors.DataError("no target tokens to evaluate (empty split?)")
    mean = nll / tokens
    return {"loss": mean, "ppl": math.exp(min(mean, 700.0)), "tokens": tokens, "examples": examples}


def task_names(mixture_or_task_name: str) -> list[str]:
    """The leaf tasks of a mixture (sorted), or the task itself."""
    import seqio

    if mixture_or_task_name in seqio.MixtureRegistry.names():
        mixture = seqio.MixtureRegistry.get(mixture_or_task_name)
        return sorted(t.name for t in mixture.tasks)
    if mixture_or_task_name in seqio.TaskRegistry.names():
        return [mixture_or_task_name]
    raise errors.ConfigError(f"unknown task or mixture {mixture_or_task_name!r}")


def task_examples(
    task: str,
    *,
    task_feature_lengths: Mapping[str, int],
    split: str,
    seed: int,
    max_examples: int | None,
) -> Iterator[Batch]:
    """Unpacked, unshuffled, single-epoch model features of one task (deterministic)."""
    from vertjax.data import pipeline

    dataset = pipeline.get_dataset(
        mixture_or_task_name=task,
        task_feature_lengths=dict(task_feature_lengths),
        split=split,
        batch_size=None,
        shuffle=False,
        seed=seed,
        pack=False,
        num_epochs=1,
    )
    if max_examples is not None:
        dataset = dataset.take(max_examples)
    return dataset.as_numpy_iterator()


def evaluate_ppl(
    *,
    checkpoint: str,
    mixture_or_task_name: str,
    task_feature_lengths: Mapping[str, int],
    split: str = "validation",
    batch_size: int = 32,
    max_examples: int | None = None,
    seed: int = 0,
    output_dir: str | None = None,
    label: str | None = None,
    registered: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """PPL of a checkpoint on every task of `mixture_or_task_name`; writes JSON + report line.

    Args:
      checkpoint: a run dir (latest step) or a `checkpoint_<step>` dir.
      output_dir: where `eval_ppl.json` and `report.md` go (default: the run dir).
      label: a name for this row in report.md (default: the checkpoint path and step).
      registered: bound to a gin registration call so tasks exist before evaluation.
    """
    del registered
    from vertjax.train import checkpoints, restore

    config, params = restore.load_params(checkpoint)
    model = encoder_decoder.EncoderDecoderModel(config)
    model_dir, step = checkpoints.resolve_checkpoint(checkpoint)
    results = {}
    for task in task_names(mixture_or_task_name):
        examples = task_examples(
            task,
            task_feature_lengths=task_feature_lengths,
            split=split,
            seed=seed,
            max_examples=max_examples,
        )
        results[task] = perplexity(model, params, padded_batches(examples, batch_size))
    out = pathlib.Path(output_dir or model_dir)
    record = {
        "checkpoint": os.fspath(model_dir),
        "step": step,
        "split": split,
        "tasks": results,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    _append_json(out / "eval_ppl.json", record)
    _append_report(out / "report.md", label or f"{model_dir.name}@{step}", split, results)
    return results


def _append_json(path: pathlib.Path, record: dict[str, Any]) -> None:
    history = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    history.append(record)
    io_utils.atomic_write_json(path, history)


def _append_report(path: pathlib.Path, label: str, split: str, results: Mapping[str, Any]) -> None:
    header = "| model | split | task | PPL | loss | tokens |\n|---|---|---|---|---|---|\n"
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if "| model | split | task | PPL |" not in existing:
        existing += ("\n" if existing else "") + "## Perplexity\n\n" + header
    rows = "".join(
        f"| {label} | {split} | {task} | {r['ppl']:.3f} | {r['loss']:.4f} | {int(r['tokens'])} |\n"
        for task, r in results.items()
    )
    io_utils.atomic_write_text(path, existing + rows)
