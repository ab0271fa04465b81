"""Import a sentence-transformers T5-encoder model (GTR, sentence-T5) as a vertjax GTR retriever.

A sentence-transformers directory lists its pipeline in `modules.json`; vertjax reads exactly the
GTR pipeline:

    Transformer (T5EncoderModel: config.json + model.safetensors)  -> T5 encoder
    Pooling     (1_Pooling/config.json: mean tokens only)          -> masked mean pooling
    Dense       (2_Dense: config.json + model.safetensors, no bias, Identity activation; optional)
    Normalize   (3_Normalize)                                      -> L2 normalisation

Both layouts are read: the one the published GTR checkpoints use (sentence-transformers < 6:
`sentence_transformers.models.Transformer` in `0_Transformer/`, `pooling_mode_mean_tokens`) and
the one sentence-transformers 6 saves (`sentence_transformers.base.modules.transformer.Transformer`
at the root, `"pooling_mode": "mean"`).

into `DualEncoderModel(shared=True)` params (`tower/token_embedder`, `tower/encoder`,
`tower/projection`). Without a Dense module the projection is the identity. Anything vertjax
would compute differently (CLS/max pooling, a biased or non-linear Dense, no Normalize) is a
`DataError` rather than a silently different model. Pickled `.bin` weights are never read.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from vertjax import errors, io_utils
from vertjax.convert import hf_t5

PathLike = str | os.PathLike
MODULES_FILE = "modules.json"
_ST = "sentence_transformers."
_GTR_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
_IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity")
_EMBEDDING_ALIAS = "encoder.embed_tokens.weight"


def _json(path: pathlib.Path) -> Any:
    if not path.is_file():
        raise errors.DataError("file not found", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise errors.DataError(f"not valid JSON ({e})", path=path) from None


def read_modules(model_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Module kind ("Transformer", "Pooling", "Dense", "Normalize") -> its folder."""
    modules = _json(model_dir / MODULES_FILE)
    if not isinstance(modules, list):
        raise errors.DataError("expected a list of modules", path=model_dir / MODULES_FILE)
    found: dict[str, pathlib.Path] = {}
    for module in modules:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if not kind.startswith(_ST):
            raise errors.DataError(f"unsupported module {module!r}", path=model_dir / MODULES_FILE)
        name = kind.rsplit(".", 1)[-1]  # the class name, whichever package layout holds it
        if name in found or name not in _GTR_MODULES:
            raise errors.DataError(
                f"module {name!r} is not part of a GTR pipeline (Transformer, Pooling, Dense,"
                " Normalize, once each)",
                path=model_dir / MODULES_FILE,
            )
        found[name] = model_dir / str(module.get("path", ""))
    for needed in ("Transformer", "Pooling", "Normalize"):
        if needed not in found:
            raise errors.DataError(
                f"no {needed} module (vertjax's GTR tower always has one)",
                path=model_dir / MODULES_FILE,
            )
    return found


def _pooling_modes(config: Mapping[str, Any]) -> set[str]:
    """The pooling modes a Pooling config turns on, in either layout, as short names ("mean")."""
    if "pooling_mode" in config:  # sentence-transformers >= 6: a name or a list of names
        modes = config["pooling_mode"]
        return {str(m) for m in (modes if isinstance(modes, list) else [modes])}
    prefix = "pooling_mode_"
    return {
        k[len(prefix) :].removesuffix("_tokens").removesuffix("_token")
        for k, v in config.items()
        if k.startswith(prefix) and v
    }


def _check_pooling(directory: pathlib.Path) -> None:
    config = _json(directory / "config.json")
    modes = _pooling_modes(config)
    if modes != {"mean"}:
        raise errors.DataError(
            f"pooling {sorted(modes)}: vertjax's GTR tower mean-pools tokens only",
            path=directory / "config.json",
        )


def _dense_kernel(directory: pathlib.Path, *, in_features: int) -> np.ndarray:
    """The Dense module's `[in, out]` kernel (torch stores `linear.weight` as `[out, in]`)."""
    config = _json(directory / "config.json")
    if config.get("bias", True) or config.get("activation_function") not in _IDENTITY:
        raise errors.DataError(
            "a Dense module with a bias or an activation: vertjax's projection is linear and"
            " bias-free",
            path=directory / "config.json",
        )
    tensors = hf_t5.read_safetensors(directory)
    weight = tensors.get("linear.weight")
    if weight is None or set(tensors) != {"linear.weight"}:
        raise errors.DataError(
            f"expected only 'linear.weight', found {sorted(tensors)}", path=directory
        )
    if weight.ndim != 2 or weight.shape[1] != in_features:
        raise errors.DataError(
            f"linear.weight has shape {weight.shape}, expected [out, {in_features}]", path=directory
        )
    return np.ascontiguousarray(weight.T, dtype=np.float32)


def _encoder_params(directory: pathlib.Path) -> tuple[Any, dict[str, Any]]:
    """(vertjax T5Config, {token_embedder, encoder} params) of a `T5EncoderModel` folder."""
    hf = _json(directory / hf_t5.CONFIG_FILE)
    if hf.get("model_type") != "t5":
        raise errors.DataError(
            f"model_type={hf.get('model_type')!r}: not a T5 encoder", path=directory
        )
    config = hf_t5.config_from_hf(hf, path=directory / hf_t5.CONFIG_FILE)
    tensors = hf_t5.read_safetensors(directory)
    mapping = [m for m in hf_t5.tensor_mapping(config) if m[1][0] in ("token_embedder", "encoder")]
    expected = {name for name, _, _ in mapping}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected - {_EMBEDDING_ALIAS})
    if missing or unexpected:
        raise errors.DataError(
            f"not a T5 encoder matching its config: missing {missing[:10]}, unexpected"
            f" {unexpected[:10]}",
            path=directory,
        )
    if _EMBEDDING_ALIAS in tensors and not np.array_equal(
        tensors[_EMBEDDING_ALIAS], tensors["shared.weight"]
    ):
        raise errors.DataError(f"{_EMBEDDING_ALIAS} differs from shared.weight", path=directory)
    flat = {}
    for hf_name, path, transpose in mapping:
        value = tensors[hf_name].T if transpose else tensors[hf_name]
        flat[path] = np.ascontiguousarray(value, dtype=np.float32)
    return config, traverse_util.unflatten_dict(flat)


def from_sentence_transformers(path: PathLike) -> tuple[Any, dict[str, Any]]:
    """Reads a sentence-transformers T5-encoder directory -> (`DualEncoderModel`, params)."""
    from vertjax.models import encoder

    model_dir = pathlib.Path(path)
    if not model_dir.is_dir():
        raise errors.DataError("sentence-transformers directory not found", path=model_dir)
    modules = read_modules(model_dir)
    _check_pooling(modules["Pooling"])
    config, t5_params = _encoder_params(modules["Transformer"])
    if "Dense" in modules:
        kernel = _dense_kernel(modules["Dense"], in_features=config.emb_dim)
    else:
        kernel = np.eye(config.emb_dim, dtype=np.float32)
    model = encoder.DualEncoderModel(config, projection_dim=int(kernel.shape[1]), shared=True)
    params = {"tower": {**t5_params, "projection": {"kernel": kernel}}}
    _check_shapes(params, model.abstract_params(), where=model_dir)
    return model, params


def _check_shapes(params: Mapping[str, Any], abstract: Any, *, where: pathlib.Path) -> None:
    have = traverse_util.flatten_dict(params)
    want = traverse_util.flatten_dict(abstract)
    if set(have) != set(want):
        raise errors.DataError(
            f"converted params differ from the GTR tower: {sorted(set(have) ^ set(want))[:5]}",
            path=where,
        )
    for key, value in have.items():
        if tuple(value.shape) != tuple(want[key].shape):
            raise errors.DataError(
                f"{'/'.join(key)} has shape {value.shape}, expected {want[key].shape}", path=where
            )


def save_retriever(model: Any, params: Any, out_dir: PathLike) -> pathlib.Path:
    """Writes a retriever run dir (read by `restore.load_dual_encoder`, `vertjax index build`)."""
    from vertjax.train import restore

    restore.save_params(out_dir, config=model.config, params=params, step=0)
    restore.save_config(out_dir, model)
    return pathlib.Path(out_dir)


def copy_vocab(path: PathLike, out_dir: PathLike, *, vocab_size: int) -> pathlib.Path | None:
    """Copies the Transformer module's `spiece.model` (published GTRs ship one) to
    `out_dir/spm.model`, checked against the model's embedding; None when there is none."""
    from vertjax.data import vocab as vocab_lib

    source = read_modules(pathlib.Path(path))["Transformer"] / hf_t5.TOKENIZER_MODEL_FILE
    if not source.is_file():
        return None
    vocab_lib.check_fits_model(
        vocab_lib.load_vocab(source), vocab_size, vocab_path=source, model="its T5 encoder"
    )
    return io_utils.atomic_write_bytes(
        pathlib.Path(out_dir) / vocab_lib.MODEL_FILENAME, source.read_bytes()
    )


def import_sentence_transformers(path: PathLike, out_dir: PathLike) -> pathlib.Path:
    """Converts a sentence-transformers directory into a retriever run dir at `out_dir` (with its
    SentencePiece model as `spm.model` when the directory has one)."""
    model, params = from_sentence_transformers(path)
    save_retriever(model, params, out_dir)
    copy_vocab(path, out_dir, vocab_size=model.config.vocab_size)
    return pathlib.Path(out_dir)
