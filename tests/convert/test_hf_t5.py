"""HF transformers T5 ↔ vertjax conversion: logit parity with the torch model, exact round trips,
the `vertjax convert` CLI and its errors.

Tiny random HF T5s are built with transformers 5.x (torch, CPU) in a temporary directory; nothing is
downloaded. Every weight that HF initialises to a constant (the layer norms) is randomised, so a
swapped or missing mapping changes the logits.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from vertjax import cli, errors
from vertjax.convert import hf_t5
from vertjax.models import layers, scan_layout, t5
from vertjax.train import restore

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB = 96
# name → (feed_forward_proj, tied, num_buckets, max_distance)
VARIANTS = {
    "v1_1_gated_gelu_untied": ("gated-gelu", False, 32, 128),
    "t5_relu_tied": ("relu", True, 8, 20),
    "gated_silu_untied": ("gated-silu", False, 16, 32),
    "gelu_exact_tied": ("gelu", True, 32, 64),
}


def make_hf_t5(
    out_dir: pathlib.Path,
    *,
    feed_forward_proj: str,
    tied: bool,
    num_buckets: int = 32,
    max_distance: int = 128,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """Saves a random tiny `T5ForConditionalGeneration` (2+2 layers) to `out_dir`; returns it."""
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=16,
        d_kv=4,
        d_ff=24,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=num_buckets,
        relative_attention_max_distance=max_distance,
        feed_forward_proj=feed_forward_proj,
        tie_word_embeddings=tied,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = transformers.T5ForConditionalGeneration(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.uniform_(0.5, 1.5)
    if not tied:  # transformers 5.x ties at construction even with tie_word_embeddings=False
        model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 16))
        model.config.tie_word_embeddings = False
    model.to(dtype).save_pretrained(out_dir)
    return model.float().eval()


def padded_batch(
    lengths: list[tuple[int, int]], *, max_len: tuple[int, int], seed: int = 0
) -> dict[str, np.ndarray]:
    """Random tokens (ids ≥ 2) padded with 0; decoder inputs are the shifted targets."""
    rng = np.random.default_rng(seed)
    enc = rng.integers(2, VOCAB, (len(lengths), max_len[0]))
    targets = rng.integers(2, VOCAB, (len(lengths), max_len[1]))
    for row, (enc_len, dec_len) in enumerate(lengths):
        enc[row, enc_len:] = 0
        targets[row, dec_len:] = 0
    dec_in = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": enc,
        "decoder_input_tokens": dec_in,
        "decoder_target_tokens": targets,
    }


def hf_logits(model: torch.nn.Module, batch: dict[str, np.ndarray]) -> np.ndarray:
    enc, targets = batch["encoder_input_tokens"], batch["decoder_target_tokens"]
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(enc),
            attention_mask=torch.tensor(enc > 0, dtype=torch.long),
            decoder_input_ids=torch.tensor(batch["decoder_input_tokens"]),
            decoder_attention_mask=torch.tensor(targets > 0, dtype=torch.long),
        )
    return out.logits.numpy()


def vertjax_logits(config: t5.T5Config, params, batch: dict[str, np.ndarray]) -> np.ndarray:
    inputs = {k: jnp.asarray(v) for k, v in batch.items()}
    apply = jax.jit(functools.partial(t5.Transformer(config).apply, enable_dropout=False))
    return np.asarray(apply({"params": params}, **inputs))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def hf_model(request, tmp_path_factory) -> tuple[pathlib.Path, torch.nn.Module, str]:
    proj, tied, buckets, distance = VARIANTS[request.param]
    path = tmp_path_factory.mktemp(request.param)
    model = make_hf_t5(
        path, feed_forward_proj=proj, tied=tied, num_buckets=buckets, max_distance=distance
    )
    return path, model, request.param


@pytest.fixture(scope="module")
def v11_dir(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("v11")
    make_hf_t5(path, feed_forward_proj="gated-gelu", tied=False, num_buckets=8, max_distance=20)
    return path


def test_logits_match_hf_on_padded_batch(hf_model):
    path, model, name = hf_model
    proj, tied, _, max_distance = VARIANTS[name]
    config, params = hf_t5.from_hf(path)
    assert config.logits_via_embedding == tied
    assert config.mlp_activations == hf_t5.parse_feed_forward_proj(proj)
    assert (config.relative_attention_max_distance, config.emb_dim) == (max_distance, 16)
    # Lengths beyond max_distance exercise the log-spaced and clamped relative-position buckets.
    long = max_distance + 22
    batch = padded_batch(
        [(long, long - 2), (long - 30, 9), (5, long - 2)], max_len=(long, long - 2)
    )
    want, got = hf_logits(model, batch), vertjax_logits(config, params, batch)
    valid = batch["decoder_target_tokens"] > 0
    assert got.shape == want.shape == (3, long - 2, VOCAB)
    assert np.abs(want).max() > 1.0  # not a degenerate model
    assert np.abs(got - want)[valid].max() <= 1e-4


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize(("num_buckets", "max_distance"), [(32, 128), (8, 20), (16, 17), (6, 9)])
def test_relative_position_buckets_match_hf(bidirectional, num_buckets, max_distance):
    relative = np.arange(-400, 400, dtype=np.int32)
    want = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.tensor(relative),
        bidirectional=bidirectional,
        num_buckets=num_buckets,
        max_distance=max_distance,
    ).numpy()
    got = layers.relative_position_bucket(
        relative, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    np.testing.assert_array_equal(got, want)


def _tensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    return load_file(path / hf_t5.WEIGHTS_FILE)


def _assert_byte_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


def test_round_trip_is_exact_and_loads_in_transformers(hf_model, tmp_path):
    path, model, _ = hf_model
    config, params = hf_t5.from_hf(path)
    hf_t5.to_hf(config, params, tmp_path)
    _assert_byte_equal(_tensors(path), _tensors(tmp_path))
    original = json.loads((path / hf_t5.CONFIG_FILE).read_text())
    written = json.loads((tmp_path / hf_t5.CONFIG_FILE).read_text())
    for key in ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads"):
        assert written[key] == original[key], key
    assert hf_t5.config_from_hf(written) == config

    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert reloaded.config.scale_decoder_outputs == config.logits_via_embedding
    batch = padded_batch([(12, 7), (5, 9)], max_len=(12, 9))
    np.testing.assert_array_equal(hf_logits(reloaded, batch), hf_logits(model, batch))


def test_sharded_checkpoint(v11_dir, tmp_path):
    model = transformers.T5ForConditionalGeneration.from_pretrained(v11_dir)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / hf_t5.INDEX_FILE).is_file() and not (tmp_path / hf_t5.WEIGHTS_FILE).exists()
    want_config, want = hf_t5.from_hf(v11_dir)
    config, params = hf_t5.from_hf(tmp_path)
    assert config == want_config
    for a, b in zip(_flat(params), _flat(want), strict=True):
        np.testing.assert_array_equal(a, b)


def _flat(tree) -> list:
    return jax.tree.leaves(tree)


def test_bfloat16_weights_are_upcast_exactly(tmp_path):
    make_hf_t5(tmp_path, feed_forward_proj="gated-gelu", tied=False, dtype=torch.bfloat16)
    _, params = hf_t5.from_hf(tmp_path)
    shared = _tensors(tmp_path)["shared.weight"]
    assert str(shared.dtype) == "bfloat16"
    embedding = params["token_embedder"]["embedding"]
    assert embedding.dtype == np.float32
    np.testing.assert_array_equal(embedding, shared.astype(np.float32))


def test_cli_round_trip(v11_dir, tmp_path, capsys):
    vj, hf_out = tmp_path / "vj", tmp_path / "hf"
    assert cli.main(["convert", "--from_hf", str(v11_dir), "--out", str(vj)]) == 0
    assert "untied logits" in capsys.readouterr().out
    config, params = restore.load_params(vj)
    assert config == hf_t5.from_hf(v11_dir)[0]
    assert cli.main(["convert", "--to_hf", "--checkpoint", str(vj), "--out", str(hf_out)]) == 0
    _assert_byte_equal(_tensors(v11_dir), _tensors(hf_out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "vj"]  # no temp dirs left


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_tensors(path: pathlib.Path, edit) -> None:
    tensors = _tensors(path)
    edit(tensors)
    save_file(tensors, path / hf_t5.WEIGHTS_FILE, metadata={"format": "pt"})


def _rewrite_config(path: pathlib.Path, **changes) -> None:
    config = json.loads((path / hf_t5.CONFIG_FILE).read_text())
    config.update(changes)
    (path / hf_t5.CONFIG_FILE).write_text(json.dumps(config))


def test_missing_files(v11_dir, tmp_path):
    no_config = _copy(v11_dir, tmp_path / "no_config")
    (no_config / hf_t5.CONFIG_FILE).unlink()
    with pytest.raises(errors.DataError, match="no config.json"):
        hf_t5.from_hf(no_config)
    no_weights = _copy(v11_dir, tmp_path / "no_weights")
    (no_weights / hf_t5.WEIGHTS_FILE).unlink()
    with pytest.raises(errors.DataError, match="no model.safetensors"):
        hf_t5.from_hf(no_weights)
    with pytest.raises(errors.DataError, match="not found"):
        hf_t5.from_hf(tmp_path / "absent")


def test_corrupt_safetensors(v11_dir, tmp_path):
    path = _copy(v11_dir, tmp_path / "m")
    (path / hf_t5.WEIGHTS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(errors.DataError, match="model.safetensors: cannot read safetensors"):
        hf_t5.from_hf(path)


def test_missing_shard(v11_dir, tmp_path):
    model = transformers.T5ForConditionalGeneration.from_pretrained(v11_dir)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(errors.DataError, match=f"{shard.name}: shard listed"):
        hf_t5.from_hf(tmp_path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model_type": "bart", "architectures": ["BartForConditionalGeneration"]}, "not a T5"),
        ({"architectures": ["T5EncoderModel"]}, "not a T5ForConditionalGeneration"),
        ({"feed_forward_proj": "gated-tanh"}, "activation 'tanh' not supported"),
        ({"feed_forward_proj": "fancy-gelu"}, "not 'ACT' or 'gated-ACT'"),
        ({"d_model": "16"}, "d_model='16' is not a positive integer"),
        ({"dropout_rate": "x"}, "dropout_rate='x' is not a non-negative number"),
    ],
)
def test_bad_config(v11_dir, tmp_path, changes, match):
    path = _copy(v11_dir, tmp_path / "m")
    _rewrite_config(path, **changes)
    with pytest.raises(errors.DataError, match=match):
        hf_t5.from_hf(path)


def test_missing_config_key(v11_dir, tmp_path):
    path = _copy(v11_dir, tmp_path / "m")
    config = json.loads((path / hf_t5.CONFIG_FILE).read_text())
    del config["d_kv"]
    (path / hf_t5.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(errors.DataError, match=r"missing config keys \['d_kv'\]"):
        hf_t5.from_hf(path)


def _drop(name: str):
    return lambda tensors: tensors.pop(name)


def _add(name: str):
    return lambda tensors: tensors.update({name: np.zeros(16, np.float32)})


def _reshape(name: str):
    return lambda tensors: tensors.update({name: tensors[name][:, :8].copy()})


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_drop("lm_head.weight"), r"missing \['lm_head.weight'\]"),
        (
            _drop("decoder.block.1.layer.1.EncDecAttention.k.weight"),
            r"missing \['decoder.block.1.layer.1.EncDecAttention.k.weight'\]",
        ),
        (
            _add("encoder.block.2.layer.0.layer_norm.weight"),
            r"unexpected \['encoder.block.2.layer.0.layer_norm.weight'\]",
        ),
        (
            _reshape("encoder.block.0.layer.1.DenseReluDense.wo.weight"),
            r"'encoder.block.0.layer.1.DenseReluDense.wo.weight' has shape \(16, 8\)",
        ),
        (
            lambda t: t.update({"encoder.embed_tokens.weight": t["shared.weight"] + 1}),
            "'encoder.embed_tokens.weight' differs from shared.weight",
        ),
    ],
)
def test_bad_tensors(v11_dir, tmp_path, edit, match):
    path = _copy(v11_dir, tmp_path / "m")
    _rewrite_tensors(path, edit)
    with pytest.raises(errors.DataError, match=match):
        hf_t5.from_hf(path)


def test_optional_copies_and_ignored_tensor_are_accepted(v11_dir, tmp_path):
    path = _copy(v11_dir, tmp_path / "m")
    ignored = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"

    def add_copies(tensors):
        tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"].copy()
        tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"].copy()
        tensors[ignored] = np.zeros((8, 4), np.float32)

    _rewrite_tensors(path, add_copies)
    _, params = hf_t5.from_hf(path)
    _, want = hf_t5.from_hf(v11_dir)
    for a, b in zip(_flat(params), _flat(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_untied_head_with_tied_scaling_is_rejected(v11_dir, tmp_path):
    path = _copy(v11_dir, tmp_path / "m")
    _rewrite_config(path, tie_word_embeddings=True, scale_decoder_outputs=True)
    with pytest.raises(errors.DataError, match="'lm_head.weight' differs from shared.weight"):
        hf_t5.from_hf(path)


@pytest.mark.parametrize(
    ("proj", "activations"),
    [
        ("gated-gelu", ("gelu", "linear")),
        ("gated-gelu_new", ("gelu", "linear")),
        ("relu", ("relu",)),
        ("gated-silu", ("silu", "linear")),
        ("gelu", ("gelu_exact",)),
        ("gated-relu", ("relu", "linear")),
        ("swish", ("silu",)),
    ],
)
def test_feed_forward_proj_parsing(proj, activations):
    assert hf_t5.parse_feed_forward_proj(proj) == activations
    canonical = hf_t5.feed_forward_proj(activations)
    assert hf_t5.parse_feed_forward_proj(canonical) == activations
    # transformers resolves the canonical name to the activation vertjax uses
    hf_activation = transformers.T5Config(feed_forward_proj=canonical).dense_act_fn
    assert hf_t5.parse_feed_forward_proj(hf_activation)[0] == activations[0]


def test_to_hf_splits_scanned_params_into_hf_blocks(v11_dir, tmp_path):
    """A `scan_layers` checkpoint exports the same tensors as the unscanned one."""
    config, params = hf_t5.from_hf(v11_dir)
    hf_t5.to_hf(config, params, tmp_path / "plain")
    scanned = dataclasses.replace(config, scan_layers=True)
    hf_t5.to_hf(scanned, scan_layout.to_scanned(params), tmp_path / "scanned")
    _assert_byte_equal(_tensors(tmp_path / "plain"), _tensors(tmp_path / "scanned"))


def test_to_hf_rejects_params_that_do_not_match_config(v11_dir, tmp_path):
    config, params = hf_t5.from_hf(v11_dir)
    del params["decoder"]["logits_dense"]
    with pytest.raises(errors.CheckpointError, match="missing \\['decoder/logits_dense/kernel'\\]"):
        hf_t5.to_hf(config, params, tmp_path)


def test_cli_errors(v11_dir, tmp_path, capsys):
    out = tmp_path / "out"
    bad = _copy(v11_dir, tmp_path / "bad")
    _rewrite_tensors(bad, _drop("shared.weight"))
    assert cli.main(["convert", "--from_hf", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing ['shared.weight']" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]  # nothing half-written
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert cli.main(["convert", "--from_hf", str(v11_dir), "--out", str(out)]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert cli.main(["convert", "--to_hf", "--out", str(tmp_path / "o2")]) == 2
    assert "--to_hf needs --checkpoint" in capsys.readouterr().err


def test_written_tokenizer_tokenizes_like_the_vocab(tiny_vocab, tmp_path):
    from vertjax.data import vocab as vocab_lib

    hf_t5.write_tokenizer(tiny_vocab, tmp_path / "tok")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")
    vocabulary = vocab_lib.load_vocab(tiny_vocab)
    for text in ("The river flows north.", "a b  c", "Zebra crossings; 42 lanes!"):
        assert tokenizer(text).input_ids == vocabulary.encode(text) + [vocabulary.eos_id]
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    assert len(tokenizer) == vocabulary.vocab_size
    assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == vocabulary.vocab_size - 1


def test_cli_to_hf_with_vocab_writes_a_checked_tokenizer(tiny_vocab, tmp_path, capsys):
    from vertjax.models import encoder_decoder

    def save(vocab_size: int) -> pathlib.Path:
        model = encoder_decoder.EncoderDecoderModel(t5.tiny_config(vocab_size))
        params = model.init_params(jax.random.PRNGKey(0))
        run_dir = tmp_path / f"vj{vocab_size}"
        restore.save_params(run_dir, config=model.config, params=params)
        return run_dir

    args = ["convert", "--to_hf", "--vocab", str(tiny_vocab), "--checkpoint"]
    assert cli.main([*args, str(save(512)), "--out", str(tmp_path / "hf")]) == 0
    assert capsys.readouterr().out.rstrip().endswith(", tokenizer")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf")
    assert len(tokenizer) <= model.config.vocab_size == 512
    # A vocab with more ids than the model's embedding is refused and nothing is written.
    assert cli.main([*args, str(save(128)), "--out", str(tmp_path / "small")]) == 2
    assert "ids but --checkpoint only 128" in capsys.readouterr().err
    assert not (tmp_path / "small").exists()
    assert (
        cli.main(
            [
                "convert",
                "--from_hf",
                str(tmp_path / "hf"),
                "--vocab",
                str(tiny_vocab),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "--vocab goes with --to_hf" in capsys.readouterr().err
