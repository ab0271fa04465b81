"""Data-pipeline throughput vs trainer consumption, at the tiny and small T5 configs.

Three numbers per model config, all in target tokens/s (non-padding decoder targets, the trainer's
`num_tokens`), on the same packed span-corruption batches of a domain/general mixture:
- pipeline: batches/s the seqio pipeline (`DatasetConfig.iterator`, as the trainer reads it)
  delivers alone, after a warm-up that fills the shuffle buffers;
- trainer: the jitted train step (`trainer.build_steps`, Adafactor as in runs/pretrain.gin) on
  batches already in memory, i.e. what training could consume if data were free;
- fed: the train step pulling each batch from the live pipeline (both share the CPU).
The ratio pipeline / trainer > 1 means the pipeline is not the bottleneck.

Needs two built packs and a vocab, e.g. those of the tiny mixture sweep:
  python benchmarks/data_pipeline.py --sweep_dir runs/mixture_sweep/tiny
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys
import time
from collections.abc import Iterator, Mapping

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def _tokens(batch: Mapping[str, np.ndarray]) -> float:
    return float(np.sum(batch["decoder_loss_weights"]))


def register(sweep_dir: pathlib.Path, *, domain_rate: float) -> str:
    """Registers the sweep's domain/general tasks and a mixture; returns the mixture name."""
    from vertjax import errors
    from vertjax.data import mixtures, packs

    dirs = {}
    for role, name in (("domain", "python-stdlib"), ("general", "general-wordnet")):
        dirs[role] = sweep_dir / "data" / name
        try:
            packs.read_manifest(dirs[role])
        except errors.DataError as e:
            sys.exit(f"{e}: run experiments/mixture_sweep/run.py or `vertjax data build {name}`")
    files = {
        r: {s: str(d / f"{s}.jsonl") for s in ("train", "validation")} for r, d in dirs.items()
    }
    return mixtures.domain_general_mixture(
        name="bench_pipeline_mixture",
        domain_files=files["domain"],
        general_files=files["general"],
        domain_rate=domain_rate,
        vocab_path=sweep_dir / "vocab",
    )[0]


def bench_pipeline(data, *, warmup: int, batches: int) -> dict[str, float]:
    """Target tokens/s the pipeline delivers alone (after `warmup` batches)."""
    iterator = data.iterator(start_batch=0, shard_id=0, num_shards=1)
    start = time.perf_counter()
    for _ in range(warmup):
        next(iterator)
    first = time.perf_counter() - start
    start = time.perf_counter()
    tokens = sum(_tokens(b) for b in itertools.islice(iterator, batches))
    seconds = time.perf_counter() - start
    return {
        "tokens_per_second": tokens / seconds,
        "batches_per_second": batches / seconds,
        "warmup_seconds": first,
        "tokens_per_batch": tokens / batches,
    }


def load_model(size: str, vocab_size: int):
    """The EncoderDecoderModel of models/t5_1_1/{size}.gin (vertjax/gin_configs)."""
    import gin

    from vertjax import gin_utils

    gin_utils.parse_gin(
        gin_files=[f"models/t5_1_1/{size}.gin"],
        gin_bindings=[f"VOCAB_SIZE={vocab_size}", "DROPOUT_RATE=0.0"],
    )
    try:
        return gin.query_parameter("MODEL/macro.value").scoped_configurable_fn()
    finally:
        gin.clear_config()


def bench_trainer(
    model, data, *, warmup: int, steps: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(in-memory batches, live pipeline) target tokens/s of the real train step."""
    import flax.linen as nn
    import jax

    from vertjax.train import optimizers, partitioning, trainer

    optimizer = optimizers.adafactor(learning_rate=optimizers.rsqrt_schedule())
    mesh = partitioning.create_mesh((-1, 1))
    rules = partitioning.standard_logical_axis_rules()
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        step_fns = trainer.build_steps(
            model=model, optimizer=optimizer, mesh=mesh, rules=rules, dropout_seed=0
        )
        params = jax.jit(model.init_params, out_shardings=step_fns.param_shardings)(
            jax.random.key(0)
        )
        opt_state = jax.jit(optimizer.init, out_shardings=step_fns.opt_shardings)(params)
        state = [params, opt_state, 0]

        def run(batches: Iterator[Mapping[str, np.ndarray]], n: int) -> dict[str, float]:
            tokens = 0.0
            start = time.perf_counter()
            for batch in itertools.islice(batches, n):
                global_batch = partitioning.global_batch(dict(batch), mesh)
                state[0], state[1], metrics = step_fns.train(
                    state[0], state[1], global_batch, np.int32(state[2])
                )
                tokens += float(jax.device_get(metrics["num_tokens"]))
                state[2] += 1
            seconds = time.perf_counter() - start
            return {"tokens_per_second": tokens / seconds, "step_seconds": seconds / n}

        iterator = data.iterator(start_batch=0, shard_id=0, num_shards=1)
        in_memory = list(itertools.islice(iterator, warmup + steps))
        run(iter(in_memory[:warmup]), warmup)  # compile
        consumed = run(iter(in_memory[warmup:]), steps)
        fed = run(iterator, steps)
    return consumed, fed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep_dir", default=str(REPO / "runs/mixture_sweep/tiny"))
    parser.add_argument("--sizes", default="tiny,small", help="model gins to compare")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--inputs_length", type=int, default=128)
    parser.add_argument("--targets_length", type=int, default=32)
    parser.add_argument("--domain_rate", type=float, default=0.5)
    parser.add_argument("--pipeline_batches", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from vertjax.data import pipeline
    from vertjax.train import data_config

    mixture = register(pathlib.Path(args.sweep_dir), domain_rate=args.domain_rate)
    data = data_config.DatasetConfig(
        mixture_or_task_name=mixture,
        task_feature_lengths={"inputs": args.inputs_length, "targets": args.targets_length},
        batch_size=args.batch_size,
    )
    vocab_size = pipeline.get_vocabulary(mixture).vocab_size
    result = {
        "setup": {k: v for k, v in vars(args).items() if k != "json"},
        "pipeline": bench_pipeline(data, warmup=args.warmup, batches=args.pipeline_batches),
    }
    for size in args.sizes.split(","):
        consumed, fed = bench_trainer(
            load_model(size, vocab_size), data, warmup=args.warmup, steps=args.steps
        )
        result[size] = {
            "trainer": consumed,
            "fed_by_pipeline": fed,
            "ratio_pipeline_over_trainer": result["pipeline"]["tokens_per_second"]
            / consumed["tokens_per_second"],
        }
    if args.json:
        print(json.dumps(result))
        return
    p = result["pipeline"]
    print(f"setup: {result['setup']}")
    print(
        f"pipeline       : {p['tokens_per_second']:9.0f} target tokens/s "
        f"({p['batches_per_second']:.1f} batches/s, {p['tokens_per_batch']:.0f} tokens/batch, "
        f"first {args.warmup} batches in {p['warmup_seconds']:.1f} s)"
    )
    for size in args.sizes.split(","):
        r = result[size]
        print(
            f"{size:6s} trainer : {r['trainer']['tokens_per_second']:9.0f} target tokens/s "
            f"({r['trainer']['step_seconds'] * 1000:.0f} ms/step); fed by the live pipeline: "
            f"{r['fed_by_pipeline']['tokens_per_second']:.0f} tokens/s; "
            f"ratio pipeline / trainer: {r['ratio_pipeline_over_trainer']:.2f}x"
        )


if __name__ == "__main__":
    main()
