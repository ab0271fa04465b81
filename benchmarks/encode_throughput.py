"""Passage-encoding throughput: vertjax's `BatchEncoder` vs sentence-transformers, same GTR.

A random GTR of the chosen T5 size (the `sentence-transformers/gtr-t5-*` architecture: T5 v1.0
encoder with a ReLU MLP, mean pooling, a bias-free Dense d_model -> d_model, L2 normalisation) is
saved by sentence-transformers itself, imported with `vertjax.convert.gtr` (what
`vertjax convert --from_sentence_transformers` runs), and both encode the same real passages (the
embedded python-stdlib pack) end to end: text -> token ids -> normalised embeddings, float32, on
whatever device each framework finds. The two sets of embeddings must agree before any figure is
printed. vertjax pads every batch to `--length` (one compilation, as `vertjax index build` does);
sentence-transformers sorts the texts by length and pads each batch to its longest text.

    python benchmarks/encode_throughput.py --size small --passages 512
    python benchmarks/encode_throughput.py --size base --passages 128 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

# T5 encoder sizes as in gtr-t5-{small,base,large} (d_model, d_ff, layers, heads; head dim 64).
SIZES = {
    "tiny": (128, 384, 3, 4),
    "small": (512, 2048, 6, 8),
    "base": (768, 3072, 12, 12),
    "large": (1024, 4096, 24, 16),
}
MODEL_VOCAB = 32_128  # T5's embedding rows; the SentencePiece vocab below uses fewer of them


def load_texts(workdir: pathlib.Path, count: int) -> list[str]:
    """The first `count` passages of the embedded python-stdlib pack, as `title: text`."""
    from vertjax.data import packs
    from vertjax.retrieval import encode

    packs.build_pack("python-stdlib", workdir / "pack")
    passages = packs.load_passages(workdir / "pack")[:count]
    return [encode.passage_text(p) for p in passages]


def train_vocab(workdir: pathlib.Path, vocab_size: int) -> pathlib.Path:
    from vertjax.data import vocab

    vocab.train_vocab(
        inputs=[workdir / "pack" / "train.jsonl"], out_dir=workdir / "vocab", vocab_size=vocab_size
    )
    return workdir / "vocab" / vocab.MODEL_FILENAME


def save_sentence_transformer(
    directory: pathlib.Path, *, size: str, vocab: pathlib.Path, length: int, seed: int
):
    """A random GTR of `size`, saved by sentence-transformers to `directory/st`; returns it."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    from vertjax.convert import hf_t5

    d_model, d_ff, layers, heads = SIZES[size]
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=MODEL_VOCAB,
        d_model=d_model,
        d_kv=64,
        d_ff=d_ff,
        num_layers=layers,
        num_heads=heads,
        feed_forward_proj="relu",
        dropout_rate=0.0,
    )
    transformers.T5EncoderModel(config).save_pretrained(directory / "hf")
    hf_t5.write_tokenizer(vocab, directory / "hf")
    pipeline = [
        modules.Transformer(str(directory / "hf"), max_seq_length=length),
        modules.Pooling(d_model, pooling_mode="mean"),
        modules.Dense(d_model, d_model, bias=False, activation_function=torch.nn.Identity()),
        modules.Normalize(),
    ]
    model = SentenceTransformer(modules=pipeline, device="cpu")
    model.save(str(directory / "st"))
    return model


def best_time(fn, repeats: int) -> tuple[np.ndarray, float]:
    """`fn()`'s output and its fastest wall time over `repeats` runs (the machine may be shared)."""
    out, best = None, float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--passages", type=int, default=512, help="passages encoded per run")
    parser.add_argument("--length", type=int, default=256, help="max tokens per passage")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--vocab_size", type=int, default=8000, help="SentencePiece pieces")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs each (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where to build the pack and models (default: temp)")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    import jax
    import torch

    from vertjax.convert import gtr
    from vertjax.data import vocab as vocab_lib
    from vertjax.retrieval import encode

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = pathlib.Path(tmp)
        texts = load_texts(workdir, args.passages)
        vocab_path = train_vocab(workdir, args.vocab_size)
        reference = save_sentence_transformer(
            workdir, size=args.size, vocab=vocab_path, length=args.length, seed=args.seed
        )
        model, params = gtr.from_sentence_transformers(workdir / "st")
        vocabulary = vocab_lib.load_vocab(vocab_path)
        encoder = encode.BatchEncoder(model, params, kind="passage", batch_size=args.batch_size)

        def vertjax_encode() -> np.ndarray:
            return encoder(encode.tokenize(vocabulary, texts, length=args.length))

        def st_encode() -> np.ndarray:
            return reference.encode(
                texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False
            )

        tokens = encode.tokenize(vocabulary, texts, length=args.length)
        real_tokens = float((tokens > 0).sum(axis=1).mean())
        encoder(tokens[: encoder.batch_size])  # compile
        reference.encode(texts[: args.batch_size], batch_size=args.batch_size)  # warm up
        ours, ours_s = best_time(vertjax_encode, args.repeats)
        theirs, theirs_s = best_time(st_encode, args.repeats)
        cosine = np.sum(ours * theirs, axis=1)
        if cosine.min() < 0.9999:
            print(f"embeddings disagree: min cosine {cosine.min():.6f}", file=sys.stderr)
            return 1

    n = len(texts)
    result = {
        "size": args.size,
        "passages": n,
        "length": args.length,
        "mean_tokens": real_tokens,
        "batch_size": encoder.batch_size,
        "devices": [str(d) for d in jax.local_devices()],
        "torch_threads": torch.get_num_threads(),
        "vertjax_passages_per_s": n / ours_s,
        "sentence_transformers_passages_per_s": n / theirs_s,
        "ratio": theirs_s / ours_s,
        "min_cosine": float(cosine.min()),
        "machine": platform.processor() or platform.machine(),
    }
    print(
        f"{args.size} GTR, {n} passages (mean {real_tokens:.0f} of max {args.length} tokens), "
        f"batch {encoder.batch_size}, {len(result['devices'])} JAX device(s), "
        f"torch threads {result['torch_threads']}\n"
        f"vertjax BatchEncoder:   {result['vertjax_passages_per_s']:8.1f} passages/s\n"
        f"sentence-transformers:  {result['sentence_transformers_passages_per_s']:8.1f} passages/s\n"
        f"vertjax / sentence-transformers = {result['ratio']:.2f}x "
        f"(embeddings agree: min cosine {result['min_cosine']:.6f})"
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
