"""`vertjax vocab`: train a T5-convention SentencePiece vocabulary on corpus files."""

from __future__ import annotations

import argparse
import json

HELP = "train a SentencePiece vocab (T5 conventions: pad 0, eos 1, unk 2, +100 extra ids)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="FILE",
        help="corpus file: .jsonl records with a text field, or plain text; repeatable",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="writes DIR/spm.model, DIR/spm.vocab and DIR/vocab.json",
    )
    parser.add_argument(
        "--vocab_size",
        type=int,
        required=True,
        metavar="N",
        help="SentencePiece pieces; seqio adds --extra_ids on top",
    )
    parser.add_argument(
        "--max_sentences",
        type=int,
        default=None,
        metavar="M",
        help="train on a seeded random sample of at most M sentences",
    )
    parser.add_argument("--text_key", default="text", help="JSONL field holding the text")
    parser.add_argument("--extra_ids", type=int, default=100, help="sentinels added by seqio")
    parser.add_argument(
        "--character_coverage",
        type=float,
        default=0.9995,
        help="share of characters the SentencePiece alphabet covers (the rest map to unk)",
    )
    parser.add_argument("--seed", type=int, default=0, help="SentencePiece sampling seed")


def run(args: argparse.Namespace) -> int:
    from vertjax.data import vocab

    summary = vocab.train_vocab(
        inputs=args.input,
        out_dir=args.out,
        vocab_size=args.vocab_size,
        max_sentences=args.max_sentences,
        text_key=args.text_key,
        character_coverage=args.character_coverage,
        seed=args.seed,
        extra_ids=args.extra_ids,
    )
    print(json.dumps(summary, indent=2))
    return 0
