"""The demo's retrieval stage: a tiny GTR trained on the demo pack, indexed, scored against BM25.

`run(...)` is self-contained (the demo calls it with the folders its earlier stages wrote):
1. held-out questions: template Self-QA questions (`synth.self_qa.template_questions`) over the
   pack's validation + test passages, `{id, question, positive_ids}` (identical questions from
   overlapping chunks are merged into one with several positives);
2. labelled pairs: the same templates over the train split, trained with ICT and cropping;
3. a tiny GTR trained for `train_steps` (from the demo's pretrained T5 encoder when given);
4. `build_index` (ScaNN + BM25) over every split, then `evaluate_indexes`: recall table + PNG.
Every step resumes or is skipped when its output exists, like the other demo stages.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

from vertjax import io_utils

PathLike = str | os.PathLike


def _template_questions(pack_dir: pathlib.Path, splits: tuple[str, ...]) -> list[dict[str, Any]]:
    from vertjax.synth import report, self_qa

    by_question: dict[str, list[str]] = {}
    for split in splits:
        for p in io_utils.read_jsonl(pack_dir / f"{split}.jsonl"):
            for q in self_qa.template_questions(p["title"], p["text"], count=2):
                if "`" in q:  # named questions only: "What are the arguments?" is ambiguous
                    by_question.setdefault(q, []).append(p["id"])
    return [
        {"id": report.stable_id(q), "question": q, "positive_ids": ids}
        for q, ids in by_question.items()
    ]


def _write_questions(out: pathlib.Path, pack_dir: pathlib.Path, max_questions: int) -> dict:
    held_out = out / "questions.jsonl"
    labelled = out / "train_pairs.jsonl"
    if not held_out.is_file():
        questions = _template_questions(pack_dir, ("validation", "test"))[:max_questions]
        io_utils.write_jsonl(held_out, questions)
    if not labelled.is_file():
        io_utils.write_jsonl(labelled, _template_questions(pack_dir, ("train",)))
    return {"held_out": held_out, "labelled": labelled}


def run(
    *,
    out: PathLike,
    pack_dir: PathLike,
    vocab_dir: PathLike,
    initial_checkpoint: PathLike | None = None,
    train_steps: int = 60,
    batch_size: int = 16,
    max_questions: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Trains, indexes and evaluates; returns `{table, plot, metrics, ...}` (table: markdown)."""
    from vertjax.data import vocab as vocab_lib
    from vertjax.models import encoder, t5
    from vertjax.retrieval import encode, evaluate, pairs
    from vertjax.train import checkpoints, optimizers, trainer

    out, pack_dir = pathlib.Path(out), pathlib.Path(pack_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _write_questions(out, pack_dir, max_questions)
    vocab_size = vocab_lib.load_vocab(vocab_dir).vocab_size
    if initial_checkpoint is not None:
        config = checkpoints.load_model_config(
            checkpoints.resolve_checkpoint(initial_checkpoint)[0]
        )
    else:
        config = t5.tiny_config(vocab_size)
    model = encoder.DualEncoderModel(config, projection_dim=128, shared=True)
    data = pairs.PairsDataSource(
        passages=str(pack_dir),
        vocab=str(vocab_dir),
        batch_size=batch_size,
        question_length=32,
        passage_length=96,
        labelled=[str(files["labelled"])],
        held_out=[str(files["held_out"])],
        seed=seed,
        model_vocab_size=config.vocab_size,
    )
    schedule = optimizers.warmup_cosine_schedule(
        peak_learning_rate=2e-3, warmup_steps=max(1, train_steps // 10), total_steps=train_steps
    )
    start = time.perf_counter()
    trainer.train(
        model_dir=str(out / "gtr"),
        model=model,
        train_data=data,
        optimizer=optimizers.adamw(learning_rate=schedule),
        learning_rate_fn=schedule,
        total_steps=train_steps,
        checkpoint_period=train_steps,
        seed=seed,
        initial_checkpoint_path=str(initial_checkpoint) if initial_checkpoint else None,
        progress=progress,
    )
    train_seconds = time.perf_counter() - start
    encode.build_index(
        passages=pack_dir,
        out=out / "index",
        retriever=out / "gtr",
        vocab=vocab_dir,
        method="scann",
        bm25=True,
        passage_length=96,
        question_length=32,
        progress=progress,
    )
    result = evaluate.evaluate_indexes(
        questions=files["held_out"], indexes={"GTR-tiny": out / "index"}, out_dir=out / "eval"
    )
    return {
        "table": result["markdown"],
        "plot": result["plot"],
        "metrics": result["metrics"],
        "num_questions": result["num_questions"],
        "train_steps": train_steps,
        "train_seconds": train_seconds,
        "initial_checkpoint": str(initial_checkpoint) if initial_checkpoint else None,
    }
