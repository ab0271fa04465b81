"""`vertjax train --gin_file=... --gin.MODEL_DIR=...`: T5X-style gin-configured training."""

from __future__ import annotations

import argparse
import pathlib

from vertjax import errors, gin_utils

HELP = "train a model from gin files (T5X flags: --gin_file, --gin.NAME=VALUE, --gin_search_paths)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    gin_utils.add_gin_flags(parser)
    parser.add_argument(
        "--coordinator_address",
        default=None,
        help="multi-host: host:port of process 0 (omit on TPU pods / SLURM: auto-detected)",
    )
    parser.add_argument("--num_processes", type=int, default=None, help="multi-host: process count")
    parser.add_argument(
        "--process_id", type=int, default=None, help="multi-host: this process's id"
    )
    parser.add_argument(
        "--multihost",
        action="store_true",
        help="multi-host with auto-detection (TPU pods, SLURM, Open MPI): no address needed",
    )
    parser.add_argument("--no_progress", action="store_true", help="no tqdm progress bar")


def run(args: argparse.Namespace) -> int:
    import gin
    import jax

    from vertjax.train import partitioning, trainer

    partitioning.initialize_distributed(
        coordinator_address=args.coordinator_address,
        num_processes=args.num_processes,
        process_id=args.process_id,
        auto=args.multihost,
    )
    gin_utils.parse_from_args(args)
    gin_utils.check_required_macros()
    train_fn = gin.get_configurable(trainer.train)
    model_dir = gin_utils.query_macro("MODEL_DIR")
    # Process 0 alone writes config.gin (several hosts renaming one temp file would collide).
    # A new run dir gets it at once (a killed first run still says how it was made); an existing
    # run's config.gin is only replaced once this command has trained, so a rerun that fails on a
    # typo or bad data leaves the run dir as it was.
    writes_config = bool(model_dir) and jax.process_index() == 0
    if writes_config and not (pathlib.Path(model_dir) / "config.gin").exists():
        gin_utils.write_operative_config(model_dir)
    try:
        result = gin_utils.call_configurable(train_fn, progress=not args.no_progress)
    except errors.TrainingError:
        if writes_config:
            gin_utils.write_operative_config(model_dir)
        raise
    if writes_config:  # now complete: every configurable the run called is in the operative config
        gin_utils.write_operative_config(model_dir)
    last = result.losses.get(result.step)
    print(
        f"trained to step {result.step} in {result.model_dir}"
        + (f" (final loss {last:.4f})" if last is not None else " (already complete)")
    )
    return 0
