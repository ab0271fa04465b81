"""seqio preprocessors: JSONL sources and the text-to-text objectives vertjax trains on.

- `jsonl_dataset_fn`: a seqio `dataset_fn(split, shuffle_files, seed)` over one JSONL file per split.
- `span_corruption`: T5's denoising objective (noise density 0.15, mean span 3, unique sentinels
  counting down from the top of the vocab), after concatenating documents and splitting them into
  segments sized so the corrupted inputs fill `sequence_length['inputs']` exactly, as in T5.
- `prefix_lm`: a uniformly random split point; inputs = the prefix, targets = the rest (T5's
  `prefix_lm`: segments of `inputs` length - 1, continuations trimmed to `targets` length).
- seq2seq `{inputs, targets}` needs only `rekey` + `seqio.preprocessors.tokenize` + EOS (tasks.py).

Randomness comes only from seqio's per-example stateless seeds (`map_over_dataset(num_seeds=...)`),
which seqio derives from the `seed` given to `get_dataset`: same seed and data, same examples.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from vertjax import errors, io_utils

NOISE_DENSITY = 0.15
MEAN_NOISE_SPAN_LENGTH = 3.0
# Documents concatenated before splitting into segments (T5's `reduce_concat_tokens` batch size).
CONCAT_DOCUMENTS = 128

DatasetFn = Callable[..., tf.data.Dataset]


# ------------------------------------------------------------------------------ JSONL sources


@functools.lru_cache(maxsize=16)
def _read_columns(
    path: str, keys: tuple[str, ...], _version: tuple[int, int, int]
) -> tuple[tuple[str, ...], ...]:
    """Reads the string columns `keys` of a JSONL file (cached per file version)."""
    columns: list[list[str]] = [[] for _ in keys]
    for n, record in enumerate(io_utils.read_jsonl(path, required_keys=keys), start=1):
        for key, column in zip(keys, columns, strict=True):
            value = record[key]
            if not isinstance(value, str):
                raise errors.DataError(
                    f"record {n} (id {record.get('id', '?')!r}): {key!r} must be a string, "
                    f"got {type(value).__name__}",
                    path=path,
                )
            column.append(value)
    if not columns[0]:
        raise errors.DataError("no records (empty file)", path=path)
    return tuple(tuple(column) for column in columns)


def read_jsonl_columns(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Returns `{key: values}` for the string fields `keys` of every record of a JSONL file.

    Raises `DataError` naming the file (and line) for a missing, empty, non-UTF-8 or malformed file,
    a record without a key, or a non-string value.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise errors.DataError("file not found", path=path)
    stat = path.stat()
    version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    columns = _read_columns(str(path.resolve()), tuple(keys), version)
    return dict(zip(keys, columns, strict=True))


def _jsonl_dataset(
    split: str,
    shuffle_files: bool,
    seed: int | None = None,
    *,
    split_files: Mapping[str, str],
    keys: tuple[str, ...],
) -> tf.data.Dataset:
    if split not in split_files:
        raise errors.ConfigError(f"no file for split {split!r} (have: {', '.join(split_files)})")
    columns = read_jsonl_columns(split_files[split], keys)
    ds = tf.data.Dataset.from_tensor_slices(
        {k: tf.constant(v, tf.string) for k, v in columns.items()}
    )
    if shuffle_files:
        # The whole file is in memory: shuffle all records, anew (and seeded) each epoch.
        ds = ds.shuffle(len(columns[keys[0]]), seed=seed, reshuffle_each_iteration=True)
    return ds


def jsonl_dataset_fn(*, split_files: Mapping[str, str], keys: Sequence[str]) -> DatasetFn:
    """A seqio `dataset_fn(split, shuffle_files, seed)` yielding `{key: tf.string}` per record.

    Args:
      split_files: split name -> JSONL path (one file per split).
      keys: the string fields to keep, e.g. ("text",) or ("inputs", "targets").

    Records are read once per file version and held in memory, which suits corpora up to a few
    GB; `shuffle_files=True` shuffles all records with `seed`.
    """
    return functools.partial(_jsonl_dataset, split_files=dict(split_files), keys=tuple(keys))


class JsonlDataSource(seqio.FunctionDataSource):
    """The seqio source of a JSONL task: `jsonl_dataset_fn` over one file per split.

    It shuffles whole files itself, so seqio's warning that an uncached FunctionDataSource
    shuffles poorly does not apply and is not logged. Sharding happens on examples (seqio).
    """

    def __init__(self, *, split_files: Mapping[str, str], keys: Sequence[str]):
        super().__init__(
            jsonl_dataset_fn(split_files=split_files, keys=keys), splits=list(split_files)
        )

    def get_dataset(
        self,
        split: str = "train",
        shuffle: bool = True,
        seed: int | None = None,
        shard_info: seqio.ShardInfo | None = None,
        **_: object,
    ) -> tf.data.Dataset:
        if shard_info and shard_info.num_shards > 1:
            raise ValueError("JsonlDataSource has one shard per split; seqio shards examples")
        return self._dataset_fn(split=split, shuffle_files=shuffle, seed=seed)


# ------------------------------------------------------------------------------ segmenting


def concat_and_split(
    dataset: tf.data.Dataset, *, segment_length: int, key: str = "targets"
) -> tf.data.Dataset:
    """Concatenates the token sequences of `key` over `CONCAT_DOCUMENTS` examples, then splits them
    into segments of `segment_length` tokens (the last one of each group may be shorter).

    Other features are dropped. Relies on id 0 (pad) never being a real token.
    """
    ds = dataset.map(lambda x: {key: x[key]}, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.padded_batch(CONCAT_DOCUMENTS, padded_shapes={key: [None]})

    def split(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        tokens = tf.reshape(batch[key], [-1])
        tokens = tf.boolean_mask(tokens, tf.not_equal(tokens, 0))
        frames = tf.signal.frame(tokens, segment_length, segment_length, pad_end=True, pad_value=0)
        return {key: frames}

    ds = ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return ds.map(
        lambda x: {key: tf.boolean_mask(x[key], tf.not_equal(x[key], 0))},
        num_parallel_calls=tf.data.AUTOTUNE,
    )


# ------------------------------------------------------------------------------ span corruption


def span_corruption_lengths(
    *,
    inputs_length: int,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tuple[int, int]:
    """The segment length whose corrupted inputs (+ sentinels + EOS) fill `inputs_length`.

    Returns:
      (tokens_length, targets_length): raw tokens per segment, and the targets length (noise
      tokens + sentinels + EOS) those segments produce. E.g. 512 -> (568, 114) at T5 defaults.
    """

    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise = round(tokens_length * noise_density)
        num_spans = round(num_noise / mean_noise_span_length)
        return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1

    if inputs_length < 2:
        raise errors.ConfigError(f"span corruption needs inputs length >= 2, got {inputs_length}")
    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    return tokens_length, lengths(tokens_length)[1]


def random_spans_noise_mask(
    length: tf.Tensor,
    *,
    seeds: Sequence[tf.Tensor],
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tf.Tensor:
    """A boolean mask of `length` with ~`noise_density` of it True, in alternating spans.

    As in T5: round(length * density) noise tokens (at least 1, at most length - 1) in
    round(noise / mean_span) spans (at least 1); the text starts with a non-noise span; span
    lengths are a uniformly random composition, drawn with two stateless seeds.
    """
    orig_length = length
    length = tf.maximum(length, 2)
    num_noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
    num_noise = tf.clip_by_value(num_noise, 1, length - 1)
    num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32)
    num_spans = tf.maximum(num_spans, 1)
    num_nonnoise = length - num_noise

    def segment_lengths(num_items: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Splits num_items into num_spans positive parts, uniformly at random."""
        first_in_segment = tf.cast(tf.range(num_items - 1) < num_spans - 1, tf.int32)
        first_in_segment = tf.pad(seqio.stateless_shuffle(first_in_segment, seed), [[1, 0]])
        segment_id = tf.cumsum(first_in_segment)
        return tf.math.segment_sum(tf.ones_like(segment_id), segment_id)

    noise_lengths = segment_lengths(num_noise, seeds[0])
    nonnoise_lengths = segment_lengths(num_nonnoise, seeds[1])
    interleaved = tf.reshape(tf.stack([nonnoise_lengths, noise_lengths], axis=1), [-1])
    span_starts = tf.cumsum(interleaved)[:-1]
    span_start_indicator = tf.math.unsorted_segment_sum(
        tf.ones_like(span_starts), span_starts, length
    )
    is_noise = tf.equal(tf.math.floormod(tf.cumsum(span_start_indicator), 2), 1)
    return is_noise[:orig_length]


def spans_to_sentinels(tokens: tf.Tensor, mask: tf.Tensor, *, vocab_size: int) -> tf.Tensor:
    """Replaces each run of masked tokens by one sentinel: vocab_size - 1, vocab_size - 2, ..."""
    previous_masked = tf.pad(mask[:-1], [[1, 0]])
    first_masked = tf.logical_and(mask, tf.logical_not(previous_masked))
    later_masked = tf.logical_and(mask, previous_masked)
    sentinels = vocab_size - tf.cumsum(tf.cast(first_masked, tokens.dtype))
    tokens = tf.where(first_masked, sentinels, tokens)
    return tf.boolean_mask(tokens, tf.logical_not(later_masked))


def _sentinel_vocab_size(output_features: Mapping[str, seqio.Feature]) -> int:
    vocabulary = output_features["targets"].vocabulary
    if vocabulary.extra_ids < 1:
        raise errors.ConfigError(
            "span corruption needs sentinel ids: load the vocab with extra_ids > 0"
        )
    return vocabulary.vocab_size


def span_corruption(
    dataset: tf.data.Dataset,
    sequence_length: Mapping[str, int] | None,
    output_features: Mapping[str, seqio.Feature],
    *,
    noise_density: float = NOISE_DENSITY,
    mean_noise_span_length: float = MEAN_NOISE_SPAN_LENGTH,
) -> tf.data.Dataset:
    """T5 span corruption of tokenized `targets` into `{inputs, targets}` (no EOS yet).

    Needs `sequence_length` (seqio passes the task feature lengths): segments are sized from the
    inputs length, and a targets length shorter than what they produce is a `ConfigError`
    (truncated targets could not be matched back to the inputs' sentinels).
    """
    if not sequence_length or "inputs" not in sequence_length or "targets" not in sequence_length:
        raise errors.ConfigError(
            "span corruption needs task feature lengths for inputs and targets"
        )
    tokens_length, targets_length = span_corruption_lengths(
        inputs_length=sequence_length["inputs"],
        noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length,
    )
    if targets_length > sequence_length["targets"]:
        raise errors.ConfigError(
            f"span corruption with inputs length {sequence_length['inputs']} makes targets of "
            f"{targets_length} tokens; set the targets length to at least {targets_length} "
            f"(got {sequence_length['targets']})"
        )
    vocab_size = _sentinel_vocab_size(output_features)

    @seqio.map_over_dataset(num_seeds=2)
    def corrupt(x: dict[str, tf.Tensor], seeds: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        tokens = x["targets"]
        mask = random_spans_noise_mask(
            tf.size(tokens),
            seeds=seeds,
            noise_density=noise_density,
            mean_noise_span_length=mean_noise_span_length,
        )
        return {
            "inputs": spans_to_sentinels(tokens, mask, vocab_size=vocab_size),
            "targets": spans_to_sentinels(tokens, tf.logical_not(mask), vocab_size=vocab_size),
        }

    ds = concat_and_split(dataset, segment_length=tokens_length)
    return corrupt(ds)


# ------------------------------------------------------------------------------ prefix LM


def prefix_lm(
    dataset: tf.data.Dataset, sequence_length: Mapping[str, int] | None
) -> tf.data.Dataset:
    """Prefix LM on tokenized `targets`: a uniform split point k in [1, n-1] of each segment gives
    inputs = tokens[:k], targets = tokens[k:] (no EOS yet).

    Segments hold `inputs` length - 1 tokens (room for EOS), so the prefix always fits; a longer
    continuation is trimmed to the targets length by `append_eos_after_trim`, as in T5.
    """
    if not sequence_length or sequence_length.get("inputs") is None:
        raise errors.ConfigError("prefix LM needs task feature lengths for inputs and targets")
    segment_length = sequence_length["inputs"] - 1
    if segment_length < 2:
        raise errors.ConfigError(
            f"prefix LM needs inputs length >= 3, got {sequence_length['inputs']}"
        )

    @seqio.map_over_dataset(num_seeds=1)
    def split(x: dict[str, tf.Tensor], seed: tf.Tensor) -> dict[str, tf.Tensor]:
        tokens = x["targets"]
        k = tf.random.stateless_uniform(
            [], seed=seed, minval=1, maxval=tf.size(tokens), dtype=tf.int32
        )
        return {"inputs": tokens[:k], "targets": tokens[k:]}

    ds = concat_and_split(dataset, segment_length=segment_length)
    ds = ds.filter(lambda x: tf.size(x["targets"]) >= 2)
    return split(ds)
