"""`vertjax train` with runs/nli.gin (label guard), runs/nli_classifier.gin and runs/nli_true.gin."""

from __future__ import annotations

from conftest import TINY_MODEL_GIN_BINDINGS, tiny_corpus_records

from vertjax import cli
from vertjax.consistency import nli, nli_data


def _nli_data(tmp_path):
    nli_data.write_splits(
        nli_data.synthesize(tiny_corpus_records(), seed=0, antonyms={"first": "last"}),
        tmp_path / "nli",
    )
    return tmp_path / "nli"


def _train_argv(gin_file, model_dir, vocab, *bindings):
    """`vertjax train` on the shrunk tiny T5 (vocab 400 = the tiny test vocab), 4 per batch."""
    return [
        "train",
        "--gin_file=models/t5_1_1/tiny.gin",
        f"--gin_file={gin_file}",
        f"--gin.MODEL_DIR={model_dir}",
        f"--gin.VOCAB={vocab}",
        "--gin.BATCH_SIZE=4",
        "--no_progress",
        *TINY_MODEL_GIN_BINDINGS,
        "--gin.VOCAB_SIZE=400",
        *bindings,
    ]


def _files(data):
    return {"train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl")}


def test_seq2seq_nli_training_refuses_labels_cut_by_the_targets_length(
    tmp_path, tiny_vocab, capsys
):
    argv = _train_argv(
        "runs/nli.gin",
        tmp_path / "run",
        tiny_vocab,
        f"--gin.TRAIN_FILES={_files(_nli_data(tmp_path))!r}",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 4}",
        "--gin.TRAIN_STEPS=2",
    )
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "would be cut" in err and "targets" in err
    assert not (tmp_path / "run" / "checkpoint_2").exists()


def test_classifier_gin_trains_and_scores(tmp_path, tiny_vocab):
    data = _nli_data(tmp_path)
    run = tmp_path / "clf"
    argv = _train_argv(
        "runs/nli_classifier.gin",
        run,
        tiny_vocab,
        f"--gin.NLI_FILES={[str(data / 'train.jsonl')]!r}",
        "--gin.TRAIN_STEPS=3",
        "--gin.HEAD_DIM=16",
    )
    assert cli.main(argv) == 0
    scorer = nli.Scorer.from_run_dir(run, tiny_vocab)
    assert scorer.is_classifier and scorer.max_premise_tokens == 120
    argv = ["eval", "consistency", "--checkpoint", str(run), "--vocab", str(tiny_vocab)]
    argv += ["--pairs", str(data / "test.jsonl"), "--out", str(tmp_path / "eval")]
    assert cli.main(argv) == 0
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_true_full_scale_gin_runs_shrunk(tmp_path, tiny_vocab):
    files = _files(_nli_data(tmp_path))
    argv = _train_argv(
        "runs/nli_true.gin",
        tmp_path / "true",
        tiny_vocab,
        f"--gin.ANLI_FILES={files!r}",
        f"--gin.MNLI_FILES={files!r}",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 16}",  # labels: 9 pieces here
        "--gin.TRAIN_STEPS=2",
        "--gin.EVAL_PERIOD=0",
        "--gin.MESH_SHAPE=(-1, 1)",
        "--gin.PARAMETER_PARTITIONING_DIMS=1",
    )
    assert cli.main(argv) == 0
    assert (tmp_path / "true" / "checkpoint_2").is_dir()
