"""Keyword generation in front of a retriever: lay questions -> the terms the documents use.

Three extractors share one shape, `extractor(questions) -> list[list[str]]`:
- `FewShotKeywords` (ChatDoctor): a few-shot prompt through any generator callable
  `generate(prompts) -> texts` (e.g. `from_generator(<a vertjax.generators.Generator>)`),
  comma-separated answer;
- `T5Keywords` (ChatLaw): a T5 fine-tuned on the seq2seq task `register_keyword_task` registers
  (`keywords: <question>` -> `k1, k2, ...`), decoded greedily with `decoding.decode_batch`;
- `LexicalKeywords`: deterministic, offline TF-IDF-style extraction (IDF from the corpus), also
  the teacher that `keyword_records` can distil into T5 training data.
`KeywordRetriever` plugs any extractor in front of any `Retriever`.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from vertjax import errors, io_utils
from vertjax.retrieval.types import Hit, Retriever

PathLike = str | os.PathLike
PREFIX = "keywords: "
_TOKEN = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+|\w+")
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each else few for from
    further get gets had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our out over own same she
    should so some such than that the their them then there these they this those through to too
    under until up use used using very was we were what when where which while who whom why will
    with would you your tell me please explain happen happens way ways work works""".split()
)
DEFAULT_EXAMPLES = (
    ("How do I turn a Python dict into a JSON string?", "json.dumps, dict, JSON string"),
    ("Why does my loop over a file print blank lines?", "file iteration, newline, print"),
    ("What happens when a thread waits on a lock forever?", "threading.Lock, deadlock, timeout"),
)
_PROMPT_HEAD = (
    "Extract the search keywords a documentation search needs to answer the question. "
    "Answer with comma-separated keywords only.\n\n"
)


class KeywordExtractor(Protocol):
    def __call__(self, questions: list[str]) -> list[list[str]]: ...


def words(text: str) -> list[str]:
    """Lowercased word tokens; dotted names such as `json.dumps` stay one token."""
    return [t.lower() for t in _TOKEN.findall(text)]


def parse_keywords(text: str, *, limit: int = 8) -> list[str]:
    """Comma/semicolon/newline separated keywords of a completion, deduplicated, at most `limit`."""
    first = text.strip().split("\n\n")[0]
    parts = [p.strip(" \t-*\"'`.") for p in re.split(r"[,;\n]", first)]
    return list(dict.fromkeys(p for p in parts if p))[:limit]


class LexicalKeywords:
    """The question's rarest content words by corpus IDF (unknown words count as rarest).

    Names with a dot or underscore (code identifiers) are always kept.
    """

    def __init__(
        self, document_frequency: Mapping[str, int], num_documents: int, *, limit: int = 6
    ):
        self.df, self.n, self.limit = dict(document_frequency), max(num_documents, 1), limit

    @classmethod
    def from_texts(cls, texts: Iterable[str], *, limit: int = 6) -> LexicalKeywords:
        df: Counter[str] = Counter()
        n = 0
        for text in texts:
            df.update(set(words(text)))
            n += 1
        return cls(df, n, limit=limit)

    @classmethod
    def from_index(
        cls, index_dir: PathLike, *, max_passages: int = 20_000, limit: int = 6
    ) -> LexicalKeywords:
        """IDF from an index's `passages.jsonl` (an even sample of at most `max_passages`)."""
        from vertjax.retrieval.index_dir import IndexDir

        stores = [shard.open_passages() for shard in IndexDir(index_dir).shard_dirs()]
        step = max(1, sum(len(s) for s in stores) // max_passages)
        return cls.from_texts(
            (f"{s[r]['title']} {s[r]['text']}" for s in stores for r in range(0, len(s), step)),
            limit=limit,
        )

    def idf(self, word: str) -> float:
        return math.log((self.n + 1) / (self.df.get(word, 0) + 0.5))

    def __call__(self, questions: list[str]) -> list[list[str]]:
        out = []
        for question in questions:
            candidates = list(
                dict.fromkeys(w for w in words(question) if w not in STOPWORDS and len(w) > 1)
            )
            code = [w for w in candidates if "." in w or "_" in w]
            ranked = sorted(candidates, key=lambda w: -self.idf(w))
            keep = set(code) | set(ranked[: max(0, self.limit - len(code))])
            out.append([w for w in candidates if w in keep])
        return out


class FewShotKeywords:
    """ChatDoctor-style: a few-shot prompt asks a generator for the question's keywords."""

    def __init__(
        self,
        generate: Callable[[list[str]], list[str]],
        *,
        examples: Sequence[tuple[str, str]] = DEFAULT_EXAMPLES,
        limit: int = 8,
    ):
        self.generate, self.examples, self.limit = generate, tuple(examples), limit

    def prompt(self, question: str) -> str:
        shots = "".join(f"Question: {q}\nKeywords: {k}\n\n" for q, k in self.examples)
        return f"{_PROMPT_HEAD}{shots}Question: {question}\nKeywords:"

    def __call__(self, questions: list[str]) -> list[list[str]]:
        texts = self.generate([self.prompt(q) for q in questions])
        if len(texts) != len(questions):
            raise errors.BackendError(f"{len(texts)} completions for {len(questions)} prompts")
        return [parse_keywords(t, limit=self.limit) for t in texts]


def from_generator(
    generator: Any, *, max_tokens: int = 32, temperature: float = 0.0, seed: int = 0
) -> Callable[[list[str]], list[str]]:
    """A `generate(prompts) -> texts` callable over a `vertjax.generators.Generator`."""

    def generate(prompts: list[str]) -> list[str]:
        return generator.generate(
            prompts, max_tokens=max_tokens, temperature=temperature, seed=seed
        )

    return generate


KINDS = ("lexical", "llm")


def open_extractor(
    kind: str,
    *,
    index_dir: PathLike,
    base_url: str | None = None,
    model: str | None = None,
    max_tokens: int = 32,
) -> KeywordExtractor:
    """The extractor `--keywords KIND` names: "lexical" (IDF from the index's passages) or "llm"
    (`FewShotKeywords` through the OpenAI-compatible chat server at `base_url`, e.g. the local
    llama.cpp server of `vertjax llm serve`, serving `model`)."""
    if kind == "lexical":
        return LexicalKeywords.from_index(index_dir)
    if kind != "llm":
        raise errors.ConfigError(f"--keywords {kind!r}: use one of {KINDS}")
    if not base_url or not model:
        raise errors.ConfigError(
            "--keywords llm needs --keywords_base_url and --keywords_model (the OpenAI-compatible"
            " server and model, e.g. those `vertjax llm serve` prints)"
        )
    from vertjax.generators.openai_chat import OpenAIChatGenerator

    generator = OpenAIChatGenerator(base_url, model)
    return FewShotKeywords(from_generator(generator, max_tokens=max_tokens))


class T5Keywords:
    """ChatLaw-style: a T5 fine-tuned on `keywords: <question>` -> `k1, k2, ...` (greedy)."""

    def __init__(
        self, checkpoint: PathLike, vocab: PathLike, *, max_tokens: int = 32, limit: int = 8
    ):
        from vertjax.generators import t5  # jax and the model: only when a T5 is asked for

        self.generator = t5.T5Generator.from_run_dir(checkpoint, vocab)
        self.max_tokens, self.limit = max_tokens, limit

    def __call__(self, questions: list[str]) -> list[list[str]]:
        texts = self.generator.generate(
            [PREFIX + q for q in questions], max_tokens=self.max_tokens, temperature=0.0, seed=0
        )
        return [parse_keywords(t, limit=self.limit) for t in texts]


def keyword_records(questions: Sequence[str], extractor: KeywordExtractor) -> list[dict[str, str]]:
    """`{question, keywords}` training records from a teacher extractor (distillation)."""
    return [
        {"question": q, "keywords": ", ".join(k)}
        for q, k in zip(questions, extractor(list(questions)), strict=True)
        if k
    ]


def _seq2seq_file(source: PathLike, target: pathlib.Path) -> pathlib.Path:
    rows = []
    for record in io_utils.load_jsonl(source, required_keys=("question", "keywords")):
        kw = record["keywords"]
        kw = ", ".join(map(str, kw)) if isinstance(kw, list) else str(kw)
        rows.append({"inputs": PREFIX + str(record["question"]), "targets": kw})
    io_utils.write_jsonl(target, rows)
    return target


def register_keyword_task(
    name: str, *, split_files: Mapping[str, PathLike], vocab_path: PathLike, work_dir: PathLike
) -> Any:
    """Registers the seq2seq task `keywords: <question>` -> `k1, k2` from `{question, keywords}`
    JSONL files (keywords a list or a comma-separated string); converted files go to `work_dir`."""
    from vertjax.data import tasks

    work = pathlib.Path(work_dir)
    converted = {
        split: _seq2seq_file(path, work / f"{name}.{split}.jsonl")
        for split, path in split_files.items()
    }
    return tasks.register_jsonl_task(
        name, split_files=converted, vocab_path=vocab_path, kind="seq2seq"
    )


class KeywordRetriever:
    """Searches `retriever` with each question's keywords ("replace") or question + keywords
    ("append"); a question without keywords is searched as it is."""

    def __init__(self, retriever: Retriever, extractor: KeywordExtractor, *, mode: str = "append"):
        if mode not in ("append", "replace"):
            raise ValueError(f"mode must be 'append' or 'replace', got {mode!r}")
        self.retriever, self.extractor, self.mode = retriever, extractor, mode

    def queries(self, questions: list[str]) -> list[str]:
        out = []
        for question, kws in zip(questions, self.extractor(list(questions)), strict=True):
            if not kws:
                out.append(question)
            elif self.mode == "replace":
                out.append(" ".join(kws))
            else:
                out.append(f"{question} {' '.join(kws)}")
        return out

    def search(self, questions: list[str], k: int) -> list[list[Hit]]:
        return self.retriever.search(self.queries(questions), k)
