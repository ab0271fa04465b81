"""`vertjax infer`: decode a JSONL of inputs with a checkpoint into a JSONL of predictions.

Each input record's text (`--input_key`) is tokenized with the SentencePiece vocab (eos appended,
T5 style), decoded in fixed-size batches (greedy, sampling or beam search with the decoding cache)
and written as `{id, inputs, prediction, score}`, one flushed line per example. The job resumes:
a rerun skips the ids already written and rewrites nothing. Batches are fixed by input position
and each draws its sampling seed from (`--seed`, batch number), so a resumed run writes exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from vertjax import errors, io_utils
from vertjax.commands import flags

HELP = "decode a JSONL of inputs with a checkpoint (greedy | sample | beam) into a JSONL of outputs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="run dir (latest step) or RUN_DIR/checkpoint_<step>"
    )
    parser.add_argument("--vocab", required=True, help="SentencePiece model (or its vocab dir)")
    parser.add_argument("--input", required=True, help="JSONL of records to decode")
    flags.add_flag(
        parser,
        "--out",
        aliases=("--output",),
        required=True,
        help="JSONL of {id, inputs, prediction, score}",
    )
    parser.add_argument(
        "--input_key", default="inputs", help="record key of the text (default: inputs)"
    )
    parser.add_argument(
        "--method", choices=("greedy", "sample", "beam"), default="greedy", help="decoding method"
    )
    parser.add_argument("--max_decode_length", type=int, default=64, help="most output tokens")
    parser.add_argument(
        "--max_input_length", type=int, default=512, help="inputs are truncated to this (w/ eos)"
    )
    parser.add_argument("--batch_size", type=int, default=8, help="inputs per decode batch")
    parser.add_argument("--temperature", type=float, default=1.0, help="sample: 0 means greedy")
    parser.add_argument("--top_k", type=int, default=0, help="sample: keep the k best (0: all)")
    parser.add_argument("--top_p", type=float, default=1.0, help="sample: nucleus mass (1: all)")
    parser.add_argument("--num_beams", type=int, default=4, help="beam: beam size")
    parser.add_argument("--alpha", type=float, default=0.6, help="beam: length-penalty exponent")
    parser.add_argument("--seed", type=int, default=0, help="sample: random seed")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise errors.ConfigError(f"--batch_size must be positive, got {args.batch_size}")
    if args.max_input_length < 2:
        raise errors.ConfigError(f"--max_input_length must be >= 2, got {args.max_input_length}")
    items = _read_inputs(args.input, key=args.input_key)
    with io_utils.JsonlAppender(args.out, key="id") as out:
        batches = [
            items[start : start + args.batch_size]
            for start in range(0, len(items), args.batch_size)
        ]
        todo = [(i, b) for i, b in enumerate(batches) if any(r["id"] not in out.seen for r in b)]
        skipped = sum(r["id"] in out.seen for r in items)
        written, stats = 0, {"decode_s": 0.0, "tokens": 0}
        if todo:
            written = _decode_batches(
                args, todo, out, skipped=skipped, total=len(items), stats=stats
            )
    summary = {
        "output": str(args.out),
        "written": written,
        "already_done": skipped,
        "decode_s": round(stats["decode_s"], 3),
        "output_tokens_per_s": round(stats["tokens"] / stats["decode_s"], 1)
        if stats["decode_s"]
        else None,
    }
    print(json.dumps(summary))
    return 0


def _read_inputs(path: str, *, key: str) -> list[dict[str, Any]]:
    """`[{id, inputs}]` in file order; the id is the record's `id`, else its 0-based index."""
    items, ids = [], set()
    for index, record in enumerate(io_utils.read_jsonl(path, required_keys=(key,))):
        where = f"record {index + 1}"
        text = record[key]
        if not isinstance(text, str):
            raise errors.DataError(f"{where}: {key!r} is not a string", path=path)
        example_id = record.get("id", index)
        if not isinstance(example_id, str | int) or isinstance(example_id, bool):
            raise errors.DataError(f"{where}: 'id' must be a string or an integer", path=path)
        if example_id in ids:
            raise errors.DataError(f"{where}: duplicate id {example_id!r}", path=path)
        ids.add(example_id)
        items.append({"id": example_id, "inputs": text})
    if not items:
        raise errors.DataError("no records (empty file)", path=path)
    return items


def _decode_batches(
    args: argparse.Namespace,
    todo: list[tuple[int, list[dict[str, Any]]]],
    out: io_utils.JsonlAppender,
    *,
    skipped: int,
    total: int,
    stats: dict[str, float],
) -> int:
    """Loads the model and vocab, decodes the batches in `todo` and appends the missing rows."""
    import numpy as np
    from tqdm import tqdm

    from vertjax.generators import t5

    client = t5.T5Client.from_run_dir(args.checkpoint, args.vocab)
    written = 0
    with tqdm(total=total, initial=skipped, unit="ex", desc="infer") as progress:
        for batch_index, batch in todo:
            tokens = client.encoder_batch(
                [item["inputs"] for item in batch],
                batch_size=args.batch_size,
                max_length=args.max_input_length,
            )
            seed = int(np.random.SeedSequence([args.seed, batch_index]).generate_state(1)[0])
            start = time.perf_counter()
            result = client.decode_batch(
                tokens,
                max_decode_length=args.max_decode_length,
                method=args.method,
                temperature=args.temperature,
                top_k=args.top_k,
                top_p=args.top_p,
                num_beams=args.num_beams,
                alpha=args.alpha,
                seed=seed,
            )
            outputs, scores = np.asarray(result.tokens), np.asarray(result.scores)
            stats["decode_s"] += time.perf_counter() - start
            for row, item in enumerate(batch):
                if item["id"] in out.seen:
                    continue
                prediction = client.vocabulary.decode(outputs[row].tolist())
                out.append(dict(item, prediction=prediction, score=float(scores[row])))
                stats["tokens"] += int(np.count_nonzero(outputs[row]))
                written += 1
                progress.update()
    logging.info("wrote %d predictions to %s", written, args.out)
    return written
