"""Shared pytest fixtures: a tiny English passage corpus and a tiny SentencePiece vocab built on it.

Both are generated (seeded templates), never downloaded, and stable across runs and Python versions:
tests may rely on their sizes and ids but not on the exact wording.

- `tiny_corpus_records` (function): the 200 passage dicts `{id, doc_id, title, text}`.
- `tiny_corpus_jsonl` (function): those passages written to `tmp_path/passages.jsonl`; returns the path.
- `write_tiny_pack` (function): those passages as a built pack folder (train/validation/test splits).
- `tiny_vocab` (session): a T5-convention unigram SentencePiece model of `TINY_VOCAB_SIZE` pieces
  trained once per session on the corpus; returns the path of `spm.model` (load it for seqio with
  `vertjax.data.vocab.load_vocab(tiny_vocab)`, which adds 100 extra ids on top).

- `save_tiny_t5` (function): a randomly initialised 1+1-layer T5 saved as a run dir (for the tests
  of anything that loads a checkpoint; its size does not matter to them).
- `tiny_t5_config` (function): the 1+1-layer, d_model 16 `T5Config` most model tests use.
- `make_retriever` (function): a randomly initialised tiny dual encoder saved as a retriever run dir.

TensorFlow/seqio are imported only inside `tiny_vocab`, so tests that don't use it stay light.
"""

from __future__ import annotations

import pathlib
import random

import pytest

from vertjax import io_utils

TINY_CORPUS_PASSAGES = 200
TINY_VOCAB_SIZE = 300

_SUBJECTS = tuple(
    (
        "the database|a query planner|the index|our server|the table|a transaction|the cache|"
        "the log writer|a client|the scheduler|the parser|each worker|the replica|"
        "a checkpoint|the optimizer|the tokenizer|the model|a user|the vacuum process|"
        "a background thread|the network layer|every partition|the storage engine|"
        "a careful engineer|the monitoring daemon|the compiler"
    ).split("|")
)
_VERBS = tuple(
    (
        "reads|writes|updates|scans|locks|copies|checks|returns|stores|sorts|merges|splits|"
        "loads|saves|rejects|accepts|compresses|encodes|validates|truncates|allocates|"
        "flushes|rebuilds|estimates|publishes"
    ).split("|")
)
_OBJECTS = tuple(
    (
        "every row|the page|a small file|the whole column|two records|the next block|"
        "a long list|the old value|each request|the final answer|a new segment|"
        "the primary key|the wal record|a sorted run|the hash table|three passages|"
        "the foreign key|a frozen snapshot|the bloom filter|its statistics|the configuration|"
        "a temporary buffer|the gradient|the vocabulary"
    ).split("|")
)
_TAILS = tuple(
    (
        "before the commit|after a restart|when memory is low|in a single pass|"
        "without any delay|during the night|at the same time|for every shard|"
        "under heavy load|once per second|if the disk is full|with great care|"
        "because the timeout expired|unless autocommit is disabled|whenever possible|"
        "although nobody asked|while the backup runs|so that readers never block"
    ).split("|")
)
_ADVERBS = tuple(
    (
        "quickly|silently|eventually|rarely|lazily|eagerly|safely|partially|concurrently|"
        "deterministically|incrementally|optimistically|periodically|reluctantly|"
        "transparently|asynchronously|repeatedly|immediately"
    ).split("|")
)
_TITLES = ("Storage", "Queries", "Recovery", "Indexes", "Replication", "Training", "Tokens")


# gin bindings that shrink models/t5_1_1/tiny.gin for CLI tests (vocab 180 = 80 pieces + 100 extra ids).
TINY_MODEL_GIN_BINDINGS = (
    "--gin.VOCAB_SIZE=180",
    "--gin.t5.T5Config.emb_dim=32",
    "--gin.t5.T5Config.num_heads=2",
    "--gin.t5.T5Config.head_dim=16",
    "--gin.t5.T5Config.mlp_dim=64",
    "--gin.t5.T5Config.num_encoder_layers=2",
    "--gin.t5.T5Config.num_decoder_layers=2",
)


def tiny_corpus_records(n: int = TINY_CORPUS_PASSAGES, seed: int = 0) -> list[dict[str, str]]:
    """Returns `n` short passages `{id, doc_id, title, text}` of 3-5 templated sentences each."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        sentences = []
        for _ in range(rng.randint(3, 5)):
            words = (
                rng.choice(_SUBJECTS),
                rng.choice(_ADVERBS),
                rng.choice(_VERBS),
                rng.choice(_OBJECTS),
            )
            sentence = " ".join(words) + " " + rng.choice(_TAILS)
            if rng.random() < 0.3:
                sentence += f" in {rng.randint(2, 999)} ms"
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
        doc = i // 4
        records.append(
            {
                "id": f"doc{doc}-p{i % 4}",
                "doc_id": f"doc{doc}",
                "title": f"{_TITLES[doc % len(_TITLES)]} {doc}",
                "text": " ".join(sentences),
            }
        )
    return records


@pytest.fixture(name="tiny_corpus_records")
def tiny_corpus_records_fixture() -> list[dict[str, str]]:
    return tiny_corpus_records()


def write_tiny_pack(root: pathlib.Path) -> pathlib.Path:
    """A built-pack folder (manifest + splits) over the 200 tiny passages: docs 0-39 train,
    40-44 validation, 45-49 test."""
    split = {"train": [], "validation": [], "test": []}
    for r in tiny_corpus_records():
        doc = int(r["doc_id"][3:])
        split["train" if doc < 40 else "validation" if doc < 45 else "test"].append(r)
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in split.items():
        io_utils.write_jsonl(root / f"{name}.jsonl", rows)
    io_utils.atomic_write_json(root / "manifest.json", {"pack": "tiny"})
    return root


@pytest.fixture
def tiny_corpus_jsonl(tmp_path: pathlib.Path) -> pathlib.Path:
    """`tmp_path/passages.jsonl` holding the 200 tiny passages."""
    path = tmp_path / "passages.jsonl"
    io_utils.write_jsonl(path, tiny_corpus_records())
    return path


@pytest.fixture(scope="session")
def tiny_vocab(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """Path of a 300-piece T5-convention SentencePiece model trained on the tiny corpus."""
    from vertjax.data import vocab

    root = tmp_path_factory.mktemp("tiny_vocab")
    corpus = root / "passages.jsonl"
    io_utils.write_jsonl(corpus, tiny_corpus_records())
    vocab.train_vocab(inputs=[corpus], out_dir=root, vocab_size=TINY_VOCAB_SIZE, seed=0)
    return root / vocab.MODEL_FILENAME


def tiny_t5_config(vocab_size: int):
    """A 1+1-layer T5 with d_model 16 (2 heads x 8, MLP 32): fast, and big enough to learn a little."""
    from vertjax.models import t5

    return t5.T5Config(
        vocab_size=vocab_size,
        emb_dim=16,
        num_heads=2,
        head_dim=8,
        mlp_dim=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
    )


def save_tiny_t5(run_dir: pathlib.Path, *, vocab_size: int, step: int = 0, seed: int = 0):
    """Saves a random `tiny_t5_config` T5 at `run_dir/checkpoint_<step>`; returns (model, params)."""
    import jax

    from vertjax.models import encoder_decoder
    from vertjax.train import restore

    model = encoder_decoder.EncoderDecoderModel(tiny_t5_config(vocab_size))
    params = model.init_params(jax.random.key(seed))
    restore.save_params(run_dir, config=model.config, params=params, step=step)
    return model, params


def make_retriever(
    run_dir: pathlib.Path, *, vocab_size: int = 400, projection_dim: int = 16, shared: bool = True
) -> pathlib.Path:
    """A random dual encoder over a `tiny_t5_config` encoder, saved as a retriever run dir."""
    import jax

    from vertjax.models import encoder
    from vertjax.train import restore

    config = tiny_t5_config(vocab_size)
    model = encoder.DualEncoderModel(config, projection_dim=projection_dim, shared=shared)
    restore.save_params(run_dir, config=config, params=model.init_params(jax.random.key(0)))
    restore.save_config(run_dir, model)
    return run_dir
