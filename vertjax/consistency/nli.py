"""The T5 NLI factual-consistency scorer (TRUE): P(entailment) of a hypothesis given a premise.

The model reads `hypothesis: H premise: P` (`nli_data.format_input`) and is scored, not sampled: each label string (e.g.
`entailment`, `neutral`, `contradiction`, or `consistent`/`inconsistent`) is fed teacher-forced as
the target, its summed token log-likelihood is the label's score, and a softmax over the label set
gives the probabilities (rank classification, as T5 evaluates classification tasks). Premises
longer than `max_premise_tokens` are cut into overlapping token windows; a hypothesis counts as
entailed as much as its best-supporting window (max over windows).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vertjax import errors
from vertjax.consistency import nli_data

if TYPE_CHECKING:
    from vertjax.generators.t5 import T5Client

PathLike = str | os.PathLike
Judge = Callable[[str, str], bool]
MIN_INPUT_BUCKET = 64  # encoder lengths are padded to powers of two from here (few compilations)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The scorer's verdict on one pair: P(positive label), the argmax label, all probabilities."""

    p_entailment: float
    label: str
    probabilities: dict[str, float]


def label_token_ids(vocabulary: Any, labels: Sequence[str]) -> list[list[int]]:
    """Each label's target ids as training sees them (the label's pieces, then EOS)."""
    ids = [list(vocabulary.encode(label)) + [vocabulary.eos_id] for label in labels]
    if len({tuple(i) for i in ids}) != len(ids):
        raise errors.ConfigError(f"labels {tuple(labels)} tokenize to the same ids")
    return ids


def check_label_length(
    vocabulary: Any, labels: Sequence[str], targets_length: int, *, vocab_path: PathLike = "vocab"
) -> int:
    """The longest label's length with EOS; a `ConfigError` if it does not fit `targets_length`.

    Training trims targets to `targets_length` while the scorer scores every label token plus
    EOS, so a label that does not fit would be scored on tokens the model never learned.
    """
    ids = label_token_ids(vocabulary, labels)
    longest = max(range(len(labels)), key=lambda i: len(ids[i]))
    if len(ids[longest]) > targets_length:
        raise errors.ConfigError(
            f"NLI label {labels[longest]!r} is {len(ids[longest])} tokens with EOS under "
            f"{os.fspath(vocab_path)}, but the targets length is {targets_length}: training would "
            f"cut it while scoring reads it whole (use a targets length of at least "
            f"{len(ids[longest])})"
        )
    return len(ids[longest])


class Scorer:
    """P(entailment) for (premise, hypothesis) pairs from a trained T5 NLI judge.

    Args:
      client: the loaded judge — a seq2seq T5 or an NLI classifier (`models.nli_classifier`);
        `Scorer.from_run_dir(checkpoint_dir, vocab_path)` loads either kind of run.
      labels: the label strings the model was trained to emit (a classifier scores its own).
      positive_label: the label whose probability is returned (default: `labels[0]`).
      max_premise_tokens / window_stride: premise window length and step, in tokens (default:
        a classifier's training budget, else 384; the stride two thirds of the window).
      max_hypothesis_tokens: hypotheses are truncated to this many tokens (default: a
        classifier's training budget, else 128).
      batch_size: model examples (pair windows x labels) per forward pass.
    """

    def __init__(
        self,
        client: T5Client,
        *,
        labels: Sequence[str] = nli_data.NLI_LABELS,
        positive_label: str | None = None,
        max_premise_tokens: int | None = None,
        window_stride: int | None = None,
        max_hypothesis_tokens: int | None = None,
        batch_size: int = 48,
    ):
        import jax

        model = client.model
        self.is_classifier = hasattr(model, "log_probs")
        if self.is_classifier:
            labels = model.labels  # the classifier's own label set
            budgets = (model.premise_tokens, model.hypothesis_tokens)  # as it was trained
        else:
            budgets = (384, 128)
        max_premise_tokens = max_premise_tokens or budgets[0]
        max_hypothesis_tokens = max_hypothesis_tokens or budgets[1]
        window_stride = window_stride or max(1, max_premise_tokens * 2 // 3)
        labels = tuple(labels)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise errors.ConfigError(f"labels must be at least two distinct strings, got {labels}")
        positive_label = labels[0] if positive_label is None else positive_label
        if positive_label not in labels:
            raise errors.ConfigError(f"positive_label {positive_label!r} is not in {labels}")
        if not 0 < window_stride <= max_premise_tokens:
            raise errors.ConfigError(
                f"need 0 < window_stride <= max_premise_tokens, got {window_stride}, "
                f"{max_premise_tokens}"
            )
        self.client, self.vocabulary = client, client.vocabulary
        self.labels, self.positive_label = labels, positive_label
        self.max_premise_tokens, self.window_stride = max_premise_tokens, window_stride
        self.max_hypothesis_tokens, self.batch_size = max_hypothesis_tokens, batch_size
        if self.is_classifier:  # the T5-encoder classifier: one forward pass gives every label
            self._log_probs_fn = jax.jit(model.log_probs)
            return
        label_ids = label_token_ids(self.vocabulary, labels)
        width = max(len(ids) for ids in label_ids)
        self._targets = np.zeros((len(labels), width), np.int32)
        for i, ids in enumerate(label_ids):
            self._targets[i, : len(ids)] = ids
        self._decoder_inputs = np.zeros_like(self._targets)
        self._decoder_inputs[:, 1:] = self._targets[:, :-1]
        self._score_fn = jax.jit(model.score_batch)

    @classmethod
    def from_run_dir(cls, checkpoint_dir: PathLike, vocab_path: PathLike, **options: Any) -> Scorer:
        """A scorer over a run dir or `checkpoint_<step>` dir (seq2seq T5 or NLI classifier) and
        the SentencePiece vocab it was trained with; `options` are the constructor's keyword
        arguments (gin binds this one)."""
        from vertjax.data import vocab as vocab_lib
        from vertjax.generators import t5
        from vertjax.train import restore

        if restore.is_classifier_run(checkpoint_dir):
            model, params = restore.load_classifier(str(checkpoint_dir))
            vocabulary = vocab_lib.load_vocab(vocab_path)
            client = t5.T5Client(model, params, vocabulary, name=str(checkpoint_dir))
        else:
            client = t5.T5Client.from_run_dir(checkpoint_dir, vocab_path)
        return cls(client, **options)

    # ------------------------------------------------------------------------------------------
    def premise_windows(self, premise: str) -> list[str]:
        """The premise itself if short enough, else overlapping windows decoded back to text."""
        ids = list(self.vocabulary.encode(premise))
        if len(ids) <= self.max_premise_tokens:
            return [premise]
        windows = []
        for start in range(0, len(ids), self.window_stride):
            windows.append(self.vocabulary.decode(ids[start : start + self.max_premise_tokens]))
            if start + self.max_premise_tokens >= len(ids):
                break
        return windows

    def _encode(self, premise: str, hypothesis: str) -> list[int]:
        hyp_ids = list(self.vocabulary.encode(hypothesis))
        if len(hyp_ids) > self.max_hypothesis_tokens:
            hypothesis = self.vocabulary.decode(hyp_ids[: self.max_hypothesis_tokens])
        return self.client.encode(
            nli_data.format_input(premise, hypothesis), max_length=self._input_limit
        )

    @property
    def _input_limit(self) -> int:
        """Most input tokens of a pair (premise window + hypothesis + prompt words + EOS)."""
        return self.max_premise_tokens + self.max_hypothesis_tokens + 16

    def label_log_probs(self, inputs: Sequence[Sequence[int]]) -> np.ndarray:
        """log P(label | input) `[len(inputs), num_labels]` from each label's teacher-forced score."""
        from vertjax.generators import t5

        num_labels = len(self.labels)
        rows = [ids for ids in inputs for _ in range(num_labels)]
        scores = np.zeros(len(rows), np.float32)
        width = self._targets.shape[1]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            encoder = t5.pad_rows(
                chunk,
                batch_size=self.batch_size,
                min_length=MIN_INPUT_BUCKET,
                max_length=self._input_limit,
            )
            label_index = np.arange(start, start + self.batch_size) % num_labels
            batch = {
                "encoder_input_tokens": encoder,
                "decoder_input_tokens": self._decoder_inputs[label_index].reshape(-1, width),
                "decoder_target_tokens": self._targets[label_index].reshape(-1, width),
            }
            out = np.asarray(self._score_fn(self.client.params, batch))
            scores[start : start + len(chunk)] = out[: len(chunk)]
        scores = scores.reshape(len(inputs), num_labels)
        return scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)

    def classifier_log_probs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """log P(label) `[len(pairs), num_labels]` of (premise window, hypothesis) pairs."""
        from vertjax.consistency import classifier_data

        out = np.zeros((len(pairs), len(self.labels)), np.float32)
        for start in range(0, len(pairs), self.batch_size):
            chunk = list(pairs[start : start + self.batch_size])
            chunk += [chunk[-1]] * (self.batch_size - len(chunk))  # one compiled shape
            batch = {
                "hypothesis_tokens": classifier_data.tokenize(
                    self.vocabulary, [h for _, h in chunk], length=self.max_hypothesis_tokens + 1
                ),
                "premise_tokens": classifier_data.tokenize(
                    self.vocabulary, [p for p, _ in chunk], length=self.max_premise_tokens + 1
                ),
            }
            rows = min(self.batch_size, len(pairs) - start)
            log_probs = self._log_probs_fn(self.client.params, batch)
            out[start : start + rows] = np.asarray(log_probs)[:rows]
        return out

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> list[Prediction]:
        """One `Prediction` per pair: the window with the highest P(positive label) decides."""
        if len(premises) != len(hypotheses):
            raise errors.ConfigError(
                f"{len(premises)} premises but {len(hypotheses)} hypotheses: pass pairs"
            )
        owners, pairs = [], []
        for index, (premise, hypothesis) in enumerate(zip(premises, hypotheses, strict=True)):
            for window in self.premise_windows(premise):
                owners.append(index)
                pairs.append((window, hypothesis))
        if not pairs:
            return []
        if self.is_classifier:
            probs = np.exp(self.classifier_log_probs(pairs))
        else:
            probs = np.exp(self.label_log_probs([self._encode(p, h) for p, h in pairs]))
        positive = self.labels.index(self.positive_label)
        best: dict[int, np.ndarray] = {}
        for owner, row in zip(owners, probs, strict=True):
            if owner not in best or row[positive] > best[owner][positive]:
                best[owner] = row
        return [
            Prediction(
                p_entailment=float(best[i][positive]),
                label=self.labels[int(np.argmax(best[i]))],
                probabilities={
                    label: float(p) for label, p in zip(self.labels, best[i], strict=True)
                },
            )
            for i in range(len(premises))
        ]

    def __call__(self, premises: Sequence[str], hypotheses: Sequence[str]) -> np.ndarray:
        """P(positive label) per pair, `[len(premises)]`."""
        return np.array([p.p_entailment for p in self.predict(premises, hypotheses)], np.float32)

    def judge(self, *, threshold: float = 0.5) -> Judge:
        """`judge(premise, hypothesis) -> bool` (P(entailment) >= threshold) for ALCE metrics."""
        return lambda premise, hypothesis: bool(self([premise], [hypothesis])[0] >= threshold)
