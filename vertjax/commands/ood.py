"""`vertjax ood train`: the out-of-domain refusal folder an assistant loads with --gin.OOD_DIR."""

from __future__ import annotations

import argparse
import json

from vertjax.commands import flags

HELP = "out-of-domain refusal: train the domain classifier (+ retrieval calibration) for a pack"
DEFAULT_GENERAL = "general-wordnet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ood_command", metavar="<action>", required=True)
    train = sub.add_parser(
        "train",
        help="train on a pack vs a general pack; report held-out refusal precision/recall",
        description="Builds in-domain questions from --pack and out-of-domain ones from --general"
        " plus hand-written ones, holds out a hash split of documents, trains the classifier,"
        " reports refusal precision/recall on the held-out split and writes --out (load it with"
        " --gin.OOD_DIR=OUT). A rerun with the same settings reuses a complete --out.",
    )
    flags.add_flag(
        train,
        "--pack",
        required=True,
        metavar="DIR_OR_NAME",
        help="the domain: a built pack folder (`vertjax data build`) or a pack name",
    )
    flags.add_flag(
        train,
        "--general",
        default=DEFAULT_GENERAL,
        metavar="DIR_OR_NAME",
        help=f"general-text pack for out-of-domain questions (default {DEFAULT_GENERAL}, built"
        " into the cache on first use); 'none': the hand-written questions only",
    )
    flags.add_flag(
        train,
        "--out",
        required=True,
        metavar="DIR",
        help="the folder to write: ood.json, ood_weights.npz, report.json"
        " (+ retrieval_calibration.json with --index)",
    )
    flags.add_flag(
        train,
        "--index",
        metavar="INDEX_DIR",
        help="an index of the pack (`vertjax index build`): calibrate each of its retrievers'"
        " top scores on held-out in-domain questions, for --gin.MIN_TOP_SCORE_PERCENTILE",
    )
    flags.add_flag(
        train, "--seed", type=int, default=0, help="question templates and the held-out split"
    )
    flags.add_flag(
        train,
        "--test_fraction",
        type=float,
        default=0.2,
        help="share of documents (and hand-written questions) held out for the report",
    )
    flags.add_flag(
        train,
        "--max_passages",
        type=int,
        default=2000,
        help="passages per pack that training questions are written from (first in file order)",
    )
    flags.add_flag(
        train,
        "--overwrite",
        action="store_true",
        help="replace an --out trained with other settings (default: an error; same settings:"
        " reused)",
    )
    flags.add_flag(train, "--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from vertjax.system import ood_training

    def announce(message: str) -> None:
        print(f"vertjax ood: {message}", flush=True)

    pack = ood_training.resolve_pack(args.pack, flag="--pack", announce=announce)
    general = None
    if args.general.lower() != "none":
        general = ood_training.resolve_pack(args.general, flag="--general", announce=announce)
    report = ood_training.train_ood_dir(
        pack_dir=pack,
        general_dir=general,
        out_dir=args.out,
        index_dir=args.index,
        seed=args.seed,
        test_fraction=args.test_fraction,
        max_passages=args.max_passages,
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if report["reused"]:
        print(f"{args.out}: already trained with these settings (reused; --overwrite retrains)")
    print(ood_training.report_table(report))
    use = f"--gin.OOD_DIR={args.out}"
    if "retrieval" in report:
        use += " --gin.MIN_TOP_SCORE_PERCENTILE=5"
    done = "reused" if report["reused"] else "wrote"
    print(f"\n{done} {args.out}; use it with `vertjax answer --config system/default.gin {use}`")
    return 0
