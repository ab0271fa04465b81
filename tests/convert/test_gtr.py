"""sentence-transformers T5-encoder (GTR) import: parity with a torch reference on a tiny model."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from vertjax import errors
from vertjax.convert import gtr
from vertjax.train import restore

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _save_t5_encoder(directory: pathlib.Path, *, vocab_size: int) -> None:
    """A random 2-layer, d_model 16 `T5EncoderModel` (gated GELU) saved as safetensors."""
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=vocab_size,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_heads=2,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    transformers.T5EncoderModel(config).save_pretrained(directory, safe_serialization=True)


def _write_st_model(
    root: pathlib.Path, *, dense: bool = True, pooling: str = "mean", vocab_size: int = 64
) -> None:
    """The layout of the published GTR checkpoints (sentence-transformers < 6), written by hand."""
    from safetensors.torch import save_file

    _save_t5_encoder(root / "0_Transformer", vocab_size=vocab_size)
    modules = [{"idx": 0, "name": "0", "path": "0_Transformer", "type": "Transformer"}]
    (root / "1_Pooling").mkdir(parents=True)
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 16,
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_cls_token": pooling == "cls",
            }
        )
    )
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "Pooling"})
    if dense:
        (root / "2_Dense").mkdir()
        (root / "2_Dense" / "config.json").write_text(
            json.dumps(
                {
                    "in_features": 16,
                    "out_features": 12,
                    "bias": False,
                    "activation_function": "torch.nn.modules.linear.Identity",
                }
            )
        )
        save_file({"linear.weight": torch.randn(12, 16)}, root / "2_Dense" / "model.safetensors")
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "Dense"})
    (root / "3_Normalize").mkdir()
    modules.append({"idx": 3, "name": "3", "path": "3_Normalize", "type": "Normalize"})
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"]
    (root / "modules.json").write_text(json.dumps(modules))


def _reference(root: pathlib.Path, ids: np.ndarray) -> np.ndarray:
    """What sentence-transformers computes: mean over the mask, Dense, L2 normalisation."""
    from safetensors.torch import load_file

    model = transformers.T5EncoderModel.from_pretrained(root / "0_Transformer").eval()
    tokens = torch.tensor(ids)
    mask = (tokens > 0).float()
    with torch.no_grad():
        hidden = model(input_ids=tokens, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        dense = root / "2_Dense" / "model.safetensors"
        if dense.is_file():
            pooled = pooled @ load_file(dense)["linear.weight"].T
        out = torch.nn.functional.normalize(pooled, dim=-1)
    return out.numpy()


@pytest.mark.parametrize("dense", [True, False])
def test_imported_gtr_matches_the_torch_pipeline(tmp_path, dense):
    _write_st_model(tmp_path / "st", dense=dense)
    ids = np.array([[5, 9, 17, 3, 1, 0, 0], [7, 1, 0, 0, 0, 0, 0]], dtype=np.int32)
    model, params = gtr.from_sentence_transformers(tmp_path / "st")
    assert model.shared and model.projection_dim == (12 if dense else 16)
    got = np.asarray(model.encode(params, ids, kind="passage"))
    np.testing.assert_allclose(got, _reference(tmp_path / "st", ids), atol=2e-5)


def test_import_writes_a_loadable_retriever_run_dir(tmp_path):
    _write_st_model(tmp_path / "st")
    gtr.import_sentence_transformers(tmp_path / "st", tmp_path / "run")
    model, params = restore.load_dual_encoder(str(tmp_path / "run"))
    ids = np.array([[5, 9, 1, 0]], dtype=np.int32)
    np.testing.assert_allclose(
        np.asarray(model.encode(params, ids, kind="question")),
        _reference(tmp_path / "st", ids),
        atol=2e-5,
    )


def test_cls_pooling_is_refused(tmp_path):
    _write_st_model(tmp_path / "st", pooling="cls")
    with pytest.raises(errors.DataError, match="mean-pools"):
        gtr.from_sentence_transformers(tmp_path / "st")


def test_missing_normalize_and_bad_tensors_are_named(tmp_path):
    _write_st_model(tmp_path / "st")
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules[:-1]))
    with pytest.raises(errors.DataError, match="no Normalize module"):
        gtr.from_sentence_transformers(tmp_path / "st")
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "st" / "2_Dense" / "config.json").write_text(
        json.dumps({"in_features": 16, "out_features": 12, "bias": True})
    )
    with pytest.raises(errors.DataError, match="bias"):
        gtr.from_sentence_transformers(tmp_path / "st")


def _save_with_sentence_transformers(root: pathlib.Path, vocab: pathlib.Path, *, length: int):
    """A tiny GTR saved by sentence-transformers itself (its own, >= 6, directory layout)."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer import modules

    from vertjax.convert import hf_t5

    _save_t5_encoder(root / "hf", vocab_size=512)
    hf_t5.write_tokenizer(vocab, root / "hf")
    pipeline = [
        modules.Transformer(str(root / "hf"), max_seq_length=length),
        modules.Pooling(16, pooling_mode="mean"),
        modules.Dense(16, 12, bias=False, activation_function=torch.nn.Identity()),
        modules.Normalize(),
    ]
    model = st.SentenceTransformer(modules=pipeline, device="cpu")
    model.save(str(root / "st"))
    return model


def test_a_model_saved_by_sentence_transformers_encodes_texts_identically(tiny_vocab, tmp_path):
    from vertjax.data import vocab as vocab_lib
    from vertjax.retrieval import encode

    reference = _save_with_sentence_transformers(tmp_path, tiny_vocab, length=24)
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    assert (
        modules[0]["path"] == ""
        and "pooling_mode_mean_tokens"
        not in (tmp_path / "st" / "1_Pooling" / "config.json").read_text()
    )  # the new layout, not the one _write_st_model writes
    texts = [
        "The river flows north past the old mill.",
        "Short.",
        " ".join(["a long passage that sentence-transformers truncates"] * 8),
    ]
    model, params = gtr.from_sentence_transformers(tmp_path / "st")
    tokens = encode.tokenize(vocab_lib.load_vocab(tiny_vocab), texts, length=24)
    got = np.asarray(model.encode(params, tokens, kind="passage"))
    np.testing.assert_allclose(got, reference.encode(texts, convert_to_numpy=True), atol=2e-5)


def test_cli_imports_a_sentence_transformers_directory(tiny_vocab, tmp_path, capsys):
    from vertjax import cli

    reference = _save_with_sentence_transformers(tmp_path, tiny_vocab, length=16)
    args = ["convert", "--from_sentence_transformers", str(tmp_path / "st")]
    assert cli.main([*args, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "GTR retriever" in out and "embedding dim 12" in out and "no spiece.model" in out
    model, params = restore.load_dual_encoder(str(tmp_path / "run"))
    ids = np.array([reference.tokenizer("one two three").input_ids], dtype=np.int32)
    np.testing.assert_allclose(
        np.asarray(model.encode(params, ids, kind="question")),
        reference.encode(["one two three"], convert_to_numpy=True),
        atol=2e-5,
    )
    (tmp_path / "st" / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    assert cli.main([*args, "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1_Pooling/config.json" in err and "mean-pools" in err
    assert not (tmp_path / "bad").exists()


def test_the_published_layout_brings_its_sentencepiece_model(tiny_vocab, tmp_path, capsys):
    import shutil

    from vertjax import cli

    _write_st_model(tmp_path / "st", vocab_size=512)
    shutil.copy(tiny_vocab, tmp_path / "st" / "0_Transformer" / "spiece.model")
    args = ["convert", "--from_sentence_transformers", str(tmp_path / "st"), "--out"]
    assert cli.main([*args, str(tmp_path / "run")]) == 0
    assert f"vocab {tmp_path / 'run' / 'spm.model'}" in capsys.readouterr().out
    assert (tmp_path / "run" / "spm.model").read_bytes() == tiny_vocab.read_bytes()
    _write_st_model(tmp_path / "small", vocab_size=128)  # fewer rows than the vocab's 400 ids
    shutil.copy(tiny_vocab, tmp_path / "small" / "0_Transformer" / "spiece.model")
    args[2] = str(tmp_path / "small")
    assert cli.main([*args, str(tmp_path / "bad")]) == 2
    assert "ids but its T5 encoder only 128" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
