"""`vertjax convert`: HF transformers T5 / sentence-transformers GTR ↔ vertjax orbax checkpoints.

`--from_hf DIR --out DIR` reads a `T5ForConditionalGeneration` directory (config.json +
safetensors) and writes a vertjax run directory (`model_config.json` + `checkpoint_0/`);
`--to_hf --checkpoint DIR [--vocab SPM] --out DIR` writes config.json + model.safetensors back
(plus the tokenizer files with `--vocab`); `--from_sentence_transformers DIR --out DIR` imports a
GTR / sentence-T5 encoder as a retriever run dir for `vertjax index build --retriever`. The output
is built in a temporary sibling directory and renamed into place, so an interrupted conversion
never leaves a half-written `--out`.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
from collections.abc import Iterator

from vertjax import errors, io_utils
from vertjax.commands import flags

HELP = (
    "convert T5 checkpoints between HF transformers (safetensors) and vertjax (orbax); import"
    " sentence-transformers GTR retrievers"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    direction = parser.add_mutually_exclusive_group(required=True)
    flags.add_flag(
        direction,
        "--from_hf",
        aliases=("--from-hf",),
        metavar="DIR",
        help="HF T5ForConditionalGeneration directory (config.json + model.safetensors)",
    )
    flags.add_flag(
        direction,
        "--to_hf",
        aliases=("--to-hf",),
        action="store_true",
        help="write --checkpoint as an HF T5 directory",
    )
    flags.add_flag(
        direction,
        "--from_sentence_transformers",
        aliases=("--from-sentence-transformers",),
        metavar="DIR",
        help="sentence-transformers T5-encoder model (GTR, sentence-T5: modules.json + safetensors)"
        " -> a vertjax retriever run dir",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="with --to_hf: a vertjax run dir (latest step) or its checkpoint_<step> dir",
    )
    parser.add_argument(
        "--vocab",
        metavar="SPM",
        help="with --to_hf: the SentencePiece model (or its dir), written as the HF tokenizer",
    )
    parser.add_argument(
        "--out", metavar="DIR", required=True, help="output directory (must not exist or be empty)"
    )


@contextlib.contextmanager
def staged_output(out: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yields a temporary sibling of `out`; renames it to `out` on success, removes it on error."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise errors.ConfigError(f"{out}: already exists and is not an empty directory")
    with io_utils.atomic_dir(out) as tmp:
        yield tmp


def run(args: argparse.Namespace) -> int:
    out = pathlib.Path(args.out).absolute()
    if args.to_hf and not args.checkpoint:
        raise errors.ConfigError("--to_hf needs --checkpoint DIR")
    if args.checkpoint and not args.to_hf:
        raise errors.ConfigError("--checkpoint goes with --to_hf; --from_* reads its own DIR")
    if args.vocab and not args.to_hf:
        raise errors.ConfigError("--vocab goes with --to_hf (it writes the HF tokenizer)")
    if args.from_sentence_transformers:
        return _import_sentence_transformers(args.from_sentence_transformers, out)
    return _convert_t5(args, out)


def _convert_t5(args: argparse.Namespace, out: pathlib.Path) -> int:
    from vertjax.convert import hf_t5
    from vertjax.models import t5
    from vertjax.train import restore

    with staged_output(out) as tmp:
        if args.from_hf:
            config, params = hf_t5.from_hf(args.from_hf)
            restore.save_params(tmp, config=config, params=params)
        else:
            config, params = restore.load_params(args.checkpoint)
            hf_t5.to_hf(config, params, tmp)
            if args.vocab:
                _write_checked_tokenizer(args.vocab, tmp, vocab_size=config.vocab_size)
    print(
        f"wrote {out}: {t5.count_params(params):,} params, "
        f"{config.num_encoder_layers}+{config.num_decoder_layers} layers, "
        f"d_model {config.emb_dim}, mlp {'/'.join(config.mlp_activations)}, "
        f"{'tied' if config.logits_via_embedding else 'untied'} logits"
        + (", tokenizer" if args.vocab else "")
    )
    return 0


def _write_checked_tokenizer(vocab: str, out: pathlib.Path, *, vocab_size: int) -> None:
    from vertjax.convert import hf_t5
    from vertjax.data import vocab as vocab_lib

    vocabulary = vocab_lib.load_vocab(vocab)
    vocab_lib.check_fits_model(vocabulary, vocab_size, vocab_path=vocab, model="--checkpoint")
    hf_t5.write_tokenizer(vocab, out, extra_ids=vocabulary.extra_ids)


def _import_sentence_transformers(source: str, out: pathlib.Path) -> int:
    from vertjax.convert import gtr
    from vertjax.models import t5

    with staged_output(out) as tmp:
        model, params = gtr.from_sentence_transformers(source)
        gtr.save_retriever(model, params, tmp)
        vocab = gtr.copy_vocab(source, tmp, vocab_size=model.config.vocab_size)
    config = model.config
    print(
        f"wrote {out}: GTR retriever, {t5.count_params(params):,} params, "
        f"{config.num_encoder_layers} encoder layers, d_model {config.emb_dim}, "
        f"embedding dim {model.projection_dim}; "
        + (f"vocab {out / vocab.name}" if vocab else "no spiece.model: pass its vocab to --vocab")
    )
    return 0
