"""The demo's retrieval stage: a tiny GTR trained on the demo pack, indexed, scored against BM25.

`stage_retrieval` runs it in the demo; `run(...)` is self-contained (the demo calls it with the folders its earlier stages wrote):
1. questions: template Self-QA questions (`synth.self_qa.template_questions`) over the pack's
   validation passages (for tuning the fusion) and over its test passages (the held-out set the
   report shows), `{id, question, positive_ids}` (identical questions from overlapping chunks are
   merged into one with several positives); neither split ever reaches training;
2. labelled pairs: the same templates over the train split, trained with ICT and cropping;
3. a tiny GTR trained from scratch as t5x_retrieval trains one (bidirectional in-batch softmax,
   logit scale 100, AdamW without decay on norms/position tables), mostly on the labelled pairs;
4. `build_index` (ScaNN + BM25) over every split; `tune_fusion` picks the hybrid's dense weight on
   the validation questions (so hybrid >= BM25 and dense there);
5. `evaluate_indexes` on the held-out questions and on the hand-written lay-language set
   (`vertjax/resources/demo/retrieval_lay_questions.jsonl`): tables + one PNG.
Every step resumes or is skipped when its output exists, like the other demo stages.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

from vertjax import io_utils
from vertjax.data import vocab as vocab_lib
from vertjax.demo.state import RESOURCES, DemoState, say
from vertjax.eval import plots
from vertjax.models import encoder, t5
from vertjax.retrieval import encode, evaluate, fusion, pairs
from vertjax.synth import report, self_qa
from vertjax.train import checkpoints, optimizers, restore, trainer

PathLike = str | os.PathLike
# Pair objectives of the demo's retriever: mostly the labelled template questions of the train
# split (the held-out questions' own kind), some ICT and cropping (measured 2026-12-01, 200 steps,
# batch 32: dense recall@5 0.55 vs 0.33 with retriever.gin's 1:1:2 mix and a BM25 negative).
LABELLED_HEAVY = {"ict": 0.5, "crop": 0.5, "labelled": 4.0}
# Passage tokens the GTR trains on and indexes: the title (the API name) and the first sentences.
# Chosen on the validation questions (dense recall@5 0.555 at 64 tokens vs 0.417 at 96, 200 x 32).
PASSAGE_LENGTH = 64
LAY_QUESTIONS = RESOURCES / "retrieval_lay_questions.jsonl"


def _template_questions(pack_dir: pathlib.Path, splits: tuple[str, ...]) -> list[dict[str, Any]]:
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
    files = {
        "held_out": (out / "questions.jsonl", ("test",)),
        "validation": (out / "validation_questions.jsonl", ("validation",)),
        "labelled": (out / "train_pairs.jsonl", ("train",)),
    }
    for name, (path, splits) in files.items():
        if not path.is_file():
            questions = _template_questions(pack_dir, splits)
            io_utils.write_jsonl(
                path, questions if name == "labelled" else questions[:max_questions]
            )
    return {name: path for name, (path, _) in files.items()}


def _evaluate(
    question_sets: dict[str, pathlib.Path], index: pathlib.Path, out: pathlib.Path
) -> dict[str, Any]:
    """One table per question set, and one precision/recall-vs-k PNG with every set's curves."""
    results = {
        name: evaluate.evaluate_indexes(
            questions=path, indexes={"GTR-tiny": index}, out_dir=out / "eval" / name
        )
        for name, path in question_sets.items()
    }
    curves = {
        f"{name}: {system}": curve
        for name, result in results.items()
        for system, curve in result["curves"].items()
    }
    plot = plots.plot_vs_k(
        curves,
        path=out / "eval" / "precision_recall_vs_k.png",
        title=", ".join(f"{n} ({r['num_questions']} q)" for n, r in results.items()),
    )
    return {"results": results, "plot": plot}


def run(
    *,
    out: PathLike,
    pack_dir: PathLike,
    vocab_dir: PathLike,
    initial_checkpoint: PathLike | None = None,
    train_steps: int = 200,
    batch_size: int = 32,
    objectives: dict[str, float] | None = None,
    hard_negatives: int = 0,
    max_questions: int = 200,
    seed: int = 0,
    lay_questions: PathLike | None = LAY_QUESTIONS,
    progress: bool = False,
) -> dict[str, Any]:
    """Trains, indexes, tunes the fusion and evaluates; returns `{table, tables, plot, metrics,
    fusion, ...}` (table: markdown, one section per question set)."""
    out, pack_dir = pathlib.Path(out), pathlib.Path(pack_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _write_questions(out, pack_dir, max_questions)
    vocab_size = vocab_lib.load_vocab(vocab_dir).vocab_size
    if initial_checkpoint is not None:
        config = restore.load_model_config(checkpoints.resolve_checkpoint(initial_checkpoint)[0])
    else:
        config = t5.tiny_config(vocab_size)
    model = encoder.DualEncoderModel(config, projection_dim=128, shared=True)
    data = pairs.PairsDataSource(
        passages=str(pack_dir),
        vocab=str(vocab_dir),
        batch_size=batch_size,
        question_length=32,
        passage_length=PASSAGE_LENGTH,
        objectives=objectives or LABELLED_HEAVY,
        labelled=[str(files["labelled"])],
        held_out=[str(files["held_out"]), str(files["validation"])],
        hard_negatives=hard_negatives,
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
        passage_length=PASSAGE_LENGTH,
        question_length=32,
        progress=progress,
    )
    choice = fusion.read_choice(out / "index")
    if choice is None and any(True for _ in io_utils.read_jsonl(files["validation"])):
        choice = evaluate.tune_fusion(out / "index", questions=files["validation"])
    question_sets = {"held-out": files["held_out"]}
    if lay_questions is not None and pathlib.Path(lay_questions).is_file():
        question_sets["lay"] = pathlib.Path(lay_questions)
    evaluated = _evaluate(question_sets, out / "index", out)
    results = evaluated["results"]
    tables = {name: r["markdown"] for name, r in results.items()}
    return {
        "table": "\n\n".join(
            f"**{name}** ({results[name]['num_questions']} questions)\n\n{t}"
            for name, t in tables.items()
        ),
        "tables": tables,
        "plot": str(evaluated["plot"]),
        "metrics": {name: r["metrics"] for name, r in results.items()},
        "num_questions": {name: r["num_questions"] for name, r in results.items()},
        "fusion": {k: choice[k] for k in ("method", "weights", "kind", "metric", "chosen")}
        if choice
        else None,
        "train_steps": train_steps,
        "train_seconds": train_seconds,
        "initial_checkpoint": str(initial_checkpoint) if initial_checkpoint else None,
    }


def stage_retrieval(state: DemoState) -> None:
    """A tiny GTR, dense + BM25 + hybrid indexes (fusion weight tuned on validation questions),
    recall tables on the held-out and the lay-language questions, and one PNG.

    The retriever trains from scratch: the demo's pretraining (AdamW at T5's Adafactor rate 1e-2)
    leaves an encoder that maps every passage to nearly the same vector (pooled cosine 0.97-0.99),
    and a GTR started from it stays at chance (recall@5 0.015 vs 0.31 from scratch, 60 steps;
    experiments/gtr_vs_dpr/README.md).
    """
    if "retrieval" in state.results:
        return
    say(f"training a GTR retriever for {state.config.retriever_steps} steps and indexing")
    result = run(
        out=state.out / "retrieval",
        pack_dir=state.results["data"]["domain"]["dir"],
        vocab_dir=state.results["vocab"]["dir"],
        initial_checkpoint=None,
        train_steps=state.config.retriever_steps,
        seed=state.config.seed,
    )
    print(result["table"], flush=True)
    keys = ("table", "plot", "metrics", "fusion", "train_seconds")
    state.results["retrieval"] = {k: result[k] for k in keys if k in result}
    state.save()
