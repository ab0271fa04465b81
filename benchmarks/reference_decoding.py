"""Reference (copy) decoding vs plain greedy: tokens/s on grounded and ungrounded answers.

A small T5 is first trained (a few hundred steps, cached in --work_dir) on a copy task: the answer
is the first `answer_length` tokens of its passage, as extractive domain answers are. Then:
- grounded: the passage is given as the reference, so answers can be copied;
- ungrounded: an unrelated passage is the reference, so drafts are (almost) never accepted.
Each is decoded with plain greedy (one token per forward pass, same host loop) and with reference
decoding; outputs are asserted identical. The on-device `decode_batch` greedy loop is timed too.

  python benchmarks/reference_decoding.py            # CPU: a few minutes including training
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from vertjax.models import decoding, encoder_decoder, reference_decoding, t5
from vertjax.train import checkpoints, optimizers, trainer


class CopyTask:
    """Passages of random tokens; the target is the passage's first `answer_length` tokens."""

    def __init__(self, *, vocab_size: int, passage_length: int, answer_length: int, batch: int):
        self.vocab_size = vocab_size
        self.passage_length = passage_length
        self.answer_length = answer_length
        self.batch = batch

    def example(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        passage = rng.integers(2, self.vocab_size, self.passage_length).astype(np.int32)
        target = np.concatenate([passage[: self.answer_length], [1]]).astype(np.int32)
        return passage, target

    def iterator(self, *, start_batch, shard_id, num_shards):
        i = start_batch
        while True:
            rng = np.random.default_rng([1, i])
            pairs = [self.example(rng) for _ in range(self.batch)]
            enc = np.stack([p for p, _ in pairs])
            tgt = np.stack([t for _, t in pairs])
            dec = np.concatenate([np.zeros((self.batch, 1), np.int32), tgt[:, :-1]], axis=1)
            yield {
                "encoder_input_tokens": enc,
                "decoder_input_tokens": dec,
                "decoder_target_tokens": tgt,
            }
            i += 1


def trained_model(args, task: CopyTask):
    config = t5.T5Config(
        vocab_size=args.vocab_size,
        emb_dim=args.emb_dim,
        num_heads=4,
        head_dim=args.emb_dim // 4,
        mlp_dim=4 * args.emb_dim,
        num_encoder_layers=args.layers,
        num_decoder_layers=args.layers,
    )
    model = encoder_decoder.EncoderDecoderModel(config)
    run_dir = pathlib.Path(args.work_dir) / f"copy_{args.emb_dim}_{args.layers}"
    schedule = optimizers.warmup_cosine_schedule(
        peak_learning_rate=3e-3, warmup_steps=50, total_steps=args.train_steps
    )
    trainer.train(
        model_dir=str(run_dir),
        model=model,
        train_data=task,
        optimizer=optimizers.adamw(learning_rate=schedule, weight_decay=0.0),
        learning_rate_fn=schedule,
        total_steps=args.train_steps,
        checkpoint_period=args.train_steps,
        progress=True,
    )
    _, params = checkpoints.load_params(run_dir)
    return model, params


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
    parser.add_argument("--work_dir", default="runs/bench_reference_decoding")
    parser.add_argument("--vocab_size", type=int, default=512)
    parser.add_argument("--emb_dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--passage_length", type=int, default=48)
    parser.add_argument("--answer_length", type=int, default=32)
    parser.add_argument("--train_steps", type=int, default=400)
    parser.add_argument("--draft_length", type=int, default=8)
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    task = CopyTask(
        vocab_size=args.vocab_size,
        passage_length=args.passage_length,
        answer_length=args.answer_length,
        batch=16,
    )
    model, params = trained_model(args, task)
    max_len = args.answer_length + 1
    rng = np.random.default_rng(12345)
    rows = {
        "plain greedy (host loop)": 0.0,
        "reference, grounded": 0.0,
        "reference, ungrounded": 0.0,
        "decode_batch greedy (on-device loop)": 0.0,
    }
    tokens_total = 0
    accepted = drafted = 0
    for _ in range(args.examples):
        passage, _ = task.example(rng)
        unrelated, _ = task.example(rng)
        enc = jnp.asarray(passage[None], jnp.int32)

        ref_decode = functools.partial(
            reference_decoding.reference_greedy_decode,
            model,
            params,
            enc,
            max_decode_length=max_len,
        )
        plain = functools.partial(ref_decode, passage, use_drafts=False)
        grounded = functools.partial(ref_decode, passage, draft_length=args.draft_length)
        ungrounded = functools.partial(ref_decode, unrelated, draft_length=args.draft_length)
        on_device = functools.partial(_on_device_greedy, model, params, enc, max_len)

        t_plain, out_plain = time_decode(plain, args.repeats)
        t_grounded, out_grounded = time_decode(grounded, args.repeats)
        t_ungrounded, out_ungrounded = time_decode(ungrounded, args.repeats)
        t_device, _ = time_decode(on_device, args.repeats)
        assert out_grounded.tokens == out_plain.tokens == out_ungrounded.tokens, "not lossless"
        n = len(out_plain.tokens)
        tokens_total += n
        accepted += out_grounded.accepted_tokens
        drafted += out_grounded.drafted_tokens
        for key, seconds in zip(rows, (t_plain, t_grounded, t_ungrounded, t_device), strict=True):
            rows[key] += seconds
    print(
        f"device: {jax.devices()[0].device_kind}; model emb {args.emb_dim}, {args.layers}+"
        f"{args.layers} layers, vocab {args.vocab_size}; {args.examples} answers, "
        f"{tokens_total} tokens; outputs identical to greedy on every answer (asserted)"
    )
    print(
        f"draft acceptance on grounded answers: {accepted}/{drafted} "
        f"({100 * accepted / max(drafted, 1):.0f} %)"
    )
    base = tokens_total / rows["plain greedy (host loop)"]
    for key, seconds in rows.items():
        tps = tokens_total / seconds
        print(f"{key:40s} {tps:8.1f} tokens/s   x{tps / base:.2f} vs plain greedy")


if __name__ == "__main__":
    main()
