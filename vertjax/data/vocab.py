"""SentencePiece vocabularies with T5 conventions, trained on vertjax corpora and loaded for seqio.

T5 conventions: pad=0, eos=1, unk=2, no bos, a unigram model, and 100 extra ids (the span-corruption
sentinels) appended on top by `seqio.SentencePieceVocabulary`, highest id = `<extra_id_0>`. A vocab
directory holds `spm.model`, `spm.vocab` (piece and score per line) and `vocab.json` (a summary,
written last so its presence means the directory is complete).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from vertjax import errors, io_utils

if TYPE_CHECKING:
    import seqio

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
DEFAULT_EXTRA_IDS = 100
MODEL_FILENAME = "spm.model"
VOCAB_FILENAME = "spm.vocab"
SUMMARY_FILENAME = "vocab.json"
# SentencePiece skips longer sentences; passages are split on newlines first, so this is rarely hit.
MAX_SENTENCE_BYTES = 16384

PathLike = str | os.PathLike


def iter_corpus_sentences(path: PathLike, *, text_key: str = "text") -> Iterator[str]:
    """Yields the non-blank lines of a corpus file: `.jsonl` records' `text_key` or `.txt` lines.

    Raises `DataError` naming the file (and line) for a missing or non-UTF-8 file or a record whose
    `text_key` is not a string.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.DataError("corpus file not found", path=path)
    if path.suffix == ".jsonl":
        for record in io_utils.read_jsonl(path, required_keys=(text_key,)):
            text = record[text_key]
            if not isinstance(text, str):
                raise errors.DataError(
                    f"record {record.get('id', '?')!r}: {text_key!r} is not a string", path=path
                )
            yield from (line.strip() for line in text.splitlines() if line.strip())
        return
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise errors.DataError("line is not valid UTF-8", path=path, line=line_no) from None
            if line:
                yield line


def _counted(sentences: Iterator[str], counts: dict[str, int], path: PathLike) -> Iterator[str]:
    """Passes sentences through, counting them per input file; an empty file is a `DataError`."""
    key = os.fspath(path)
    counts.setdefault(key, 0)
    for sentence in sentences:
        counts[key] += 1
        yield sentence
    if counts[key] == 0:
        raise errors.DataError("no text (empty corpus file)", path=path)


def _sample(sentences: Iterator[str], *, k: int, seed: int) -> list[str]:
    """Uniform seeded reservoir sample of at most `k` sentences (one pass, O(k) memory)."""
    rng = random.Random(seed)
    reservoir: list[str] = []
    for i, sentence in enumerate(sentences):
        if i < k:
            reservoir.append(sentence)
        else:
            j = rng.randint(0, i)
            if j < k:
                reservoir[j] = sentence
    return reservoir


def _piece_lines(model_bytes: bytes) -> str:
    """Renders the `.vocab` file SentencePiece writes beside a model: `piece<TAB>score` per line."""
    model = sentencepiece_model_pb2.ModelProto.FromString(model_bytes)
    return "".join(f"{p.piece}\t{p.score:g}\n" for p in model.pieces)


def train_vocab(
    *,
    inputs: Sequence[PathLike],
    out_dir: PathLike,
    vocab_size: int,
    max_sentences: int | None = None,
    text_key: str = "text",
    character_coverage: float = 0.9995,
    seed: int = 0,
    extra_ids: int = DEFAULT_EXTRA_IDS,
) -> dict[str, Any]:
    """Trains a T5-convention unigram SentencePiece model and writes it to `out_dir`.

    Args:
      inputs: corpus files, `.jsonl` (records with `text_key`) or plain text (one sentence a line).
      out_dir: directory receiving spm.model, spm.vocab and vocab.json (each written atomically).
      vocab_size: SentencePiece pieces, including pad/eos/unk; seqio adds `extra_ids` on top.
      max_sentences: if set, train on a seeded uniform sample of at most this many sentences.
      seed: seeds the sample and SentencePiece; same inputs + seed => same model.
      extra_ids: sentinel count recorded in the summary (what `load_vocab` should add).

    Returns:
      The summary written to vocab.json.
    """
    if not inputs:
        raise errors.ConfigError("vocab: give at least one --input corpus file")
    if vocab_size < 4:
        raise errors.ConfigError(f"vocab: vocab_size must be at least 4, got {vocab_size}")
    if max_sentences is not None and max_sentences < 1:
        raise errors.ConfigError(f"vocab: max_sentences must be positive, got {max_sentences}")
    for path in inputs:
        if not pathlib.Path(path).is_file():
            raise errors.DataError("corpus file not found", path=path)

    counts: dict[str, int] = {}
    input_error: list[errors.VertjaxError] = []

    def sentences() -> Iterator[str]:
        # SentencePiece turns exceptions raised in the iterator into RuntimeError: keep ours.
        try:
            for path in inputs:
                yield from _counted(iter_corpus_sentences(path, text_key=text_key), counts, path)
        except errors.VertjaxError as e:
            input_error.append(e)
            raise

    stream = sentences()
    if max_sentences:
        sample = _sample(stream, k=max_sentences, seed=seed)
        stream = iter(sample)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=stream,
            model_writer=model,
            minloglevel=2,  # errors only: the trainer's progress log is hundreds of lines
            model_type="unigram",
            vocab_size=vocab_size,
            pad_id=PAD_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            character_coverage=character_coverage,
            max_sentence_length=MAX_SENTENCE_BYTES,
            num_threads=min(4, os.cpu_count() or 1),
        )
    except RuntimeError as e:
        if input_error:
            raise input_error[0] from None
        first_line = str(e).strip().splitlines()[0]
        message = re.sub(r"^\w+: \S+\(\d+\) (\[.*?\] )?", "", first_line)
        raise errors.DataError(
            f"SentencePiece training failed: {message} (corpus too small for vocab_size "
            f"{vocab_size}? use a smaller vocab_size or more text)",
            path=", ".join(os.fspath(p) for p in inputs),
        ) from None
    model_bytes = model.getvalue()

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILENAME).unlink(missing_ok=True)  # a stale summary must not vouch for new files
    io_utils.atomic_write_bytes(out / MODEL_FILENAME, model_bytes)
    io_utils.atomic_write_text(out / VOCAB_FILENAME, _piece_lines(model_bytes))
    summary = {
        "model": MODEL_FILENAME,
        "model_type": "unigram",
        "sentencepiece_vocab_size": vocab_size,
        "extra_ids": extra_ids,
        "vocab_size": vocab_size + extra_ids,
        "pad_id": PAD_ID,
        "eos_id": EOS_ID,
        "unk_id": UNK_ID,
        "bos_id": -1,
        "seed": seed,
        "max_sentences": max_sentences,
        "character_coverage": character_coverage,
        "sentences_per_input": counts,
        "sentences_used": min(sum(counts.values()), max_sentences or sum(counts.values())),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
    }
    io_utils.atomic_write_json(out / SUMMARY_FILENAME, summary)
    return summary


def ensure_vocab(
    *,
    out_dir: PathLike,
    vocab_size: int,
    announce: Callable[[str], None] | None = None,
    **train_options: Any,
) -> dict[str, Any]:
    """The summary of the vocab in `out_dir` if a training finished there (`vocab.json` is written
    last), else `train_vocab(out_dir=..., vocab_size=..., **train_options)`; `announce` hears about
    a training before it starts."""
    summary = pathlib.Path(out_dir) / SUMMARY_FILENAME
    if summary.is_file():
        return json.loads(summary.read_text(encoding="utf-8"))
    if announce is not None:
        announce(f"training a {vocab_size}-piece SentencePiece vocabulary")
    return train_vocab(out_dir=out_dir, vocab_size=vocab_size, **train_options)


def resolve_model_path(path: PathLike) -> pathlib.Path:
    """Accepts a vocab directory (holding spm.model) or the model file itself."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / MODEL_FILENAME
    if not path.is_file():
        raise errors.DataError("SentencePiece model not found (run `vertjax vocab`)", path=path)
    return path


def load_vocab(path: PathLike, extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.SentencePieceVocabulary:
    """Loads a SentencePiece model as a seqio vocabulary with `extra_ids` sentinels on top.

    Raises `DataError` if the file is not a SentencePiece model or breaks the T5 conventions
    (pad=0, eos=1) that the feature converters and the model rely on.
    """
    import seqio  # TensorFlow: only loaded when a vocab is used, not to train one.

    model_path = resolve_model_path(path)
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model_path.read_bytes())
    except (RuntimeError, OSError) as e:
        raise errors.DataError(f"not a SentencePiece model ({e})", path=model_path) from None
    if processor.pad_id() != PAD_ID or processor.eos_id() != EOS_ID:
        raise errors.DataError(
            f"SentencePiece model has pad_id={processor.pad_id()}, eos_id={processor.eos_id()}; "
            f"T5 conventions need pad_id={PAD_ID}, eos_id={EOS_ID}",
            path=model_path,
        )
    return seqio.SentencePieceVocabulary(str(model_path), extra_ids=extra_ids)


def check_fits_model(
    vocabulary: seqio.Vocabulary, model_vocab_size: int, *, vocab_path: PathLike, model: str
) -> None:
    """`ConfigError` when the vocab has ids that the model's embedding table lacks (wrong vocab)."""
    if vocabulary.vocab_size > model_vocab_size:
        raise errors.ConfigError(
            f"the vocab {vocab_path} has {vocabulary.vocab_size} ids but {model} only "
            f"{model_vocab_size}: wrong vocab?"
        )
