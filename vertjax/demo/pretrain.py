"""The demo's continued pretraining: a tiny T5 on the domain(+general) span-corruption mixture,
with validation perplexity per corpus before and after."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax

from vertjax.data import pipeline, tasks
from vertjax.demo.state import DemoState, say
from vertjax.eval import ppl
from vertjax.models import encoder_decoder, t5
from vertjax.train import data_config, optimizers, restore, trainer


def register_pretraining_tasks(state: DemoState) -> dict[str, str]:
    """Registers domain/general span-corruption tasks (+ their mixture); returns role → name."""
    names = {}
    for role, info in state.results["data"].items():
        pack_dir = pathlib.Path(info["dir"])
        name = f"demo_{role}_span_corruption"
        tasks.register_jsonl_task(
            name,
            split_files={s: pack_dir / f"{s}.jsonl" for s in ("train", "validation")},
            vocab_path=state.out / "vocab",
            kind="span_corruption",
        )
        names[role] = name
    if len(names) == 2:
        rate = state.config.domain_rate
        tasks.register_mixture(
            "demo_pretrain_mixture",
            rates={names["domain"]: rate, names["general"]: 1.0 - rate},
        )
        names["mixture"] = "demo_pretrain_mixture"
    return names


def _model(state: DemoState) -> encoder_decoder.EncoderDecoderModel:
    vocabulary = pipeline.get_vocabulary(state.results["tasks"]["domain"])
    return encoder_decoder.EncoderDecoderModel(t5.tiny_config(vocabulary.vocab_size))


def _ppl_table(state: DemoState, model: Any, params: Any) -> dict[str, dict[str, float]]:
    lengths = {"inputs": state.config.inputs_length, "targets": state.config.targets_length}
    table = {}
    for role in ("domain", "general"):
        task = state.results["tasks"].get(role)
        if task is None:
            continue
        examples = ppl.task_examples(
            task,
            task_feature_lengths=lengths,
            split="validation",
            seed=state.config.seed,
            max_examples=state.config.eval_examples,
        )
        table[role] = ppl.perplexity(model, params, ppl.padded_batches(examples, 32))
    return table


def _fmt(table: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{role} {r['ppl']:.2f}" for role, r in table.items())


def stage_pretrain(state: DemoState) -> None:
    """Trains the tiny T5 on the domain(+general) mixture; PPL before and after, per corpus."""
    cfg = state.config
    state.results["tasks"] = register_pretraining_tasks(state)
    if "pretrain" in state.results:
        return
    model = _model(state)
    train_name = state.results["tasks"].get("mixture", state.results["tasks"]["domain"])
    before = _ppl_table(state, model, model.init_params(jax.random.key(cfg.seed)))
    say(f"PPL before training: {_fmt(before)}")
    run_dir = state.out / "pretrain"
    schedule = optimizers.warmup_cosine_schedule(
        peak_learning_rate=cfg.learning_rate,
        warmup_steps=cfg.train_steps // 10,
        total_steps=cfg.train_steps,
    )
    data = data_config.DatasetConfig(
        mixture_or_task_name=train_name,
        task_feature_lengths={"inputs": cfg.inputs_length, "targets": cfg.targets_length},
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
    say(f"training a tiny T5 for {cfg.train_steps} steps on {train_name}")
    start = time.perf_counter()
    trainer.train(
        model_dir=str(run_dir),
        model=model,
        train_data=data,
        optimizer=optimizers.adamw(learning_rate=schedule, weight_decay=0.0),
        learning_rate_fn=schedule,
        total_steps=cfg.train_steps,
        checkpoint_period=100,
        seed=cfg.seed,
    )
    seconds = time.perf_counter() - start
    _, params = restore.load_params(run_dir)
    after = _ppl_table(state, model, params)
    say(f"PPL after {cfg.train_steps} steps: {_fmt(after)}")
    state.results["pretrain"] = {
        "run_dir": str(run_dir),
        "steps": cfg.train_steps,
        "train_seconds": seconds,
        "domain_rate": cfg.domain_rate if "mixture" in state.results["tasks"] else 1.0,
        "ppl_before": before,
        "ppl_after": after,
    }
    state.save()
