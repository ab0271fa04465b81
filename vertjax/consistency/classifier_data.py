"""Batches of labelled NLI pairs for the T5-encoder NLI classifier (`models.nli_classifier`).

Hypothesis and premise are tokenized separately (each ends in EOS, 0-padded), the label is an index
into the classifier's label set. Batches are a pure function of (seed, batch index), so a resumed
run reads exactly the batches it would have read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.consistency import nli_data

PathLike = str | os.PathLike


def tokenize(vocabulary: Any, texts: Sequence[str], *, length: int) -> np.ndarray:
    """`[len(texts), length]` int32 ids, each cut to `length - 1` pieces plus EOS, 0-padded."""
    out = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        ids = list(vocabulary.encode(text))[: length - 1] + [vocabulary.eos_id]
        out[i, : len(ids)] = ids
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class NLIPairsDataSource:
    """`{hypothesis_tokens [b, lh], premise_tokens [b, lp], labels [b]}` from NLI JSONL files.

    Attributes:
      files: JSONL files of `{premise, hypothesis, label}` (`vertjax consistency train-data`).
      vocab: the SentencePiece model (or its dir) shared with the classifier's encoder.
      labels: the classifier's label set; records' 3-way labels map onto it (binary sets map
        entailment to the first label, the rest to the second).
    """

    files: Sequence[PathLike]
    vocab: PathLike
    batch_size: int
    hypothesis_length: int = 48
    premise_length: int = 128
    labels: Sequence[str] = nli_data.NLI_LABELS
    seed: int = 0

    @functools.cached_property
    def _vocab(self) -> Any:
        from vertjax.data import vocab as vocab_lib

        return vocab_lib.load_vocab(self.vocab)

    @functools.cached_property
    def _records(self) -> tuple[list[str], list[str], np.ndarray]:
        labels = tuple(self.labels)
        hypotheses, premises, targets = [], [], []
        for path in self.files:
            for line, record in enumerate(
                io_utils.read_jsonl(path, required_keys=("premise", "hypothesis", "label")),
                start=1,
            ):
                label = nli_data.normalize_label(record["label"], path=path, line=line)
                if label not in labels:
                    label = nli_data.to_binary(label)
                if label not in labels:
                    raise errors.DataError(
                        f"label {label!r} is not one of the classifier's {labels}",
                        path=path,
                        line=line,
                    )
                hypotheses.append(str(record["hypothesis"]))
                premises.append(str(record["premise"]))
                targets.append(labels.index(label))
        if not targets:
            raise errors.DataError("no NLI records", path=self.files[0] if self.files else None)
        return hypotheses, premises, np.asarray(targets, np.int32)

    def _rows(self, index: int) -> np.ndarray:
        """The global batch `index`: consecutive rows of a per-epoch seeded permutation."""
        n = len(self._records[2])
        positions = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        rows = np.empty(self.batch_size, np.int64)
        for epoch in np.unique(positions // n):
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(n)
            here = positions // n == epoch
            rows[here] = order[positions[here] % n]
        return rows

    def iterator(
        self, *, start_batch: int = 0, shard_id: int = 0, num_shards: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's slice of global batches `start_batch, start_batch + 1, ...` (endless)."""
        if self.batch_size % num_shards:
            raise errors.ConfigError(
                f"batch_size {self.batch_size} is not divisible by {num_shards} processes"
            )
        hypotheses, premises, targets = self._records
        local = self.batch_size // num_shards
        index = start_batch
        while True:
            rows = self._rows(index)[shard_id * local : (shard_id + 1) * local]
            yield {
                "hypothesis_tokens": tokenize(
                    self._vocab, [hypotheses[r] for r in rows], length=self.hypothesis_length
                ),
                "premise_tokens": tokenize(
                    self._vocab, [premises[r] for r in rows], length=self.premise_length
                ),
                "labels": targets[rows],
            }
            index += 1
