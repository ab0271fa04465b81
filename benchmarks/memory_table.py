"""Per-device memory of the compiled T5 v1.1 train step, by size, mesh, remat policy and scan.

Compiles (never runs) vertjax's real train step (`trainer.build_steps`: forward, backward,
Adafactor update, T5X's logical-axis sharding) for abstract params, optimizer state and batch on a
mesh of fake CPU devices, and prints XLA's memory analysis of one device's program:

- state: params + optimizer state held by the device (its shard), float32 as T5X keeps them;
- batch: its slice of the batch;
- temp: everything else the step allocates (activations kept for the backward pass, gradients,
  update temporaries): what `remat_policy` trades against recompute;
- peak = arguments + outputs - aliased (donated) + temp: the device memory the step needs;
- saved: the activations the backward pass keeps (JAX's saved residuals of the loss for one
  data-parallel replica's batch, before any model-axis split): what `remat_policy` trades.

The compiled figures come from XLA:CPU, not a TPU's or GPU's compiler: XLA:CPU's schedule does not
shrink its temporaries when layers are rematerialised (temp stays flat while `saved` drops ~20x),
so read temp/peak as an upper bound of the same program; state and saved are exact arithmetic.
`--scan_layers off on` compiles each configuration with and without `SCAN_LAYERS` (one scanned
layer per stack instead of N unrolled ones) and reports the compile time beside the memory.
Sizes and meshes are the gins' (`models/t5_1_1/<size>.gin`, `MESH_SHAPE`,
`PARAMETER_PARTITIONING_DIMS`).

  python benchmarks/memory_table.py --sizes base large --meshes 8,1 --remat none full
  python benchmarks/memory_table.py --sizes xxl --meshes 1,8 --partitioning_dims 2 --remat full
  python benchmarks/memory_table.py --sizes base --meshes 8,1 --remat none --scan_layers off on
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["base", "large", "xl", "xxl"])
    parser.add_argument(
        "--meshes", nargs="+", default=["8,1"], help="(data, model) shapes, e.g. 8,1 2,4 1,8"
    )
    parser.add_argument("--remat", nargs="+", default=["none", "minimal", "full"])
    parser.add_argument(
        "--scan_layers",
        nargs="+",
        choices=("off", "on"),
        default=["off"],
        help="SCAN_LAYERS settings to compile (off, on or both)",
    )
    parser.add_argument("--partitioning_dims", type=int, default=1, help="1 or 2 (ZeRO-3 style)")
    parser.add_argument(
        "--per_replica_batch", type=int, default=8, help="examples per data-parallel replica"
    )
    parser.add_argument("--inputs_length", type=int, default=512)
    parser.add_argument("--targets_length", type=int, default=114)
    parser.add_argument("--vocab_size", type=int, default=32128)
    parser.add_argument("--dtype", default="bfloat16", help="activation dtype (params are f32)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return parser.parse_args()


ARGS = _parse_args()
_DEVICES = max(int(a) * int(b) for a, b in (m.split(",") for m in ARGS.meshes))
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={_DEVICES}"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import flax.linen as nn  # noqa: E402  (XLA_FLAGS must be set before jax starts)
import gin  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax._src.ad_checkpoint import saved_residuals  # noqa: E402  (public only as a printer)

from vertjax import gin_utils  # noqa: E402
from vertjax.models import encoder_decoder  # noqa: E402
from vertjax.train import optimizers, partitioning, trainer  # noqa: E402

GIB = 1024**3


def build_model(size: str, remat: str, scan: bool) -> encoder_decoder.EncoderDecoderModel:
    """The model `models/t5_1_1/<size>.gin` configures, with this remat policy and scan."""
    gin.clear_config()
    gin_utils.parse_gin(
        gin_files=[f"models/t5_1_1/{size}.gin"],
        gin_bindings=[
            f"VOCAB_SIZE={ARGS.vocab_size}",
            "DROPOUT_RATE=0.0",
            f"ACTIVATION_DTYPE='{ARGS.dtype}'",
            f"REMAT_POLICY='{remat}'",
            f"SCAN_LAYERS={scan}",
        ],
    )
    return gin.get_configurable(encoder_decoder.EncoderDecoderModel)()


def _with_shardings(tree, shardings):
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def measure(size: str, mesh_shape: tuple[int, int], remat: str, scan: bool) -> dict:
    """Compiles the train step ahead of time and returns one device's memory figures."""
    model = build_model(size, remat, scan)
    optimizer = optimizers.adafactor(learning_rate=1e-3)
    devices = jax.devices()[: mesh_shape[0] * mesh_shape[1]]
    mesh = partitioning.create_mesh(mesh_shape, devices=devices)
    rules = partitioning.standard_logical_axis_rules(
        parameter_partitioning_dims=ARGS.partitioning_dims
    )
    batch_size = ARGS.per_replica_batch * mesh_shape[0]
    shapes = {
        "encoder_input_tokens": ((batch_size, ARGS.inputs_length), jnp.int32),
        "decoder_input_tokens": ((batch_size, ARGS.targets_length), jnp.int32),
        "decoder_target_tokens": ((batch_size, ARGS.targets_length), jnp.int32),
        "decoder_loss_weights": ((batch_size, ARGS.targets_length), jnp.float32),
    }
    start = time.perf_counter()
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        steps = trainer.build_steps(
            model=model, optimizer=optimizer, mesh=mesh, rules=rules, dropout_seed=0
        )
        abstract = model.abstract_params()
        params = _with_shardings(abstract, steps.param_shardings)
        opt_state = _with_shardings(jax.eval_shape(optimizer.init, abstract), steps.opt_shardings)
        batch_sharding = partitioning.batch_sharding(mesh)
        batch = {
            k: jax.ShapeDtypeStruct(shape, dtype, sharding=batch_sharding)
            for k, (shape, dtype) in shapes.items()
        }
        step = jax.ShapeDtypeStruct((), jnp.int32)
        compiled = steps.train.lower(params, opt_state, batch, step).compile()
    stats = compiled.memory_analysis()
    num_devices = mesh_shape[0] * mesh_shape[1]
    state_bytes = sum(_device_bytes(x) for x in jax.tree.leaves((params, opt_state)))
    batch_bytes = sum(_device_bytes(x) for x in jax.tree.leaves(batch))
    peak = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        - stats.alias_size_in_bytes
        + stats.temp_size_in_bytes
    )
    num_params = sum(x.size for x in jax.tree.leaves(abstract))
    replica_batch = {
        k: jax.ShapeDtypeStruct((ARGS.per_replica_batch, shape[1]), dtype)
        for k, (shape, dtype) in shapes.items()
    }
    residuals = saved_residuals(lambda p, b: model.loss_fn(p, b)[0], abstract, replica_batch)
    saved_bytes = sum(
        int(np.prod(aval.shape)) * aval.dtype.itemsize
        for aval, source in residuals
        if "argument" not in source  # params and the batch are held anyway
    )
    return {
        "size": size,
        "params_b": round(num_params / 1e9, 3),
        "mesh": f"{mesh_shape[0]}x{mesh_shape[1]}",
        "devices": num_devices,
        "partitioning_dims": ARGS.partitioning_dims,
        "global_batch": batch_size,
        "remat": remat,
        "scan_layers": scan,
        "state_gib": round(state_bytes / GIB, 2),
        "batch_gib": round(batch_bytes / GIB, 3),
        "saved_bytes": saved_bytes,
        "saved_gib": round(saved_bytes / GIB, 2),
        "temp_gib": round(stats.temp_size_in_bytes / GIB, 2),
        "peak_gib": round(peak / GIB, 2),
        "compile_s": round(time.perf_counter() - start, 1),
    }


def _device_bytes(x: jax.ShapeDtypeStruct) -> int:
    """Bytes of `x`'s shard on one device."""
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    count = 1
    for dim in shape:
        count *= dim
    return count * jnp.dtype(x.dtype).itemsize


def main() -> None:
    rows = []
    header = (
        "| size | params | mesh | batch | remat | scan | state GiB | saved GiB/replica"
        " | XLA:CPU temp GiB | XLA:CPU peak GiB/device | compile s |"
    )
    print(f"inputs {ARGS.inputs_length}, targets {ARGS.targets_length}, {ARGS.dtype} activations,")
    print(f"Adafactor, PARAMETER_PARTITIONING_DIMS={ARGS.partitioning_dims}, jax {jax.__version__}")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for size in ARGS.sizes:
        for mesh in ARGS.meshes:
            shape = tuple(int(v) for v in mesh.split(","))
            for remat in ARGS.remat:
                for scan in ARGS.scan_layers:
                    row = measure(size, shape, remat, scan == "on")
                    rows.append(row)
                    print(
                        f"| {row['size']} | {row['params_b']}B | {row['mesh']}"
                        f" | {row['global_batch']} | {row['remat']} | {scan}"
                        f" | {row['state_gib']} | {row['saved_gib']} | {row['temp_gib']}"
                        f" | {row['peak_gib']} | {row['compile_s']} |",
                        flush=True,
                    )
    if ARGS.json:
        with open(ARGS.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
