"""A loaded vertjax T5 (checkpoint + vocab) and the text generator over it.

`T5Client` is the one way a caller holds a trained T5 (infer, instruction-following eval, the NLI
scorer, the answer generator, synthesis, rewriting, keywords): it checks the vocab against the
model once and turns texts into encoder batches — eos-terminated rows, truncated, 0-padded to a
power-of-two length bucket (few shapes, so few compilations) and to a fixed number of rows.
`T5Generator` decodes prompts with it (greedy, or sampling when temperature > 0).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vertjax import errors
from vertjax.generators import derive_seed
from vertjax.models import decoding

PathLike = str | os.PathLike
MIN_BUCKET = 8


def bucket_length(
    longest: int, *, min_length: int = MIN_BUCKET, max_length: int | None = None
) -> int:
    """The padded length of a batch whose longest row has `longest` tokens: the next power of
    two, at least `min_length`, at most `max_length` (rows are truncated to it beforehand)."""
    length = max(min_length, 1 << (max(longest, 1) - 1).bit_length())
    return length if max_length is None else min(max_length, length)


def pad_rows(
    rows: Sequence[Sequence[int]],
    *,
    batch_size: int,
    min_length: int = MIN_BUCKET,
    max_length: int | None = None,
) -> np.ndarray:
    """`[batch_size, bucket]` int32 token ids: `rows` in order, 0-padded (see `bucket_length`)."""
    if not 0 < len(rows) <= batch_size:
        raise errors.ConfigError(f"{len(rows)} rows do not fit a batch of {batch_size}")
    length = bucket_length(max(map(len, rows)), min_length=min_length, max_length=max_length)
    tokens = np.zeros((batch_size, length), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens


@dataclasses.dataclass(frozen=True)
class T5Client:
    """A model with its params and vocabulary; `name` says where they came from (`run@step`).

    The model is an `EncoderDecoderModel` or any model with a T5 `config` (e.g. the NLI
    classifier); the vocabulary must not have more ids than the model embeds.
    """

    model: Any
    params: Any
    vocabulary: Any
    name: str = "in-memory"

    def __post_init__(self) -> None:
        if self.vocabulary.vocab_size > self.model.config.vocab_size:
            raise errors.CheckpointError(
                f"the vocab has {self.vocabulary.vocab_size} ids but the model only "
                f"{self.model.config.vocab_size}: is this the vocab it was trained with?"
            )

    @classmethod
    def from_run_dir(cls, checkpoint: PathLike, vocab: PathLike) -> T5Client:
        """A run dir (latest step) or `checkpoint_<step>` dir and its SentencePiece vocab."""
        from vertjax.train import restore  # orbax: only when a checkpoint is opened

        loaded = restore.load_pretrained(checkpoint, vocab)
        return cls(
            model=loaded.model,
            params=loaded.params,
            vocabulary=loaded.vocabulary,
            name=f"{loaded.model_dir}@{loaded.step}",
        )

    @property
    def eos_id(self) -> int:
        return self.vocabulary.eos_id

    def encode(self, text: str, *, max_length: int) -> list[int]:
        """`text`'s ids truncated to `max_length - 1`, then EOS (T5 inputs)."""
        return list(self.vocabulary.encode(text))[: max_length - 1] + [self.eos_id]

    def encoder_batch(
        self,
        texts: Sequence[str],
        *,
        batch_size: int,
        max_length: int,
        min_length: int = MIN_BUCKET,
    ) -> np.ndarray:
        """`[batch_size, bucket]` encoder inputs of `texts` (see `pad_rows`)."""
        rows = [self.encode(t, max_length=max_length) for t in texts]
        return pad_rows(rows, batch_size=batch_size, min_length=min_length, max_length=max_length)

    def decode_batch(self, tokens: Any, **options: Any) -> decoding.Decoded:
        """`decoding.decode_batch` with this model and params (options: method, lengths, ...)."""
        return decoding.decode_batch(self.model, self.params, tokens, **options)


class T5Generator:
    """Decodes prompts with a vertjax T5 checkpoint (sampling when temperature > 0)."""

    name = "t5"

    def __init__(
        self,
        client: T5Client,
        *,
        batch_size: int = 8,
        max_input_length: int = 512,
        top_k: int = 0,
        top_p: float = 1.0,
    ):
        if batch_size < 1 or max_input_length < 2:
            raise errors.ConfigError("T5Generator needs batch_size >= 1 and max_input_length >= 2")
        self.client, self.model = client, client.name
        self.batch_size, self.max_input_length = batch_size, max_input_length
        self.top_k, self.top_p = top_k, top_p

    @classmethod
    def from_run_dir(
        cls, checkpoint_dir: PathLike, vocab_path: PathLike, **options: Any
    ) -> T5Generator:
        """A generator over a trained run (`options`: the constructor's keyword arguments)."""
        return cls(T5Client.from_run_dir(checkpoint_dir, vocab_path), **options)

    def generate(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        outputs = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            result = self.client.decode_batch(
                self.client.encoder_batch(
                    batch, batch_size=self.batch_size, max_length=self.max_input_length
                ),
                max_decode_length=max_tokens,
                method="sample" if temperature > 0 else "greedy",
                temperature=temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                seed=derive_seed(seed, start),
            )
            tokens = np.asarray(result.tokens)
            outputs += [
                self.client.vocabulary.decode(tokens[i].tolist()) for i in range(len(batch))
            ]
        return outputs
