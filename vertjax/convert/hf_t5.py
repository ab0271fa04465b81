"""Conversion between HF transformers T5 checkpoints (safetensors) and vertjax T5X-named params.

`from_hf` reads a `T5ForConditionalGeneration` directory (`config.json` plus `model.safetensors` or a
sharded `model.safetensors.index.json`) with numpy only, so no torch is needed at run time; `to_hf`
writes a directory `transformers.T5ForConditionalGeneration.from_pretrained` loads. Both original
T5 (ReLU, tied embeddings, decoder output scaled by d_model**-0.5) and T5 v1.1 / flan-t5 (gated GELU,
untied `lm_head`) are handled; a tied model maps to `logits_via_embedding=True`, which applies the
same scaling. HF `Linear` weights are `[out, in]` and vertjax `Dense` kernels `[in, out]`, so every
projection is transposed; the relative attention tables go from `[buckets, heads]` to
`[heads, buckets]`. Pickled `pytorch_model.bin` files are never read.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from vertjax import errors, io_utils
from vertjax.models import scan_layout, t5

PathLike = str | os.PathLike
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
ARCHITECTURE = "T5ForConditionalGeneration"
TOKENIZER_MODEL_FILE = "spiece.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"

# HF activation names (transformers' ACT2FN keys) → vertjax `GatedMlp` activation names.
_FROM_HF_ACTIVATION = {
    "relu": "relu",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_python_tanh": "gelu",
    "gelu": "gelu_exact",
    "gelu_python": "gelu_exact",
    "silu": "silu",
    "swish": "silu",
}
# vertjax activation → `feed_forward_proj` (HF maps exactly "gated-gelu" to the tanh GELU).
_TO_HF_UNGATED = {"relu": "relu", "gelu": "gelu_new", "gelu_exact": "gelu", "silu": "silu"}
_TO_HF_GATED = {
    "relu": "gated-relu",
    "gelu": "gated-gelu",
    "gelu_exact": "gated-gelu_python",
    "silu": "gated-silu",
}
_REQUIRED_CONFIG_KEYS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
# Copies of `shared.weight` HF may store; they must equal it.
_EMBEDDING_ALIASES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# Tensors HF itself ignores on load.
_IGNORED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)

ParamPath = tuple[str, ...]


def parse_feed_forward_proj(value: str) -> tuple[str, ...]:
    """HF `feed_forward_proj` ("gated-gelu", "relu", "gated-silu", ...) → `mlp_activations`."""
    parts = value.split("-")
    gated = len(parts) == 2 and parts[0] == "gated"
    if len(parts) > 2 or (len(parts) == 2 and not gated):
        raise ValueError(f"feed_forward_proj {value!r} is not 'ACT' or 'gated-ACT'")
    hf_activation = "gelu_new" if value == "gated-gelu" else parts[-1]
    if hf_activation not in _FROM_HF_ACTIVATION:
        raise ValueError(
            f"feed_forward_proj {value!r}: activation {hf_activation!r} not supported "
            f"(supported: {sorted(_FROM_HF_ACTIVATION)})"
        )
    activation = _FROM_HF_ACTIVATION[hf_activation]
    return (activation, "linear") if gated else (activation,)


def feed_forward_proj(mlp_activations: tuple[str, ...]) -> str:
    """`mlp_activations` → the HF `feed_forward_proj` that computes the same MLP."""
    acts = tuple(mlp_activations)
    if len(acts) == 1 and acts[0] in _TO_HF_UNGATED:
        return _TO_HF_UNGATED[acts[0]]
    if len(acts) == 2 and acts[1] == "linear" and acts[0] in _TO_HF_GATED:
        return _TO_HF_GATED[acts[0]]
    raise errors.ConfigError(f"mlp_activations {acts} has no HF T5 equivalent")


def _hf_int(hf: Mapping[str, Any], key: str, *, path: pathlib.Path, default: int = 0) -> int:
    value = hf.get(key)
    value = default if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise errors.DataError(f"{key}={value!r} is not a positive integer", path=path)
    return value


def _hf_float(hf: Mapping[str, Any], key: str, *, path: pathlib.Path, default: float) -> float:
    value = hf.get(key)
    value = default if value is None else value
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise errors.DataError(f"{key}={value!r} is not a non-negative number", path=path)
    return float(value)


def config_from_hf(hf: Mapping[str, Any], *, path: PathLike = CONFIG_FILE) -> t5.T5Config:
    """Builds the vertjax `T5Config` from a parsed HF T5 `config.json`."""
    path = pathlib.Path(path)
    missing = [k for k in _REQUIRED_CONFIG_KEYS if k not in hf]
    if missing:
        raise errors.DataError(f"missing config keys {missing}", path=path)
    try:
        activations = parse_feed_forward_proj(str(hf.get("feed_forward_proj", "relu")))
    except ValueError as e:
        raise errors.DataError(str(e), path=path) from None
    num_layers = _hf_int(hf, "num_layers", path=path)
    tied = hf.get("tie_word_embeddings", True) is not False
    scaled = bool(hf.get("scale_decoder_outputs", tied))
    return t5.T5Config(
        vocab_size=_hf_int(hf, "vocab_size", path=path),
        emb_dim=_hf_int(hf, "d_model", path=path),
        num_heads=_hf_int(hf, "num_heads", path=path),
        num_encoder_layers=num_layers,
        num_decoder_layers=_hf_int(hf, "num_decoder_layers", path=path, default=num_layers),
        head_dim=_hf_int(hf, "d_kv", path=path),
        mlp_dim=_hf_int(hf, "d_ff", path=path),
        mlp_activations=activations,
        dropout_rate=_hf_float(hf, "dropout_rate", path=path, default=0.1),
        logits_via_embedding=scaled,
        relative_attention_num_buckets=_hf_int(
            hf, "relative_attention_num_buckets", path=path, default=32
        ),
        relative_attention_max_distance=_hf_int(
            hf, "relative_attention_max_distance", path=path, default=128
        ),
        layer_norm_epsilon=_hf_float(hf, "layer_norm_epsilon", path=path, default=1e-6),
    )


def config_to_hf(config: t5.T5Config) -> dict[str, Any]:
    """The HF `config.json` fields of a vertjax `T5Config` (T5 token conventions: pad 0, eos 1)."""
    tied = bool(config.logits_via_embedding)
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "t5",
        "vocab_size": config.vocab_size,
        "d_model": config.emb_dim,
        "d_kv": config.head_dim,
        "d_ff": config.mlp_dim,
        "num_layers": config.num_encoder_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout_rate,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_factor": 1.0,
        "feed_forward_proj": feed_forward_proj(tuple(config.mlp_activations)),
        "is_encoder_decoder": True,
        "tie_word_embeddings": tied,
        "scale_decoder_outputs": tied,
        "use_cache": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "dtype": "float32",
    }


def _attention(hf_prefix: str, vj_prefix: ParamPath) -> Iterator[tuple[str, ParamPath, bool]]:
    for hf_name, vj_name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
        yield f"{hf_prefix}.{hf_name}.weight", vj_prefix + (vj_name, "kernel"), True


def _mlp(
    config: t5.T5Config, *, hf_prefix: str, vj_prefix: ParamPath
) -> Iterator[tuple[str, ParamPath, bool]]:
    gated = len(config.mlp_activations) > 1
    names = [f"wi_{i}" for i in range(len(config.mlp_activations))] if gated else ["wi"]
    for name in names + ["wo"]:
        yield f"{hf_prefix}.{name}.weight", vj_prefix + ("mlp", name, "kernel"), True


def tensor_mapping(config: t5.T5Config) -> list[tuple[str, ParamPath, bool]]:
    """(HF tensor name, vertjax param path, transpose?) for every parameter of `config`'s model."""
    out: list[tuple[str, ParamPath, bool]] = [
        ("shared.weight", ("token_embedder", "embedding"), False)
    ]
    for stack in ("encoder", "decoder"):
        out.append(
            (
                f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                (stack, "relpos_bias", "rel_embedding"),
                True,
            )
        )
    for i in range(config.num_encoder_layers):
        hf, vj = f"encoder.block.{i}.layer", ("encoder", f"layers_{i}")
        out.append((f"{hf}.0.layer_norm.weight", vj + ("pre_attention_layer_norm", "scale"), False))
        out.extend(_attention(f"{hf}.0.SelfAttention", vj + ("attention",)))
        out.append((f"{hf}.1.layer_norm.weight", vj + ("pre_mlp_layer_norm", "scale"), False))
        out.extend(_mlp(config, hf_prefix=f"{hf}.1.DenseReluDense", vj_prefix=vj))
    for i in range(config.num_decoder_layers):
        hf, vj = f"decoder.block.{i}.layer", ("decoder", f"layers_{i}")
        out.append(
            (f"{hf}.0.layer_norm.weight", vj + ("pre_self_attention_layer_norm", "scale"), False)
        )
        out.extend(_attention(f"{hf}.0.SelfAttention", vj + ("self_attention",)))
        out.append(
            (f"{hf}.1.layer_norm.weight", vj + ("pre_cross_attention_layer_norm", "scale"), False)
        )
        out.extend(_attention(f"{hf}.1.EncDecAttention", vj + ("encoder_decoder_attention",)))
        out.append((f"{hf}.2.layer_norm.weight", vj + ("pre_mlp_layer_norm", "scale"), False))
        out.extend(_mlp(config, hf_prefix=f"{hf}.2.DenseReluDense", vj_prefix=vj))
    out.append(("encoder.final_layer_norm.weight", ("encoder", "encoder_norm", "scale"), False))
    out.append(("decoder.final_layer_norm.weight", ("decoder", "decoder_norm", "scale"), False))
    if not config.logits_via_embedding:
        out.append(("lm_head.weight", ("decoder", "logits_dense", "kernel"), True))
    return out


def read_hf_config(model_dir: PathLike) -> dict[str, Any]:
    """Parses `config.json` and checks it describes a `T5ForConditionalGeneration`."""
    path = pathlib.Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise errors.DataError(
            f"no {CONFIG_FILE} (expected a transformers {ARCHITECTURE} directory)",
            path=model_dir,
        )
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.DataError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(hf, dict):
        raise errors.DataError("expected a JSON object", path=path)
    architectures = hf.get("architectures") or []
    if hf.get("model_type") != "t5" or (architectures and ARCHITECTURE not in architectures):
        raise errors.DataError(
            f"model_type={hf.get('model_type')!r}, architectures={architectures}: "
            f"not a {ARCHITECTURE} checkpoint",
            path=path,
        )
    return hf


def _weight_files(model_dir: pathlib.Path) -> list[pathlib.Path]:
    single, index = model_dir / WEIGHTS_FILE, model_dir / INDEX_FILE
    if single.is_file():
        return [single]
    if not index.is_file():
        raise errors.DataError(
            f"no {WEIGHTS_FILE} or {INDEX_FILE} (only safetensors weights are read; "
            "pickled pytorch_model.bin files are not)",
            path=model_dir,
        )
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise errors.DataError(
            f"not a safetensors index with a weight_map ({e!r})", path=index
        ) from None
    files = [model_dir / name for name in shards]
    for f in files:
        if not f.is_file():
            raise errors.DataError(f"shard listed in {INDEX_FILE} is missing", path=f)
    return files


def read_safetensors(model_dir: PathLike) -> dict[str, np.ndarray]:
    """All tensors of a (possibly sharded) safetensors checkpoint as numpy arrays, by name."""
    import safetensors

    tensors: dict[str, np.ndarray] = {}
    for path in _weight_files(pathlib.Path(model_dir)):
        try:
            with safetensors.safe_open(path, framework="np") as f:
                for name in f.keys():
                    if name in tensors:
                        raise errors.DataError(f"tensor {name!r} appears in two shards", path=path)
                    tensors[name] = f.get_tensor(name)
        except (safetensors.SafetensorError, OSError) as e:
            raise errors.DataError(f"cannot read safetensors ({e})", path=path) from None
    return tensors


def _check_names(
    tensors: Mapping[str, np.ndarray], config: t5.T5Config, *, path: pathlib.Path
) -> None:
    """Raises a DataError naming missing tensors, unexpected ones and unequal embedding copies."""
    expected = {name for name, _, _ in tensor_mapping(config)}
    optional = set(_EMBEDDING_ALIASES) | set(_IGNORED)
    if config.logits_via_embedding:
        optional.add("lm_head.weight")
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected - optional)
    if missing or unexpected:
        raise errors.DataError(
            f"tensor names do not match the config: missing {missing[:10]}"
            + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
            + f", unexpected {unexpected[:10]}"
            + (f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else ""),
            path=path,
        )
    copies = [n for n in _EMBEDDING_ALIASES if n in tensors]
    if config.logits_via_embedding and "lm_head.weight" in tensors:
        copies.append("lm_head.weight")
    for name in copies:
        if not np.array_equal(tensors[name], tensors["shared.weight"]):
            reason = (
                "differs from shared.weight, but config.json asks for tied-embedding output "
                "scaling (scale_decoder_outputs / tie_word_embeddings not false); vertjax has "
                "untied logits only without that scaling"
                if name == "lm_head.weight"
                else "differs from shared.weight (T5 shares one embedding table)"
            )
            raise errors.DataError(f"tensor {name!r} {reason}", path=path)


def from_hf(path: PathLike) -> tuple[t5.T5Config, dict[str, Any]]:
    """Reads an HF `T5ForConditionalGeneration` directory → (vertjax config, float32 params).

    Raises:
      DataError: missing config.json or safetensors, not a T5 checkpoint, or tensor names/shapes
        that do not match the config (each named).
    """
    from vertjax.models import encoder_decoder

    model_dir = pathlib.Path(path)
    if not model_dir.is_dir():
        raise errors.DataError("HF model directory not found", path=model_dir)
    config = config_from_hf(read_hf_config(model_dir), path=model_dir / CONFIG_FILE)
    tensors = read_safetensors(model_dir)
    _check_names(tensors, config, path=model_dir)
    abstract = traverse_util.flatten_dict(encoder_decoder.abstract_params(config))
    flat: dict[ParamPath, np.ndarray] = {}
    for hf_name, vj_path, transpose in tensor_mapping(config):
        value = tensors[hf_name].T if transpose else tensors[hf_name]
        want = tuple(abstract[vj_path].shape)
        if value.shape != want:
            raise errors.DataError(
                f"tensor {hf_name!r} has shape {tuple(tensors[hf_name].shape)}, the config "
                f"implies {want[::-1] if transpose else want}",
                path=model_dir,
            )
        flat[vj_path] = np.ascontiguousarray(value, dtype=np.float32)
    return config, traverse_util.unflatten_dict(flat)


def to_hf(config: t5.T5Config, params: Mapping[str, Any], out_dir: PathLike) -> pathlib.Path:
    """Writes `config.json` and `model.safetensors` (float32) for transformers' T5.

    A tied model (`logits_via_embedding`) stores no `lm_head.weight`, as HF saves tied T5s.
    Params in the `scan_layers` layout are split into HF's per-layer blocks first. Each file is
    written to a temporary name and renamed, so a crash leaves no partial file.
    """
    from safetensors.numpy import save

    mapping = tensor_mapping(config)
    flat = traverse_util.flatten_dict(scan_layout.to_layout(params, scan_layers=False))
    have = set(flat)
    want = {vj_path for _, vj_path, _ in mapping}
    if have != want:
        missing = sorted("/".join(p) for p in want - have)
        unexpected = sorted("/".join(p) for p in have - want)
        raise errors.CheckpointError(
            f"params do not match the model config: missing {missing}, unexpected {unexpected}"
        )
    tensors = {}
    for hf_name, vj_path, transpose in mapping:
        value = np.asarray(flat[vj_path], dtype=np.float32)
        tensors[hf_name] = np.ascontiguousarray(value.T if transpose else value)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    io_utils.atomic_write_bytes(out / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    io_utils.atomic_write_json(out / CONFIG_FILE, config_to_hf(config))
    return out


def write_tokenizer(
    vocab_path: PathLike, out_dir: PathLike, *, extra_ids: int = 100, max_length: int = 512
) -> pathlib.Path:
    """Writes the SentencePiece vocab as an HF T5 tokenizer (`spiece.model` + its config).

    `transformers.AutoTokenizer.from_pretrained(out_dir)` then tokenizes exactly as the vertjax
    vocab does (same ids, EOS appended, `<extra_id_0>` the last id), so a converted checkpoint is a
    complete HF model directory.
    """
    from vertjax.data import vocab as vocab_lib

    source = vocab_lib.resolve_model_path(vocab_path)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    io_utils.atomic_write_bytes(out / TOKENIZER_MODEL_FILE, source.read_bytes())
    io_utils.atomic_write_json(
        out / TOKENIZER_CONFIG_FILE,
        {
            "tokenizer_class": "T5Tokenizer",
            "extra_ids": extra_ids,
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": "<pad>",
            "model_max_length": max_length,
        },
    )
    return out
