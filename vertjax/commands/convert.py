"""`vertjax convert`: HF transformers T5 checkpoints ↔ vertjax orbax checkpoints.

`--from-hf DIR --out DIR` reads a `T5ForConditionalGeneration` directory (config.json +
safetensors) and writes a vertjax run directory (`model_config.json` + `checkpoint_0/`);
`--to-hf --checkpoint DIR --out DIR` writes config.json + model.safetensors back. The output is
built in a temporary sibling directory and renamed into place, so an interrupted conversion never
leaves a half-written `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator

from vertjax import errors

HELP = "convert T5 checkpoints between HF transformers (safetensors) and vertjax (orbax)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    direction.add_argument(
        "--from-hf",
        metavar="DIR",
        help="HF T5ForConditionalGeneration directory (config.json + model.safetensors)",
    )
    direction.add_argument(
        "--to-hf", action="store_true", help="write --checkpoint as an HF T5 directory"
    )
    parser.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="with --to-hf: a vertjax run dir (latest step) or its checkpoint_<step> dir",
    )
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="output directory (must not exist or be empty)"
    )


@contextlib.contextmanager
def staged_output(out: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of `out`; renames it to `out` on success, removes it on error."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise errors.ConfigError(f"{out}: already exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the output's mode
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from vertjax.convert import hf_t5
    from vertjax.models import t5
    from vertjax.train import checkpoints

    out = pathlib.Path(args.out).absolute()
    if args.to_hf and not args.checkpoint:
        raise errors.ConfigError("--to-hf needs --checkpoint DIR")
    if args.from_hf and args.checkpoint:
        raise errors.ConfigError("--checkpoint goes with --to-hf; --from-hf reads its own DIR")
    with staged_output(out) as tmp:
        if args.from_hf:
            config, params = hf_t5.from_hf(args.from_hf)
            checkpoints.save_params(tmp, config=config, params=params)
        else:
            config, params = checkpoints.load_params(args.checkpoint)
            hf_t5.to_hf(config, params, tmp)
    print(
        f"wrote {out}: {t5.count_params(params):,} params, "
        f"{config.num_encoder_layers}+{config.num_decoder_layers} layers, "
        f"d_model {config.emb_dim}, mlp {'/'.join(config.mlp_activations)}, "
        f"{'tied' if config.logits_via_embedding else 'untied'} logits"
    )
    return 0
