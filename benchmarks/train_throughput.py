"""Training throughput: vertjax vs HF transformers' torch T5 on the same batches, and MFU.

Both frameworks run a full training step (forward, backward, AdamW update) of the same T5 v1.1
configuration on identical random batches; the script prints target tokens/s of each and the
ratio vertjax / HF. vertjax runs its real train step (`vertjax.train.trainer.build_steps`).

MFU (model FLOPs utilisation) = model FLOPs per step / step time / peak FLOP/s of the device.
Model FLOPs per training step = 3 x forward FLOPs (backward = 2 x forward), where forward FLOPs =
  2 x (encoder matmul params) x (encoder tokens)
+ 2 x (decoder matmul params, incl. the logits layer) x (decoder tokens)
+ attention score/value matmuls: 4 x d_attn x (L_in^2 x enc_layers + (L_t^2 + L_t x L_in) x dec_layers)
  per example (d_attn = heads x head_dim). Embedding look-ups and norms are not counted (PaLM's
convention). Peak: bf16 dense tensor-core FLOP/s of the card (table below); MFU is only reported on
accelerators.

  python benchmarks/train_throughput.py                       # CPU: d_model 512, 6+6, seq 512/128
  python benchmarks/train_throughput.py --size base --dtype bfloat16 --skip_hf   # GPU MFU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

PEAK_BF16_FLOPS = {  # dense, no sparsity
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
}

SIZES = {
    # name: (d_model, heads, head_dim, d_ff, layers)
    "bench": (512, 8, 64, 2048, 6),
    "small": (512, 6, 64, 1024, 8),
    "base": (768, 12, 64, 2048, 12),
    "large": (1024, 16, 64, 2816, 24),
}


@dataclasses.dataclass(frozen=True)
class Setup:
    size: str
    batch_size: int
    inputs_length: int
    targets_length: int
    vocab_size: int
    steps: int
    warmup: int
    dtype: str
    seed: int


def make_batches(s: Setup) -> list[dict[str, np.ndarray]]:
    """`steps + warmup` identical-for-both-frameworks random batches (no padding)."""
    rng = np.random.default_rng(s.seed)
    batches = []
    for _ in range(s.steps + s.warmup):
        enc = rng.integers(2, s.vocab_size, (s.batch_size, s.inputs_length), dtype=np.int32)
        tgt = rng.integers(2, s.vocab_size, (s.batch_size, s.targets_length), dtype=np.int32)
        dec = np.concatenate([np.zeros((s.batch_size, 1), np.int32), tgt[:, :-1]], axis=1)
        batches.append(
            {"encoder_input_tokens": enc, "decoder_input_tokens": dec, "decoder_target_tokens": tgt}
        )
    return batches


def model_flops_per_step(s: Setup) -> float:
    d, heads, head_dim, d_ff, layers = SIZES[s.size]
    d_attn = heads * head_dim
    attn_params = 4 * d * d_attn
    mlp_params = 3 * d * d_ff  # gated: wi_0, wi_1, wo
    enc_params = layers * (attn_params + mlp_params)
    dec_params = layers * (2 * attn_params + mlp_params) + d * s.vocab_size
    b, li, lt = s.batch_size, s.inputs_length, s.targets_length
    forward = 2 * enc_params * b * li + 2 * dec_params * b * lt
    forward += 4 * d_attn * b * (li * li * layers + (lt * lt + lt * li) * layers)
    return 3.0 * forward


def bench_vertjax(s: Setup, batches) -> dict[str, float]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from vertjax.models import encoder_decoder, t5
    from vertjax.train import optimizers, partitioning, trainer

    d, heads, head_dim, d_ff, layers = SIZES[s.size]
    config = t5.T5Config(
        vocab_size=s.vocab_size,
        emb_dim=d,
        num_heads=heads,
        head_dim=head_dim,
        mlp_dim=d_ff,
        num_encoder_layers=layers,
        num_decoder_layers=layers,
        dtype=s.dtype,
    )
    model = encoder_decoder.EncoderDecoderModel(config, z_loss=0.0)
    optimizer = optimizers.adamw(learning_rate=1e-4, weight_decay=0.0, max_grad_norm=None)
    mesh = partitioning.create_mesh((-1, 1))
    rules = partitioning.standard_logical_axis_rules()
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        steps = trainer.build_steps(
            model=model, optimizer=optimizer, mesh=mesh, rules=rules, dropout_seed=0
        )
        params = jax.jit(model.init_params, out_shardings=steps.param_shardings)(
            jax.random.key(s.seed)
        )
        opt_state = jax.jit(optimizer.init, out_shardings=steps.opt_shardings)(params)
        device_batches = [partitioning.global_batch(b, mesh) for b in batches]
        for i in range(s.warmup):
            params, opt_state, m = steps.train(params, opt_state, device_batches[i], jnp.int32(i))
        jax.block_until_ready(m["loss"])
        start = time.perf_counter()
        for i in range(s.warmup, s.warmup + s.steps):
            params, opt_state, m = steps.train(params, opt_state, device_batches[i], jnp.int32(i))
        jax.block_until_ready(m["loss"])
        seconds = (time.perf_counter() - start) / s.steps
    return {
        "step_seconds": seconds,
        "loss": float(m["loss"]),
        "device": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
    }


def bench_hf(s: Setup, batches) -> dict[str, float]:
    import torch
    import transformers

    torch.manual_seed(s.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    d, heads, head_dim, d_ff, layers = SIZES[s.size]
    config = transformers.T5Config(
        vocab_size=s.vocab_size,
        d_model=d,
        d_kv=head_dim,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        tie_word_embeddings=False,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = transformers.T5ForConditionalGeneration(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)

    def step(batch):
        out = model(
            input_ids=torch.from_numpy(batch["encoder_input_tokens"]).long(),
            decoder_input_ids=torch.from_numpy(batch["decoder_input_tokens"]).long(),
            labels=torch.from_numpy(batch["decoder_target_tokens"]).long(),
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss

    for i in range(s.warmup):
        step(batches[i])
    start = time.perf_counter()
    for i in range(s.warmup, s.warmup + s.steps):
        loss = step(batches[i])
    seconds = (time.perf_counter() - start) / s.steps
    return {"step_seconds": seconds, "loss": float(loss.detach())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="bench")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--inputs_length", type=int, default=512)
    parser.add_argument("--targets_length", type=int, default=128)
    parser.add_argument("--vocab_size", type=int, default=32128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", default="float32", help="vertjax activation dtype")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip_hf", action="store_true", help="only vertjax (e.g. for MFU on GPU)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    s = Setup(
        args.size,
        args.batch_size,
        args.inputs_length,
        args.targets_length,
        args.vocab_size,
        args.steps,
        args.warmup,
        args.dtype,
        args.seed,
    )
    batches = make_batches(s)
    target_tokens = s.batch_size * s.targets_length
    result = {"setup": dataclasses.asdict(s), "target_tokens_per_step": target_tokens}
    vj = bench_vertjax(s, batches)
    result["vertjax"] = dict(vj, target_tokens_per_second=target_tokens / vj["step_seconds"])
    if vj["platform"] != "cpu":
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in vj["device"]), None)
        flops = model_flops_per_step(s)
        result["vertjax"]["model_tflops_per_second"] = flops / vj["step_seconds"] / 1e12
        if peak:
            result["vertjax"]["mfu"] = flops / vj["step_seconds"] / peak
    if not args.skip_hf:
        hf = bench_hf(s, batches)
        result["hf_torch"] = dict(hf, target_tokens_per_second=target_tokens / hf["step_seconds"])
        result["ratio_vertjax_over_hf"] = hf["step_seconds"] / vj["step_seconds"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"setup: {result['setup']}  device: {vj['device']}")
    print(
        f"vertjax : {result['vertjax']['target_tokens_per_second']:10.1f} target tokens/s "
        f"({vj['step_seconds'] * 1000:.0f} ms/step)"
    )
    if "mfu" in result["vertjax"]:
        print(
            f"vertjax MFU: {100 * result['vertjax']['mfu']:.1f} % "
            f"({result['vertjax']['model_tflops_per_second']:.1f} model TFLOP/s)"
        )
    if "hf_torch" in result:
        print(
            f"HF torch: {result['hf_torch']['target_tokens_per_second']:10.1f} target tokens/s "
            f"({result['hf_torch']['step_seconds'] * 1000:.0f} ms/step)"
        )
        print(f"ratio vertjax / HF: {result['ratio_vertjax_over_hf']:.2f}x")


if __name__ == "__main__":
    main()
