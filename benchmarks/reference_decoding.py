"""Reference (copy) decoding vs plain greedy: tokens/s on grounded and ungrounded answers.

What is measured is the decoding mechanism, so the model's own greedy answer defines the text:
- grounded: the reference passages contain the answer (spliced between unrelated tokens), as when
  a domain answer copies a retrieved passage;
- ungrounded: the reference passages are unrelated tokens, so drafts are (almost) never accepted.
Each is decoded with plain greedy (one token per forward pass, the same host loop) and with reference
decoding; outputs are asserted identical to greedy. The on-device `decode_batch` greedy loop is
timed too. The model is a randomly initialised T5 of the given size (weights do not change the
cost of a forward pass; a random model's answers can be repetitive, which the acceptance rate shows).

  python benchmarks/reference_decoding.py                 # CPU, T5-small-like, ~2 minutes
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from vertjax.models import decoding, encoder_decoder, reference_decoding, t5


def _on_device_greedy(model, params, enc, max_len):
    out = decoding.decode_batch(model, params, enc, max_decode_length=max_len)
    return jax.block_until_ready(out.tokens)


def time_decode(fn, repeats: int) -> tuple[float, object]:
    fn()  # compile
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab_size", type=int, default=32128)
    parser.add_argument("--emb_dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--input_length", type=int, default=256)
    parser.add_argument("--answer_length", type=int, default=64)
    parser.add_argument("--draft_length", type=int, default=8)
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = t5.T5Config(
        vocab_size=args.vocab_size,
        emb_dim=args.emb_dim,
        num_heads=8,
        head_dim=args.emb_dim // 8,
        mlp_dim=2 * args.emb_dim,
        num_encoder_layers=args.layers,
        num_decoder_layers=args.layers,
    )
    model = encoder_decoder.EncoderDecoderModel(config)
    params = model.init_params(jax.random.key(args.seed))
    rng = np.random.default_rng(args.seed)
    inputs = [rng.integers(2, args.vocab_size, args.input_length) for _ in range(args.examples)]
    result = reference_decoding.measure_speedup(
        model,
        params,
        inputs,
        max_decode_length=args.answer_length,
        draft_length=args.draft_length,
        repeats=args.repeats,
        seed=args.seed,
    )
    enc = jnp.asarray(inputs[0][None], jnp.int32)
    device_seconds, _ = time_decode(
        functools.partial(_on_device_greedy, model, params, enc, args.answer_length), args.repeats
    )
    print(
        f"device: {jax.devices()[0].device_kind}; T5 emb {args.emb_dim}, {args.layers}+"
        f"{args.layers} layers, vocab {args.vocab_size}, input {args.input_length}; "
        f"{args.examples} answers, {result['tokens']} tokens; outputs identical to greedy (asserted)"
    )
    print(f"grounded draft acceptance: {100 * result['grounded_acceptance']:.0f} %")
    base = result["greedy_tokens_per_second"]
    rows = {
        "plain greedy (host loop)": base,
        "reference, grounded": result["grounded_tokens_per_second"],
        "reference, ungrounded": result["ungrounded_tokens_per_second"],
        "decode_batch greedy (on-device loop, 1st answer)": args.answer_length / device_seconds,
    }
    for name, tps in rows.items():
        print(f"{name:48s} {tps:8.1f} tokens/s   x{tps / base:.2f} vs plain greedy")


if __name__ == "__main__":
    main()
