"""In-domain vs out-of-domain question classifier: logistic regression over hashed n-grams.

The seed asks a vertical system to refuse what lies outside its domain instead of guessing. This
classifier is trained on domain questions (written from the domain corpus's passages) against
general questions (hand-written everyday questions from `vertjax.synth.refusals` plus questions
written from a general-text corpus), with the SAME question templates on both sides so that the
model learns the domain's vocabulary, not the templates' wording.

Features: word unigrams and bigrams plus character 3-5-grams of each word, hashed with CRC-32 into
`num_buckets` (no vocabulary to store), L2-normalised per question. Training: L-BFGS on the
class-balanced, L2-regularised logistic loss, from zeros, so the same data gives the same weights.
Saved as `ood.json` (settings, threshold, sha256 of the weights) + `ood_weights.npz`; never pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.retrieval.keywords import STOPWORDS

PathLike = str | os.PathLike
CONFIG_FILE = "ood.json"
WEIGHTS_FILE = "ood_weights.npz"
FORMAT = "vertjax-ood-classifier"
VERSION = 1
_WORD = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_CODE_NAME = re.compile(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+|[A-Za-z_]\w*(?=\())")
_HEADWORD = re.compile(r"(?m)^([a-z][a-z'-]{2,20}(?: [a-z'-]{2,20})?)(?:,[^:\n]*)?:\s")
_CONTENT = re.compile(r"[A-Za-z][a-z]{4,}")
# Templates used for BOTH domain and general terms (see the module docstring).
TERM_TEMPLATES = (
    "What is {t}?",
    "How do I use {t}?",
    "What is {t} used for?",
    "Can you explain {t}?",
    "How does {t} work?",
    "Give me an example of {t}.",
    "What are the main features of {t}?",
    "Why would I need {t}?",
    "What should I know about {t}?",
    "Tell me about {t}.",
)
_COMMON = frozenset(
    "about above after again against also because before being below between both could doing "
    "during every further having other their there these those through under until where which "
    "while would should shall might first second value values string strings number return "
    "returns object objects example called using given default".split()
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Featurizer:
    """Hashed word 1-2-grams and character n-grams of a question (L2-normed), plus two dense
    features from the domain lexicon: the share of the question's content words that the domain
    corpus uses, and whether every content word is known to it."""

    num_buckets: int = 1 << 16
    char_ngrams: tuple[int, int] = (3, 5)
    lexicon: frozenset[str] = frozenset()

    @property
    def dimension(self) -> int:
        return self.num_buckets + 2

    def coverage(self, question: str) -> float:
        """Share of the question's content words found in the domain lexicon (1.0 if none)."""
        words = [w for w in _WORD.findall(question.lower()) if w not in STOPWORDS and len(w) > 2]
        if not words:
            return 1.0
        return sum(w in self.lexicon for w in words) / len(words)

    def features(self, question: str) -> Counter[str]:
        tokens = _WORD.findall(question.lower())
        feats: Counter[str] = Counter(f"w:{t}" for t in tokens)
        feats.update(f"b:{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))
        lo, hi = self.char_ngrams
        for token in tokens:
            padded = f"<{token}>"
            for n in range(lo, hi + 1):
                feats.update(f"c:{padded[i : i + n]}" for i in range(len(padded) - n + 1))
        return feats

    def transform(self, questions: Sequence[str]) -> Any:
        """A `scipy.sparse.csr_matrix [len(questions), num_buckets]` of L2-normalised counts."""
        from scipy import sparse

        rows, cols, values = [], [], []
        for row, question in enumerate(questions):
            share = self.coverage(question)
            rows += [row, row]
            cols += [self.num_buckets, self.num_buckets + 1]
            values += [share, float(share == 1.0)]
            buckets: Counter[int] = Counter()
            for name, count in self.features(question).items():
                buckets[zlib.crc32(name.encode("utf-8")) % self.num_buckets] += count
            norm = float(np.sqrt(sum(c * c for c in buckets.values()))) or 1.0
            for col in sorted(buckets):
                rows.append(row)
                cols.append(col)
                values.append(buckets[col] / norm)
        return sparse.csr_matrix(
            (np.asarray(values, np.float64), (rows, cols)),
            shape=(len(questions), self.dimension),
        )


class HashedLogisticClassifier:
    """P(in-domain | question); refuse below `threshold` (see `parsing.DomainGate`)."""

    def __init__(
        self,
        *,
        weights: np.ndarray,
        bias: float,
        featurizer: Featurizer,
        threshold: float = 0.5,
        meta: Mapping[str, Any] | None = None,
    ):
        if weights.shape != (featurizer.dimension,):
            raise errors.ConfigError(
                f"{weights.shape[0]} weights for {featurizer.dimension} features"
            )
        if not 0.0 < threshold < 1.0:
            raise errors.ConfigError(f"the OOD threshold must lie in (0, 1), got {threshold}")
        self.weights, self.bias = weights.astype(np.float32), float(bias)
        self.featurizer, self.threshold = featurizer, float(threshold)
        self.meta = dict(meta or {})

    @classmethod
    def fit(
        cls,
        domain: Sequence[str],
        general: Sequence[str],
        *,
        featurizer: Featurizer = Featurizer(),
        l2: float = 1e-4,
        threshold: float = 0.5,
        max_iterations: int = 50,
    ) -> HashedLogisticClassifier:
        """Trains on domain (label 1) vs general (label 0) questions, classes weighted equally
        (Newton-CG with exact Hessian-vector products: a few dozen sparse passes)."""
        from scipy import optimize

        if not domain or not general:
            raise errors.DataError(
                f"the OOD classifier needs domain and general questions (got {len(domain)} and"
                f" {len(general)})"
            )
        x = featurizer.transform([*domain, *general])
        xt = x.T.tocsr()
        y = np.r_[np.ones(len(domain)), np.zeros(len(general))]
        w = np.where(y == 1, 0.5 / len(domain), 0.5 / len(general))

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = x @ theta[:-1] + theta[-1]
            value = float(np.sum(w * (np.logaddexp(0.0, z) - y * z)))
            residual = w * (_sigmoid(z) - y)
            grad = np.r_[xt @ residual + l2 * theta[:-1], residual.sum()]
            return value + 0.5 * l2 * float(theta[:-1] @ theta[:-1]), grad

        def hessp(theta: np.ndarray, v: np.ndarray) -> np.ndarray:
            p = _sigmoid(x @ theta[:-1] + theta[-1])
            d = w * p * (1.0 - p) * (x @ v[:-1] + v[-1])
            return np.r_[xt @ d + l2 * v[:-1], d.sum()]

        result = optimize.minimize(
            loss,
            np.zeros(featurizer.dimension + 1),
            jac=True,
            hessp=hessp,
            method="Newton-CG",
            options={"maxiter": max_iterations, "xtol": 1e-6},
        )
        meta = {"domain_questions": len(domain), "general_questions": len(general), "l2": l2}
        return cls(
            weights=result.x[:-1],
            bias=result.x[-1],
            featurizer=featurizer,
            threshold=threshold,
            meta=meta,
        )

    def probabilities(self, questions: Sequence[str]) -> list[float]:
        if not questions:
            return []
        z = self.featurizer.transform(list(questions)) @ self.weights.astype(np.float64)
        return _sigmoid(z + self.bias).tolist()

    def save(self, directory: PathLike) -> pathlib.Path:
        """Writes `ood_weights.npz` then `ood.json` (which records the weights' sha256)."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights_path = directory / WEIGHTS_FILE
        with io_utils.atomic_file(weights_path, "wb") as f:
            np.savez(f, weights=self.weights, bias=np.float32(self.bias))
        config = {
            "format": FORMAT,
            "version": VERSION,
            "num_buckets": self.featurizer.num_buckets,
            "char_ngrams": list(self.featurizer.char_ngrams),
            "lexicon": sorted(self.featurizer.lexicon),
            "threshold": self.threshold,
            "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
            "meta": self.meta,
        }
        return io_utils.atomic_write_json(directory / CONFIG_FILE, config)

    @classmethod
    def load(
        cls, directory: PathLike, *, threshold: float | None = None
    ) -> HashedLogisticClassifier:
        """Opens a saved classifier; `threshold` overrides the saved one."""
        directory = pathlib.Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise errors.CheckpointError(f"{path}: missing (train the OOD classifier first)")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            featurizer = Featurizer(
                num_buckets=int(config["num_buckets"]),
                char_ngrams=tuple(int(n) for n in config["char_ngrams"]),
                lexicon=frozenset(str(w) for w in config["lexicon"]),
            )
            saved_threshold, digest = float(config["threshold"]), config["weights_sha256"]
        except (ValueError, KeyError, TypeError) as e:
            raise errors.CheckpointError(f"{config_path}: corrupted ({e})") from None
        if config.get("format") != FORMAT or config.get("version") != VERSION:
            raise errors.CheckpointError(f"{config_path}: not a {FORMAT} v{VERSION} file")
        if hashlib.sha256(weights_path.read_bytes()).hexdigest() != digest:
            raise errors.CheckpointError(f"{weights_path}: checksum differs from {CONFIG_FILE}")
        with np.load(weights_path, allow_pickle=False) as arrays:
            weights, bias = arrays["weights"], float(arrays["bias"])
        return cls(
            weights=weights,
            bias=bias,
            featurizer=featurizer,
            threshold=saved_threshold if threshold is None else threshold,
            meta=config.get("meta"),
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))


def domain_lexicon(
    passages: Iterable[Mapping[str, str]], *, min_count: int = 2, max_words: int = 50_000
) -> frozenset[str]:
    """The domain corpus's content words used at least `min_count` times (the most frequent
    `max_words` of them)."""
    counts: Counter[str] = Counter()
    for passage in passages:
        text = f"{passage.get('title', '')} {passage.get('text', '')}".lower()
        counts.update(w for w in _WORD.findall(text) if w not in STOPWORDS and len(w) > 2)
    return frozenset(w for w, c in counts.most_common(max_words) if c >= min_count)


def salient_terms(passage: Mapping[str, str], *, limit: int = 3) -> list[str]:
    """Terms a question about this passage would name: code names (`json.dumps`), dictionary
    headwords ("word: gloss" lines), else its most frequent long content words."""
    text = passage.get("text", "")
    terms = list(dict.fromkeys(_CODE_NAME.findall(text)))
    terms += [h.strip() for h in _HEADWORD.findall(text)]
    if not terms:
        counts = Counter(w.lower() for w in _CONTENT.findall(text))
        terms = [w for w, _ in counts.most_common() if w not in _COMMON]
    return [t for t in dict.fromkeys(terms) if 2 < len(t) <= 40][:limit]


def questions_from_passages(
    passages: Iterable[Mapping[str, str]], *, per_passage: int = 2, seed: int = 0
) -> list[str]:
    """`per_passage` template questions about each passage's salient terms (seeded choice)."""
    rng = random.Random(seed)
    out = []
    for passage in passages:
        terms = salient_terms(passage)
        for term in terms[:per_passage]:
            out.append(rng.choice(TERM_TEMPLATES).format(t=term))
    return list(dict.fromkeys(out))


def split_by_hash(
    items: Sequence[str], *, test_fraction: float, salt: str = ""
) -> tuple[list, list]:
    """(train, test) by a stable hash of each item, so a question never changes sides."""
    train, test = [], []
    for item in items:
        h = zlib.crc32(f"{salt}{item}".encode()) / 0xFFFFFFFF
        (test if h < test_fraction else train).append(item)
    return train, test


def refusal_metrics(out_of_domain: Sequence[bool], refused: Sequence[bool]) -> dict[str, Any]:
    """Precision and recall of refusals (the positive class is "out of domain, refused")."""
    truth, pred = np.asarray(out_of_domain, bool), np.asarray(refused, bool)
    if truth.shape != pred.shape:
        raise ValueError(f"{truth.shape[0]} labels for {pred.shape[0]} predictions")
    tp = int(np.sum(truth & pred))
    fp, fn = int(np.sum(~truth & pred)), int(np.sum(truth & ~pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": float(np.mean(truth == pred)) if truth.size else 0.0,
        "out_of_domain": int(truth.sum()),
        "in_domain": int((~truth).sum()),
        "true_refusals": tp,
        "false_refusals": fp,
        "missed_refusals": fn,
    }


def training_questions(
    domain_passages: Sequence[Mapping[str, str]],
    general_passages: Sequence[Mapping[str, str]],
    *,
    refusal_questions: Sequence[str] = (),
    seed: int = 0,
    max_passages: int = 2000,
) -> tuple[list[str], list[str]]:
    """(domain, general) questions: template questions about the first `max_passages` passages
    of each corpus (`questions_from_passages`, seeds `seed` and `seed + 1`), the general side
    followed by the hand-written `refusal_questions`."""
    domain = questions_from_passages(domain_passages[:max_passages], seed=seed)
    general = questions_from_passages(general_passages[:max_passages], seed=seed + 1)
    return domain, [*general, *refusal_questions]


def train_classifier(
    domain_passages: Sequence[Mapping[str, str]],
    general_passages: Sequence[Mapping[str, str]],
    *,
    refusal_questions: Sequence[str] = (),
    seed: int = 0,
    max_passages: int = 2000,
    lexicon: frozenset[str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> HashedLogisticClassifier:
    """The classifier the demo and `vertjax ood train` use: `training_questions` of both corpora,
    featurized with `lexicon` (default: the `domain_lexicon` of all `domain_passages`); `meta` is
    added to what it records."""
    domain, general = training_questions(
        domain_passages,
        general_passages,
        refusal_questions=refusal_questions,
        seed=seed,
        max_passages=max_passages,
    )
    if lexicon is None:
        lexicon = domain_lexicon(domain_passages)
    featurizer = Featurizer(lexicon=lexicon)
    classifier = HashedLogisticClassifier.fit(domain, general, featurizer=featurizer)
    classifier.meta.update(meta or {})
    return classifier
