"""A model's configs and params in a run directory: saving, loading and warm-starting (T5X's
`utils.RestoreCheckpointConfig` and checkpoint loading, for the three vertjax model kinds).

A run dir holds `model_config.json` (the `T5Config`, so inference and conversion need no gin),
for a retriever also `retriever_config.json` and for an NLI classifier `nli_classifier_config.json`,
next to the orbax `checkpoint_<step>/` dirs of `checkpoints.CheckpointManager`. Models stay plain
modules and losses; only this module reads and writes their run folders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from vertjax import errors, io_utils
from vertjax.data import vocab as vocab_lib
from vertjax.models import encoder, encoder_decoder, nli_classifier, scan_layout, t5
from vertjax.train import checkpoints

if TYPE_CHECKING:
    import seqio

logger = logging.getLogger(__name__)
PathLike = str | os.PathLike
MODEL_CONFIG_FILE = "model_config.json"
RETRIEVER_CONFIG_FILE = "retriever_config.json"
CLASSIFIER_CONFIG_FILE = "nli_classifier_config.json"
Model = (
    encoder_decoder.EncoderDecoderModel
    | encoder.DualEncoderModel
    | nli_classifier.NLIClassifierModel
)


def save_model_config(model_dir: PathLike, config: t5.T5Config) -> None:
    """Writes the model hyper-parameters next to the checkpoints."""
    fields = dataclasses.asdict(config)
    fields["mlp_activations"] = list(config.mlp_activations)
    fields["dtype"] = str(np.dtype(config.activation_dtype).name)
    io_utils.atomic_write_json(pathlib.Path(model_dir) / MODEL_CONFIG_FILE, fields)


def load_model_config(model_dir: PathLike) -> t5.T5Config:
    """Reads `model_config.json` from a run dir (or from the parent of a checkpoint dir)."""
    model_dir = pathlib.Path(model_dir)
    for candidate in (model_dir / MODEL_CONFIG_FILE, model_dir.parent / MODEL_CONFIG_FILE):
        if candidate.is_file():
            fields = json.loads(candidate.read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(t5.T5Config)}
            unknown = sorted(set(fields) - known)
            if unknown:
                raise errors.CheckpointError(f"{candidate}: unknown model config keys {unknown}")
            fields["mlp_activations"] = tuple(fields.get("mlp_activations", ("gelu", "linear")))
            return t5.T5Config(**fields)
    raise errors.CheckpointError(
        f"{model_dir}: no {MODEL_CONFIG_FILE} (is this a vertjax run dir?)"
    )


def save_config(model_dir: PathLike, model: Model) -> None:
    """Writes `model`'s configs into its run dir, so `load_*` below rebuild it without gin."""
    save_model_config(model_dir, model.config)
    if isinstance(model, encoder.DualEncoderModel):
        io_utils.atomic_write_json(
            pathlib.Path(model_dir) / RETRIEVER_CONFIG_FILE,
            {
                "projection_dim": model.projection_dim,
                "shared": model.shared,
                "logit_scale": model.logit_scale,
                "learnable_logit_scale": model.learnable_logit_scale,
                "bidirectional": model.bidirectional,
            },
        )
    elif isinstance(model, nli_classifier.NLIClassifierModel):
        io_utils.atomic_write_json(
            pathlib.Path(model_dir) / CLASSIFIER_CONFIG_FILE,
            {
                "hidden_dim": model.hidden_dim,
                "labels": list(model.labels),
                "hypothesis_tokens": model.hypothesis_tokens,
                "premise_tokens": model.premise_tokens,
            },
        )


def abstract_params_for(config: t5.T5Config) -> Any:
    """ShapeDtypeStructs of a T5's params on this process's first device, for restoring.

    The explicit sharding lets orbax restore a checkpoint saved on another topology (a pod or a
    multi-device mesh) into one local process.
    """
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
        encoder_decoder.abstract_params(config),
    )


def load_params(path: PathLike, *, abstract_params: Any = None) -> tuple[t5.T5Config, Any]:
    """Loads (model config, params) from a run dir or a `checkpoint_<step>` dir.

    Without `abstract_params` they are a T5 encoder-decoder's, restored as host-local arrays on
    the default device.
    """
    model_dir, step = checkpoints.resolve_checkpoint(path)
    config = load_model_config(model_dir)
    if abstract_params is None:
        abstract_params = abstract_params_for(config)
    return config, checkpoints.restore_params(model_dir, step, abstract_params=abstract_params)


def save_params(model_dir: PathLike, *, config: t5.T5Config, params: Any, step: int = 0) -> None:
    """Writes a params-only checkpoint and its model config (conversion output, exported models)."""
    save_model_config(model_dir, config)
    manager = checkpoints.CheckpointManager(model_dir, max_to_keep=None)
    try:
        manager.save(step, params=params)
        manager.wait_until_finished()
    finally:
        manager.close()


def warm_start(model: Model, path: PathLike, *, abstract_params: Any) -> Any:
    """Initial params of a new run from another run or a converted checkpoint (T5X's
    `initial_checkpoint_path`), placed like `abstract_params`.

    An encoder-decoder takes all params, cast to its dtypes; only the config fields that fix
    parameter shapes must match (`T5Config.param_mismatches`): dropout, dtype and the like are
    the new run's own. A retriever or NLI classifier takes the checkpoint's encoder and token
    embedder (every tower the same) and initialises its heads afresh. Either way a checkpoint
    saved with the other `scan_layers` layout is converted (`models/scan_layout.py`).
    """
    if isinstance(model, encoder_decoder.EncoderDecoderModel):
        model_dir, step = checkpoints.resolve_checkpoint(path)
        mismatches = model.config.param_mismatches(load_model_config(model_dir))
        if mismatches:  # checked before restoring: orbax's shape errors say less
            fields = ", ".join(
                f"{k} {theirs!r} (configured: {mine!r})" for k, (mine, theirs) in mismatches.items()
            )
            raise errors.CheckpointError(
                f"{path}: the checkpoint's model has another shape: {fields}"
            )
        source_scanned = load_model_config(model_dir).scan_layers
        if source_scanned == model.config.scan_layers:
            return checkpoints.restore_params(model_dir, step, abstract_params=abstract_params)
        logger.info(
            "%s: converting the checkpoint's %s layers to the run's %s layout",
            path,
            "scanned" if source_scanned else "unscanned",
            "scanned" if model.config.scan_layers else "unscanned",
        )
        in_source_layout = scan_layout.to_layout(
            abstract_params, source_scanned, stack=_stack_abstract, unstack=_unstack_abstract
        )
        params = checkpoints.restore_params(model_dir, step, abstract_params=in_source_layout)
        converted = scan_layout.to_layout(params, model.config.scan_layers)
        return _place_like(converted, abstract_params)
    if isinstance(model, encoder.DualEncoderModel):
        pretrained = _pretrained_encoder(path, config=model.config, what="retriever")
        fresh = model.init_params(jax.random.key(0))
        towers = ["tower"] if model.shared else ["question_tower", "passage_tower"]
        for tower in towers:
            fresh[tower] = {**fresh[tower], **pretrained}
        _warn_if_collapsed(model, fresh, path=path)
        return _place_like(fresh, abstract_params)
    if isinstance(model, nli_classifier.NLIClassifierModel):
        pretrained = _pretrained_encoder(path, config=model.config, what="NLI classifier")
        fresh = {**model.init_params(jax.random.key(0)), **pretrained}
        return _place_like(fresh, abstract_params)
    raise TypeError(f"no warm start for a {type(model).__name__}")


def _pretrained_encoder(path: PathLike, *, config: t5.T5Config, what: str) -> dict[str, Any]:
    """`{token_embedder, encoder}` params of the T5 checkpoint at `path`; a `CheckpointError` when
    its embedding width or vocab differs from `config` (`what` names the model being started)."""
    source, params = load_params(path)
    if source.emb_dim != config.emb_dim or source.vocab_size != config.vocab_size:
        raise errors.CheckpointError(
            f"{path}: encoder shape (emb_dim {source.emb_dim}, vocab {source.vocab_size}) does "
            f"not match the {what}'s ({config.emb_dim}, {config.vocab_size})"
        )
    pretrained = {"token_embedder": params["token_embedder"], "encoder": params["encoder"]}
    return scan_layout.to_layout(pretrained, config.scan_layers)


def _stacked_sharding(sharding: Any) -> Any:
    """A per-layer leaf's mesh sharding for the stack of all layers (leading axis replicated)."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(
            sharding.mesh, jax.sharding.PartitionSpec(None, *sharding.spec)
        )
    return sharding


def _layer_sharding(sharding: Any) -> Any:
    """A stacked leaf's mesh sharding for one layer's slice (the leading axis dropped)."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(
            sharding.mesh, jax.sharding.PartitionSpec(*sharding.spec[1:])
        )
    return sharding


def _stack_abstract(leaves: Any) -> jax.ShapeDtypeStruct:
    """`scan_layout`'s stacking for restore targets: shapes, dtypes and shardings, no data."""
    first = leaves[0]
    return jax.ShapeDtypeStruct(
        (len(leaves), *first.shape), first.dtype, sharding=_stacked_sharding(first.sharding)
    )


def _unstack_abstract(leaf: jax.ShapeDtypeStruct) -> list[jax.ShapeDtypeStruct]:
    """`scan_layout`'s splitting for restore targets (the inverse of `_stack_abstract`)."""
    one = jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype, sharding=_layer_sharding(leaf.sharding))
    return [one] * leaf.shape[0]


def check_resume_layout(model_dir: PathLike, config: t5.T5Config) -> None:
    """`CheckpointError` when a run dir's checkpoints were written with the other `scan_layers`
    layout: resuming restores the optimizer state too, which is not converted (warm-start a new
    run from the checkpoint instead, via INITIAL_CHECKPOINT_PATH)."""
    if not (pathlib.Path(model_dir) / MODEL_CONFIG_FILE).is_file():
        return
    saved = load_model_config(model_dir).scan_layers
    if saved != config.scan_layers:
        raise errors.CheckpointError(
            f"{model_dir}: its checkpoints were trained with SCAN_LAYERS = {saved}, this run has"
            f" SCAN_LAYERS = {config.scan_layers}; resume with the run's own setting, or start a"
            " new MODEL_DIR with INITIAL_CHECKPOINT_PATH pointing at this one (warm start converts"
            " the layout)"
        )


def _place_like(params: Any, abstract_params: Any) -> Any:
    """`params` as fresh arrays with the dtypes and shardings of `abstract_params`."""
    return jax.tree.map(
        lambda x, a: jax.device_put(jnp.array(x, a.dtype, copy=True), a.sharding),
        params,
        abstract_params,
    )


def _warn_if_collapsed(model: encoder.DualEncoderModel, params: Any, *, path: PathLike) -> None:
    """Warns when the starting encoder maps every input to nearly the same pooled vector."""
    cosine = model.pooled_cosine(params)
    if cosine > encoder.COLLAPSED_COSINE:
        logger.warning(
            "%s: this encoder maps different inputs to nearly the same pooled vector (mean "
            "cosine %.3f on random token sequences; a random T5 encoder gives ~0.05): its "
            "residual stream is dominated by one input-independent direction, so the "
            "retriever starts collapsed and trains worse than from random weights. Pretrain "
            "it with a smaller learning rate (AdamW 1e-3, not T5's Adafactor 1e-2) or start "
            "from scratch.",
            path,
            cosine,
        )


def load_dual_encoder(path: PathLike) -> tuple[encoder.DualEncoderModel, Any]:
    """(model, params) of a trained retriever run dir or `checkpoint_<step>` dir."""
    model_dir, step = checkpoints.resolve_checkpoint(path)
    config_file = model_dir / RETRIEVER_CONFIG_FILE
    if not config_file.is_file():
        raise errors.CheckpointError(
            f"{model_dir}: no {RETRIEVER_CONFIG_FILE} (not a retriever run)"
        )
    extra = json.loads(config_file.read_text(encoding="utf-8"))
    if "temperature" in extra:  # written before the logit scale replaced the temperature
        extra["logit_scale"] = 1.0 / extra.pop("temperature")
        extra["learnable_logit_scale"] = extra.pop("learnable_temperature", False)
    model = encoder.DualEncoderModel(load_model_config(model_dir), **extra)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), model.abstract_params()
    )
    return model, checkpoints.restore_params(model_dir, step, abstract_params=abstract)


def is_classifier_run(path: PathLike) -> bool:
    """True when a run dir (or one of its `checkpoint_<step>` dirs) holds an NLI classifier."""
    path = pathlib.Path(path)
    return any((p / CLASSIFIER_CONFIG_FILE).is_file() for p in (path, path.parent))


def load_classifier(path: PathLike) -> tuple[nli_classifier.NLIClassifierModel, Any]:
    """(model, params) of a trained classifier run dir or `checkpoint_<step>` dir."""
    model_dir, step = checkpoints.resolve_checkpoint(path)
    config_path = pathlib.Path(model_dir) / CLASSIFIER_CONFIG_FILE
    if not config_path.is_file():
        raise errors.CheckpointError(f"{config_path}: missing (not an NLI classifier run)")
    options = json.loads(config_path.read_text(encoding="utf-8"))
    model = nli_classifier.NLIClassifierModel(
        load_model_config(model_dir),
        hidden_dim=int(options["hidden_dim"]),
        labels=tuple(options["labels"]),
        hypothesis_tokens=int(options["hypothesis_tokens"]),
        premise_tokens=int(options["premise_tokens"]),
    )
    abstract = model.abstract_params()
    return model, checkpoints.restore_params(model_dir, step, abstract_params=abstract)


@dataclasses.dataclass(frozen=True)
class LoadedT5:
    """A checkpoint opened for inference: the model, its params and the vocab it reads.

    Attributes:
      model: the `EncoderDecoderModel` built from the run's `model_config.json`.
      params: the restored params (host-local arrays on the default device).
      vocabulary: the seqio SentencePiece vocabulary (with its extra ids).
      model_dir: the run directory the checkpoint belongs to.
      step: the step that was loaded (the latest one when a run dir was given).
    """

    model: encoder_decoder.EncoderDecoderModel
    params: Any
    vocabulary: seqio.Vocabulary
    model_dir: pathlib.Path
    step: int


def load_pretrained(checkpoint: PathLike, vocab: PathLike) -> LoadedT5:
    """Loads a run dir (latest step) or `checkpoint_<step>` dir and its SentencePiece vocab.

    The one way to open a trained T5 with its vocab (callers hold the result as a
    `vertjax.generators.t5.T5Client`). The vocab is checked against the model's embedding table
    before the params are restored, so a wrong vocab is one `ConfigError` naming both paths
    instead of out-of-range token ids later.
    """
    model_dir, step = checkpoints.resolve_checkpoint(checkpoint)
    config = load_model_config(model_dir)
    vocabulary = vocab_lib.load_vocab(vocab)
    vocab_lib.check_fits_model(
        vocabulary, config.vocab_size, vocab_path=vocab, model=f"the model in {checkpoint}"
    )
    step_dir = model_dir / f"{checkpoints.STEP_PREFIX}_{step}"  # the step resolved above
    _, params = load_params(step_dir)
    return LoadedT5(
        model=encoder_decoder.EncoderDecoderModel(config),
        params=params,
        vocabulary=vocabulary,
        model_dir=model_dir,
        step=step,
    )
