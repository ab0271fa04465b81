"""`vertjax data`: list the data packs, build one into passage JSONL splits, report on a build."""

from __future__ import annotations

import argparse
import json

from vertjax.commands import flags

HELP = "data packs: list, build PACK --out DIR, report DIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="<action>", required=True)
    sub.add_parser("list", help="list the available packs")

    build = sub.add_parser("build", help="build a pack into train/validation/test JSONL + manifest")
    build.add_argument("pack", help="pack name (see `vertjax data list`) or tfds:NAME")
    build.add_argument("--out", required=True, help="output folder (replaced if it holds a pack)")
    flags.add_flag(
        build,
        "--max_tokens",
        aliases=("--max-tokens",),
        type=int,
        default=256,
        help="max tokens per passage",
    )
    build.add_argument(
        "--overlap", type=int, default=32, help="tokens shared by consecutive chunks"
    )
    flags.add_flag(
        build,
        "--min_tokens",
        aliases=("--min-tokens",),
        type=int,
        default=8,
        help="drop shorter passages",
    )
    flags.add_flag(
        build,
        "--dedup_threshold",
        aliases=("--dedup-threshold",),
        type=float,
        default=0.8,
        help="estimated Jaccard similarity that marks a near duplicate",
    )
    flags.add_flag(
        build,
        "--validation_fraction",
        aliases=("--validation-fraction",),
        type=float,
        default=0.05,
        help="share of documents held out for validation",
    )
    flags.add_flag(
        build,
        "--test_fraction",
        aliases=("--test-fraction",),
        type=float,
        default=0.05,
        help="share of documents held out for test",
    )
    build.add_argument(
        "--source",
        help="folder to read: required by `folder`; an unpacked Debian "
        "package root for apt packs; texts folder for general-shakespeare; data_dir "
        "for tfds",
    )
    build.add_argument(
        "--strict",
        action="store_true",
        help="fail on a non-UTF-8 file instead of skipping it with a warning",
    )
    build.add_argument(
        "--cache", help="download cache (default $VERTJAX_CACHE or ~/.cache/vertjax)"
    )
    flags.add_flag(
        build,
        "--max_documents",
        aliases=("--max-documents",),
        type=int,
        help="read at most this many documents",
    )
    flags.add_flag(
        build,
        "--tfds_split",
        aliases=("--tfds-split",),
        default="train",
        help="tfds split to read",
    )
    flags.add_flag(
        build,
        "--tfds_text_key",
        aliases=("--tfds-text-key",),
        default="text",
        help="tfds feature holding the text",
    )

    flags.add_flag(
        build,
        "--domain_name",
        help='what the documents are about, as the assistant names it in refusals ("I can only'
        " answer questions about SQLite\"); default: the pack's own (a folder: its name)",
    )
    flags.add_flag(
        build,
        "--domain_description",
        help="a sentence describing the domain, kept in the manifest (default: the pack's)",
    )
    flags.add_flag(
        build,
        "--base_url",
        help="where the --source folder's HTML files are published: their passages then cite"
        " BASE_URL/<relative path> as `url` beside the file path",
    )

    report = sub.add_parser("report", help="verify a built pack and write its corpus report")
    report.add_argument("dir", help="a folder written by `vertjax data build`")
    report.add_argument("--out", help="where the report goes (default: DIR)")


def run(args: argparse.Namespace) -> int:
    from vertjax.data import packs

    if args.data_command == "list":
        for row in packs.list_packs():
            print(f"{row['name']:<22} {row['kind']:<9} {row['license']:<20} {row['description']}")
        return 0
    if args.data_command == "build":
        manifest = packs.build_pack(
            args.pack,
            args.out,
            max_tokens=args.max_tokens,
            overlap=args.overlap,
            min_tokens=args.min_tokens,
            dedup_threshold=args.dedup_threshold,
            validation_fraction=args.validation_fraction,
            test_fraction=args.test_fraction,
            source=args.source,
            strict=args.strict,
            cache=args.cache,
            max_documents=args.max_documents,
            options={"split": args.tfds_split, "text_key": args.tfds_text_key},
            domain_name=args.domain_name,
            domain_description=args.domain_description,
            base_url=args.base_url,
        )
        print(f"built {args.pack} into {args.out}: {json.dumps(manifest['counts'])}")
        print(f"domain: {manifest['domain']['name']} ({manifest['domain']['description']})")
        return 0
    from vertjax.eval import corpus_report

    report = corpus_report.corpus_report(args.dir, out_dir=args.out)
    print(corpus_report.format_report(report))
    return 0
