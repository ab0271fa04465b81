"""Training pairs for dense retrievers, and `PairsDataSource`, the trainer's batch source for them.

Pairs (question, positive passage) come from the corpus itself or from labelled files:
- inverse cloze task (ICT, Lee et al. 2019): a random sentence of a passage is the question, the
  passage without it (kept in with probability `ict_keep_probability`) the positive;
- independent cropping (Contriever, Izacard et al. 2021): two random word spans of one passage
  (each 10-50% of it by default) are the question and the positive;
- lay paraphrase: the passage's first sentence without its code (names, calls, operators) and with
  each content word replaced, where WordNet has one, by a synonym of its most frequent sense, so
  the question describes the need without the manual's exact terms;
- labelled JSONL: `{question, passage_id}`, `{question, positive_ids}` (e.g. Self-QA's
  `questions.jsonl`) or Self-QA instructions `{instruction, meta: {passage_id}}`.

Held-out passages never reach training: from a data pack only the train split is read, and the
`positive_ids` of held-out question files are removed from the corpus; labelled pairs pointing at
a held-out or unknown passage are dropped (and counted). Passages with identical text and labelled
pairs with the same normalised question and passage are deduplicated.

An epoch visits every training passage that has a pair objective once, in a seeded permutation,
drawing for it one objective by weight (ICT, crop, or one of its labelled questions). One passage
per epoch means no two questions of a batch share a positive (no false in-batch negatives). Batch i
depends only on (seed, i), so a resumed run reads exactly the batches it would have read.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from vertjax import errors, io_utils
from vertjax.retrieval import encode

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
OBJECTIVES = ("ict", "crop", "labelled", "lay")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
# Code in a sentence: dotted/underscored names, calls, backticked or starred spans, operators.
_CODE = re.compile(r"`[^`]*`|\*[^*]*\*|\w+(?:\.\w+)+|\w*_\w*|\w+\([^)]*\)|[<>=\[\]{}()~^|%$#@\\/]")
_WORD = re.compile(r"[A-Za-z]+|[^A-Za-z\s]+")


def normalize(text: str) -> str:
    """Lowercased, whitespace-collapsed text (the dedup key)."""
    return " ".join(text.lower().split())


def sentences(text: str) -> list[str]:
    """Sentences (and paragraphs) of a passage: split after . ! ? and at blank lines."""
    return [s for s in (" ".join(p.split()) for p in _SENTENCE_END.split(text)) if s]


def inverse_cloze(
    text: str, rng: np.random.Generator, *, keep_probability: float = 0.1, min_words: int = 4
) -> tuple[str, str] | None:
    """(question sentence, context) of one ICT example, or None if the passage is too short.

    The question is a random sentence of at least `min_words` words; the context is the passage
    without it, except with probability `keep_probability` (so the model also learns overlap).
    """
    parts = sentences(text)
    candidates = [i for i, s in enumerate(parts) if len(s.split()) >= min_words]
    if len(parts) < 2 or not candidates:
        return None
    pick = candidates[int(rng.integers(len(candidates)))]
    keep = rng.random() < keep_probability
    context = " ".join(s for i, s in enumerate(parts) if keep or i != pick)
    return parts[pick], context


def independent_crops(
    text: str,
    rng: np.random.Generator,
    *,
    min_ratio: float = 0.1,
    max_ratio: float = 0.5,
    min_words: int = 4,
) -> tuple[str, str] | None:
    """Two independent random word spans of the passage (Contriever), or None if too short."""
    words = text.split()
    if len(words) < 2 * min_words:
        return None
    spans = []
    for _ in range(2):
        ratio = rng.uniform(min_ratio, max_ratio)
        length = min(len(words), max(min_words, int(round(ratio * len(words)))))
        start = int(rng.integers(len(words) - length + 1))
        spans.append(" ".join(words[start : start + length]))
    return spans[0], spans[1]


def lay_paraphrase(
    text: str,
    rng: np.random.Generator,
    *,
    synonyms: Mapping[str, Sequence[str]],
    replace_probability: float = 0.8,
    min_words: int = 4,
) -> str | None:
    """A lay-style question from a passage's first sentence (Self-QA-like, offline), or None.

    Code is removed (dotted names, calls, backticks, operators), and each word with a synonym in
    `synonyms` (word -> replacements, e.g. `consistency.lexicon.synonyms()`: WordNet's first
    sense) is swapped with probability `replace_probability` for a randomly drawn one.
    """
    parts = sentences(text)
    if not parts:
        return None
    plain = " ".join(_CODE.sub(" ", parts[0]).split())
    words = [w for w in _WORD.findall(plain) if w.isalnum()]
    if len(words) < min_words:
        return None
    out = []
    for word in words:
        options = synonyms.get(word.lower(), ()) if len(word) > 2 else ()
        if options and rng.random() < replace_probability:
            out.append(str(options[int(rng.integers(len(options)))]).replace("_", " "))
        else:
            out.append(word)
    return " ".join(out)


def held_out_ids(paths: Sequence[PathLike]) -> set[str]:
    """Every `positive_ids` entry of questions JSONL files (the evaluation's passages)."""
    ids: set[str] = set()
    for path in paths:
        for record in io_utils.read_jsonl(path, required_keys=("positive_ids",)):
            ids.update(str(i) for i in record["positive_ids"])
    return ids


def load_training_passages(
    passages: PathLike, *, held_out: Sequence[PathLike] = ()
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Training passages of a pack dir (train split) or JSONL, minus held-out and duplicates.

    Returns (passages, stats) where stats counts what was read, held out and deduplicated.
    """
    from vertjax.data import packs

    path = pathlib.Path(passages)
    excluded = held_out_ids(held_out)
    if path.is_dir():
        packs.read_manifest(path)
        records = list(io_utils.read_jsonl(path / "train.jsonl", required_keys=("id", "text")))
        for split in ("validation", "test"):
            if (path / f"{split}.jsonl").is_file():
                excluded |= {r["id"] for r in io_utils.read_jsonl(path / f"{split}.jsonl")}
    else:
        records = list(io_utils.read_jsonl(path, required_keys=("id", "text")))
    kept, seen_ids, seen_texts = [], set(), set()
    stats = {"read": len(records), "held_out": 0, "duplicates": 0}
    for record in records:
        pid = str(record["id"])
        if pid in excluded:
            stats["held_out"] += 1
            continue
        key = normalize(str(record["text"]))
        if pid in seen_ids or key in seen_texts or not key:
            stats["duplicates"] += 1
            continue
        seen_ids.add(pid)
        seen_texts.add(key)
        kept.append(
            {
                "id": pid,
                "doc_id": str(record.get("doc_id", pid)),
                "title": str(record.get("title") or ""),
                "text": str(record["text"]),
            }
        )
    if not kept:
        raise errors.DataError("no training passages left after held-out removal", path=path)
    stats["excluded_ids"] = len(excluded)
    return kept, stats


def _labelled_record(record: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(question, passage ids) of one labelled record in any of the accepted shapes."""
    question = record.get("question", record.get("instruction"))
    if "passage_id" in record:
        ids = [record["passage_id"]]
    elif "positive_ids" in record:
        ids = record["positive_ids"] if isinstance(record["positive_ids"], list) else []
    else:
        meta = record.get("meta")
        ids = [meta["passage_id"]] if isinstance(meta, dict) and "passage_id" in meta else []
    if not isinstance(question, str) or not question.strip():
        return None, []
    return question.strip(), [str(i) for i in ids]


def load_labelled(
    paths: Sequence[PathLike], *, rows: Mapping[str, int], held_out: set[str]
) -> tuple[dict[int, list[str]], dict[str, int]]:
    """Labelled questions by training-passage row, deduplicated; held-out/unknown ids dropped."""
    by_row: dict[int, list[str]] = {}
    seen: set[tuple[str, int]] = set()
    stats = {"read": 0, "kept": 0, "duplicates": 0, "held_out": 0, "unknown_passage": 0}
    for path in paths:
        for line, record in enumerate(io_utils.read_jsonl(path), start=1):
            question, ids = _labelled_record(record)
            if question is None or not ids:
                raise errors.DataError(
                    "a labelled pair needs 'question' (or 'instruction') and 'passage_id' (or "
                    "'positive_ids', or meta.passage_id)",
                    path=path,
                    line=line,
                )
            for pid in ids:
                stats["read"] += 1
                if pid in held_out:
                    stats["held_out"] += 1
                elif pid not in rows:
                    stats["unknown_passage"] += 1
                elif (normalize(question), rows[pid]) in seen:
                    stats["duplicates"] += 1
                else:
                    seen.add((normalize(question), rows[pid]))
                    by_row.setdefault(rows[pid], []).append(question)
                    stats["kept"] += 1
    if stats["read"] and not stats["kept"]:
        raise errors.DataError(
            f"no labelled pair points at a training passage ({stats}); wrong corpus?",
            path=paths[0],
        )
    return by_row, stats


@dataclasses.dataclass(frozen=True)
class _Corpus:
    passages: list[dict[str, str]]
    rows: dict[str, int]
    labelled: dict[int, list[str]]
    feasible: dict[int, tuple[str, ...]]
    units: np.ndarray
    stats: dict[str, Any]
    bm25: Any


def feasible_objectives(text: str, *, has_labels: bool) -> tuple[str, ...]:
    """The objectives that can make a pair from a passage (ICT needs two sentences, cropping
    eight words, "labelled" a labelled question, "lay" a first sentence of four plain words)."""
    parts = sentences(text)
    found = []
    if parts and sum(w.isalpha() for w in _WORD.findall(_CODE.sub(" ", parts[0]))) >= 4:
        found.append("lay")
    if len(parts) >= 2 and any(len(s.split()) >= 4 for s in parts):
        found.append("ict")
    if len(text.split()) >= 8:
        found.append("crop")
    if has_labels:
        found.append("labelled")
    return tuple(found)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairsDataSource:
    """Batches `{question_tokens [b, lq], passage_tokens [b * (1 + n), lp]}` for `DualEncoderModel`.

    Attributes:
      passages: a data pack dir (its train split is used) or a passages JSONL.
      vocab: SentencePiece model (or its dir) that tokenizes questions and passages.
      batch_size: the global batch (split over processes: each yields its slice).
      objectives: weight of "ict", "crop" and "labelled" (0 or absent disables one).
      labelled: labelled-pair JSONL files.
      held_out: questions JSONL files whose `positive_ids` must stay out of training.
      hard_negatives: BM25-mined negatives per question (n); passages of the positive's document
        and the batch's positives are skipped.
      model_vocab_size: the model's embedding rows, checked against the vocab when given.
      lay_synonyms: word -> synonyms for the "lay" objective (default: WordNet's first sense,
        `consistency.lexicon.synonyms()`, empty where WordNet is not installed).
    """

    passages: str
    vocab: str
    batch_size: int
    question_length: int = 64
    passage_length: int = 256
    objectives: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"ict": 1.0, "crop": 1.0, "labelled": 2.0}
    )
    labelled: Sequence[str] = ()
    held_out: Sequence[str] = ()
    hard_negatives: int = 0
    negatives_depth: int = 30
    seed: int = 0
    ict_keep_probability: float = 0.1
    crop_min_ratio: float = 0.1
    crop_max_ratio: float = 0.5
    model_vocab_size: int | None = None
    lay_synonyms: Mapping[str, Sequence[str]] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.objectives) - set(OBJECTIVES))
        if unknown or not any(w > 0 for w in self.objectives.values()):
            raise errors.ConfigError(
                f"objectives {dict(self.objectives)}: use positive weights for {OBJECTIVES}"
            )
        if any(w < 0 for w in self.objectives.values()):
            raise errors.ConfigError(f"objective weights must be >= 0: {dict(self.objectives)}")
        if self.batch_size < 2 or self.hard_negatives < 0:
            raise errors.ConfigError(
                f"need batch_size >= 2 and hard_negatives >= 0 (got {self.batch_size}, "
                f"{self.hard_negatives})"
            )

    @functools.cached_property
    def _vocab(self) -> Any:
        from vertjax.data import vocab as vocab_lib

        vocabulary = vocab_lib.load_vocab(self.vocab)
        if self.model_vocab_size is not None and vocabulary.vocab_size > self.model_vocab_size:
            raise errors.ConfigError(
                f"the vocab {self.vocab} has {vocabulary.vocab_size} ids but the model only "
                f"{self.model_vocab_size} (set VOCAB_SIZE)"
            )
        return vocabulary

    @functools.cached_property
    def _synonyms(self) -> Mapping[str, Sequence[str]]:
        if self.lay_synonyms is not None:
            return self.lay_synonyms
        from vertjax.consistency import lexicon  # WordNet reader (same layer, read-only)

        return lexicon.synonyms()

    @functools.cached_property
    def corpus(self) -> _Corpus:
        """The training passages, labelled questions by row, and the passages with an objective."""
        passages, stats = load_training_passages(self.passages, held_out=self.held_out)
        rows = {p["id"]: i for i, p in enumerate(passages)}
        labelled: dict[int, list[str]] = {}
        if self.labelled and self.objectives.get("labelled", 0) > 0:
            excluded = held_out_ids(self.held_out)
            if pathlib.Path(self.passages).is_dir():
                excluded |= _pack_held_out(pathlib.Path(self.passages))
            labelled, stats["labelled"] = load_labelled(self.labelled, rows=rows, held_out=excluded)
        feasible = {}
        for i, p in enumerate(passages):
            usable = tuple(
                name
                for name in feasible_objectives(p["text"], has_labels=i in labelled)
                if self.objectives.get(name, 0.0) > 0
            )
            if usable:
                feasible[i] = usable
        units = np.asarray(sorted(feasible), dtype=np.int64)
        stats["units"] = len(units)
        if len(units) < self.batch_size:
            raise errors.DataError(
                f"only {len(units)} training passages have a pair objective, fewer than the "
                f"batch size {self.batch_size}",
                path=self.passages,
            )
        bm25 = None
        if self.hard_negatives:
            from vertjax.retrieval import bm25 as bm25_lib

            bm25 = bm25_lib.BM25Index.build(passages)
        logger.info("retriever pairs: %s", stats)
        return _Corpus(passages, rows, labelled, feasible, units, stats, bm25)

    @property
    def batches_per_epoch(self) -> int:
        return len(self.corpus.units) // self.batch_size

    def example(self, row: int, epoch: int) -> tuple[str, str, str]:
        """(objective, question, positive text) drawn for passage `row` in `epoch`."""
        corpus = self.corpus
        passage = corpus.passages[row]
        rng = np.random.default_rng([self.seed, epoch, row])
        names = corpus.feasible[row]
        weights = np.asarray([self.objectives[n] for n in names], dtype=np.float64)
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        if name == "labelled":
            questions = corpus.labelled[row]
            return name, questions[int(rng.integers(len(questions)))], encode.passage_text(passage)
        if name == "lay":
            question = lay_paraphrase(passage["text"], rng, synonyms=self._synonyms)
            assert question is not None, (name, row)  # feasible_objectives checked the passage
            return name, question, encode.passage_text(passage)
        if name == "ict":
            pair = inverse_cloze(passage["text"], rng, keep_probability=self.ict_keep_probability)
        else:
            pair = independent_crops(
                passage["text"], rng, min_ratio=self.crop_min_ratio, max_ratio=self.crop_max_ratio
            )
        assert pair is not None, (name, row)  # feasible_objectives checked the passage
        return name, pair[0], encode.passage_text({**passage, "text": pair[1]})

    @functools.cached_property
    def _permutations(self) -> dict[int, np.ndarray]:
        return {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations.clear()
            rng = np.random.default_rng([self.seed, epoch, 1 << 30])
            self._permutations[epoch] = rng.permutation(self.corpus.units)
        return self._permutations[epoch]

    def global_batch(self, index: int) -> tuple[list[str], list[str]]:
        """(questions [b], passages [b * (1 + n)]) of global batch `index` as texts."""
        epoch, position = divmod(index, self.batches_per_epoch)
        rows = self._permutation(epoch)[
            position * self.batch_size : (position + 1) * self.batch_size
        ]
        examples = [self.example(int(r), epoch) for r in rows]
        questions = [q for _, q, _ in examples]
        positives = [p for _, _, p in examples]
        negatives = self._negatives(questions, [int(r) for r in rows], epoch=epoch, index=index)
        return questions, positives + [n for row in negatives for n in row]

    def _negatives(
        self, questions: list[str], rows: list[int], *, epoch: int, index: int
    ) -> list[list[str]]:
        """`hard_negatives` passage texts per question: BM25's best that are not positives of
        this batch nor from the positive's document; random training passages fill any gap."""
        if not self.hard_negatives:
            return [[] for _ in questions]
        corpus = self.corpus
        taken = set(rows)
        hits = corpus.bm25.search(questions, self.negatives_depth)
        rng = np.random.default_rng([self.seed, epoch, index, 2])
        out = []
        for row, q_hits in zip(rows, hits, strict=True):
            doc = corpus.passages[row]["doc_id"]
            chosen: list[int] = []
            candidates = [corpus.rows[h.id] for h in q_hits]
            while len(chosen) < self.hard_negatives:
                if candidates:
                    r = candidates.pop(0)
                else:
                    r = int(rng.integers(len(corpus.passages)))
                if r in taken or r in chosen or corpus.passages[r]["doc_id"] == doc:
                    continue
                chosen.append(r)
            taken.update(chosen)
            out.append([encode.passage_text(corpus.passages[r]) for r in chosen])
        return out

    def iterator(
        self, *, start_batch: int = 0, shard_id: int = 0, num_shards: int = 1
    ) -> Iterator[dict[str, np.ndarray]]:
        """This process's slice of global batches `start_batch, start_batch + 1, ...` (endless).

        The trainer lays the processes' slices end to end, so process s takes rows
        `[s * L, (s + 1) * L)` of the global question and passage lists; the first b global
        passages stay the positives of the b questions, in order.
        """
        if self.batch_size % num_shards:
            raise errors.ConfigError(
                f"batch_size {self.batch_size} is not divisible by {num_shards} processes"
            )
        q_len = self.batch_size // num_shards
        p_len = q_len * (1 + self.hard_negatives)
        index = start_batch
        while True:
            questions, passages = self.global_batch(index)
            yield {
                "question_tokens": encode.tokenize(
                    self._vocab,
                    questions[shard_id * q_len : (shard_id + 1) * q_len],
                    length=self.question_length,
                ),
                "passage_tokens": encode.tokenize(
                    self._vocab,
                    passages[shard_id * p_len : (shard_id + 1) * p_len],
                    length=self.passage_length,
                ),
            }
            index += 1


def _pack_held_out(pack_dir: pathlib.Path) -> set[str]:
    return {
        str(r["id"])
        for split in ("validation", "test")
        if (pack_dir / f"{split}.jsonl").is_file()
        for r in io_utils.read_jsonl(pack_dir / f"{split}.jsonl")
    }
