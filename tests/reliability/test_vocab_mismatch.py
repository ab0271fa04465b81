"""Issue 15 finding 8: a vocab that is not the model's must stop a command before it writes or
trains anything: `index build` with another vocab than the retriever's built silently, a too-large
vocab left `build.json` and `passages.jsonl` behind, and `train` with `VOCAB_SIZE` below the
vocab's size reached NaN at step 1 with a learning-rate hint."""

from __future__ import annotations

import shutil

import pytest
from conftest import TINY_MODEL_GIN_BINDINGS, make_retriever

from vertjax import cli, io_utils
from vertjax.data import vocab


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory):
    """A second, different SentencePiece model (120 pieces) over other text."""
    root = tmp_path_factory.mktemp("other_vocab")
    rows = [{"id": str(i), "text": f"zebra {i} quartz {i * 7} jukebox vexing"} for i in range(300)]
    io_utils.write_jsonl(root / "text.jsonl", rows)
    vocab.train_vocab(inputs=[root / "text.jsonl"], out_dir=root, vocab_size=60, seed=0)
    return root / vocab.MODEL_FILENAME


def _build(tmp_path, passages, retriever, vocab_path):
    out = tmp_path / "index"
    argv = ["index", "build", "--passages", str(passages), "--out", str(out)]
    argv += ["--retriever", str(retriever), "--vocab", str(vocab_path), "--method", "brute"]
    return cli.main([*argv, "--no_progress"]), out


@pytest.mark.parametrize("names_vocab_by", ["spm.model", "config.gin"])
def test_index_build_refuses_another_vocab_than_the_retrievers(
    tmp_path, tiny_corpus_jsonl, tiny_vocab, other_vocab, capsys, names_vocab_by
):
    retriever = make_retriever(tmp_path / "gtr")
    if names_vocab_by == "spm.model":  # a converted GTR keeps its vocab
        expected = shutil.copy(tiny_vocab, retriever / vocab.MODEL_FILENAME)
    else:  # a trained one names it in its operative config
        (retriever / "config.gin").write_text(f"VOCAB = {str(tiny_vocab)!r}\n", encoding="utf-8")
        expected = tiny_vocab
    status, out = _build(tmp_path, tiny_corpus_jsonl, retriever, other_vocab)
    err = capsys.readouterr().err
    assert status == 2 and "is not the vocab the retriever" in err
    assert f"pass --vocab {expected}" in err
    assert not out.exists()
    assert _build(tmp_path, tiny_corpus_jsonl, retriever, tiny_vocab)[0] == 0


def test_too_large_vocab_leaves_no_index_files(tmp_path, tiny_corpus_jsonl, tiny_vocab, capsys):
    retriever = make_retriever(tmp_path / "gtr", vocab_size=200)  # tiny_vocab has 400 ids
    status, out = _build(tmp_path, tiny_corpus_jsonl, retriever, tiny_vocab)
    assert status == 2 and "400 ids but the retriever only 200" in capsys.readouterr().err
    assert not out.exists()


def _train_argv(run, *, task: str, corpus, vocab, extra=()) -> list[str]:
    """`vertjax train` of the tiny model for 2 steps on `corpus`, tokenized with `vocab`."""
    return [
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        "--gin_file=runs/pretrain.gin",
        f"--gin.MODEL_DIR={run}",
        "--gin.TRAIN_STEPS=2",
        f"--gin.MIXTURE_OR_TASK_NAME={task}",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}",
        f"--gin.VOCAB={vocab}",
        f"--gin.TRAIN_FILES={ {'train': str(corpus)}!r}",
        "--gin.BATCH_SIZE=2",
        "--no_progress",
        *TINY_MODEL_GIN_BINDINGS,
        *extra,
    ]


def test_train_with_vocab_size_below_the_vocab_names_the_vocab(
    tmp_path, tiny_corpus_jsonl, tiny_vocab, capsys
):
    run = tmp_path / "run"
    # TINY_MODEL_GIN_BINDINGS: VOCAB_SIZE=180 < 400 ids
    argv = _train_argv(run, task="vocab_mismatch_sc", corpus=tiny_corpus_jsonl, vocab=tiny_vocab)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert str(tiny_vocab) in err and "VOCAB_SIZE" in err and "\n" not in err
    assert not list(run.glob("checkpoint_*"))


def test_warm_start_from_a_checkpoint_of_another_vocab_names_both(
    tmp_path, tiny_corpus_jsonl, tiny_vocab, other_vocab, capsys
):
    """Issue 14: warm-starting from a checkpoint trained with another vocabulary was accepted
    silently; it stops before anything is restored or written, naming both vocabularies."""
    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    (pretrained / "config.gin").write_text(f"VOCAB = {str(other_vocab)!r}\n", encoding="utf-8")
    run = tmp_path / "run"
    argv = _train_argv(
        run,
        task="warm_start_vocab_sc",
        corpus=tiny_corpus_jsonl,
        vocab=tiny_vocab,
        extra=(
            f"--gin.INITIAL_CHECKPOINT_PATH={pretrained}",
            "--gin.VOCAB_SIZE=400",  # the tiny vocab's ids fit
        ),
    )
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert str(other_vocab) in err and str(tiny_vocab) in err and "\n" not in err
    assert not list(run.glob("checkpoint_*"))
