"""`vertjax demo --out runs/demo`: the tiny end-to-end reproduction on embedded data."""

from __future__ import annotations

import argparse
import pathlib

HELP = "run the tiny end-to-end demo on the embedded corpus (resumes if interrupted)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output directory (report.md, runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every stage of the demo")
    parser.add_argument("--train_steps", type=int, default=300, help="pretraining steps")
    parser.add_argument(
        "--domain_rate", type=float, default=0.5, help="domain share of the mixture"
    )
    parser.add_argument(
        "--llm",
        action="store_true",
        help="also run the local LLM (`make llm`): cited answers beside the extractive "
        "generator (citation recall/precision, support), keywords for lay questions, and the "
        "synth jobs beside the template backend (reuses --out)",
    )
    parser.add_argument(
        "--llm_max_tokens", type=int, default=96, help="answer budget of the LLM, in tokens"
    )


def run(args: argparse.Namespace) -> int:
    from vertjax import errors
    from vertjax.demo import pipeline, state

    if args.llm_max_tokens < 1:
        raise errors.ConfigError(f"--llm_max_tokens must be >= 1, got {args.llm_max_tokens}")

    config = state.DemoConfig(
        out=pathlib.Path(args.out),
        seed=args.seed,
        train_steps=args.train_steps,
        domain_rate=args.domain_rate,
        llm=args.llm,
        llm_max_tokens=args.llm_max_tokens,
    )
    pipeline.run_demo(config)
    return 0
