"""The answering system: parse → retrieve → select → cited answer → consistency check.

`Assistant.answer(question, history)` runs the seed's pipeline (question parsing, knowledge
retrieval, reasoning/answering) and returns an `AnswerResult`: the rewritten question, its
sub-questions with their domain verdicts, retrieved and selected passages, answer sentences with
citations and per-sentence consistency verdicts, timings per stage, and a refusal flag + reason.
`Assistant.answer_stream` gives the same answer's text piece by piece as each sentence is written
and judged (what `vertjax serve` streams).

Each sub-question is retrieved and answered on its own; the answers are merged and every citation
`[n]` points into the merged `selected` list, whose passages say where they come from (`doc_id`,
`source` file, `url`). The domain named in refusals and prompts is the index's
(`build.index_domain`, copied from the data pack). A refusal says which reason applies
(`refusal_kind`): the question is outside the domain (the classifier), or nothing in the documents
answers it (the top retrieval score is below `min_top_score`, raw or a calibrated percentile per
retriever, see `vertjax.system.calibration`). Building an assistant from files and gin
(`offline_assistant`, `from_gin`, the loaders default.gin binds) is `vertjax.system.build`'s.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from vertjax import errors
from vertjax.consistency import postprocess
from vertjax.retrieval.rewrite import Rewriter
from vertjax.retrieval.types import Hit, Retriever
from vertjax.synth import refusals
from vertjax.system import calibration, generation, parsing
from vertjax.system.generation import NEUTRAL_DOMAIN

Selector = Callable[[str, Sequence[Hit]], list[Hit]]
KeywordExpander = Callable[[list[str]], list[list[str]]]
NO_ANSWER = "no answer found: the selected passages hold no sentence relevant to the question"
# `AnswerResult.refusal_kind` when sub-questions were answered but no sentence survived.
NO_ANSWER_KIND = "no_answer"
# `AnswerResult.refusal_kind` when the `drop` policy (or regenerate's drop fallback) removed every
# answer sentence as unsupported by its cited passages.
ALL_DROPPED_KIND = "all_dropped"
ALL_DROPPED = "all {n} answer sentences were dropped as unsupported by the passages they cite"
# `AnswerResult.trust`: what the answer-level badge says, from the kept sentences' support
# (NLI verdict) and relevance (`generation.QuestionRelevance` >= `min_relevance`).
TRUST_ANSWERS = "answers"
TRUST_MAY_NOT_ADDRESS = "may_not_address"
TRUST_UNSUPPORTED = "unsupported"
TRUST_LABELS = {
    TRUST_ANSWERS: "answers the question",
    TRUST_MAY_NOT_ADDRESS: "supported but may not address the question",
    TRUST_UNSUPPORTED: "not supported by the cited passages",
}
NO_MATCH_REFUSAL = (
    "Nothing in the documents about {domain} answers this question: the closest passages match"
    " it too weakly to answer from them reliably."
)


class ConsistencyScorer(Protocol):
    """`nli.Scorer`-like: `predict(premises, hypotheses)` → objects with p_entailment, label."""

    def predict(self, premises: Sequence[str], hypotheses: Sequence[str]) -> Sequence[Any]: ...


@dataclasses.dataclass
class Passage:
    """A retrieved or selected passage; `sub_question` indexes `AnswerResult.sub_questions`.

    `doc_id`, `source` (a path relative to the pack's source folder) and `url` say which
    document to open to check a citation; None when the index does not record them.
    """

    id: str
    title: str
    score: float
    rank: int
    sub_question: int
    text: str | None = None
    doc_id: str | None = None
    source: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, hit: Hit, sub_question: int, *, with_text: bool) -> Passage:
        return cls(
            hit.id,
            hit.title,
            hit.score,
            hit.rank,
            sub_question,
            hit.text if with_text else None,
            hit.doc_id,
            hit.source,
            hit.url,
        )

    def citation(self) -> str:
        """How a source line names the passage: title, the file or URL to open, and the id."""
        where = self.url or self.source
        return f"{self.title}, {where} ({self.id})" if where else f"{self.title} ({self.id})"


@dataclasses.dataclass
class SubQuestion:
    """One parsed sub-question, as retrieved, and whether it was refused."""

    text: str
    refused: bool
    reason: str | None
    p_in_domain: float | None
    top_score: float | None
    refusal_kind: str | None = None


@dataclasses.dataclass
class AnswerSentence:
    """An answer sentence; `citations` are 1-based into `AnswerResult.selected`.

    Two signals: support (`status`: supported | unsupported | contradicted, the NLI verdict
    against the cited passages, or unchecked without a scorer; `p_entailment`) says the sentence
    comes from its sources; `relevance` (0..1, `generation.QuestionRelevance`: the share of the
    question's IDF-weighted content words the sentence and its passage title cover) says whether
    it addresses the question, `relevant` when it reaches `Assistant.min_relevance`. An
    extracted sentence is always supported; only relevance tells an off-point one apart.
    """

    text: str
    citations: list[int]
    passage_ids: list[str]
    sub_question: int
    status: str = "unchecked"
    p_entailment: float | None = None
    supported: bool | None = None
    regenerated: bool = False
    relevance: float | None = None
    relevant: bool | None = None


@dataclasses.dataclass
class AnswerResult:
    """Everything the assistant did for one question (`dataclasses.asdict` is `--json`).

    `refusal_kind`: None when answered, else `parsing.OUTSIDE_DOMAIN` (the question is not about
    the domain; also when some refused sub-questions were and others found no match),
    `parsing.NO_MATCH` (nothing in the documents answers it), `NO_ANSWER_KIND` (no sentence of
    the passages relates to the question) or `ALL_DROPPED_KIND` (the `drop` policy removed every
    sentence as unsupported). `trust` (a `TRUST_*` code) and `trust_label` (its words, also the
    answer's "Trust:" line) rate an answered question: `answers` when some kept sentence is both
    supported (or unchecked) and relevant, `may_not_address` when the supported ones are all
    below `min_relevance`, `unsupported` when none is supported; None when refused.
    """

    question: str
    rewritten_question: str
    sub_questions: list[SubQuestion]
    retrieved: list[Passage]
    selected: list[Passage]
    sentences: list[AnswerSentence]
    answer: str
    refused: bool
    refusal_reason: str | None
    timings_ms: dict[str, float]
    generator: str
    consistency_policy: str
    removed_sentences: int = 0
    refusal_kind: str | None = None
    trust: str | None = None
    trust_label: str | None = None


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._start = time.perf_counter()

    def stage(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + 1000.0 * (now - since)
        return now

    def total(self) -> dict[str, float]:
        self.ms["total"] = 1000.0 * (time.perf_counter() - self._start)
        return {k: round(v, 3) for k, v in self.ms.items()}


class Assistant:
    """The configurable answering pipeline (gin binds its components; see vertjax/gin_configs/system).

    Args:
      retriever: any `Retriever` (BM25, dense, hybrid).
      rewriter: context rewriting of follow-ups and of later sub-questions (None: off).
      keyword_expander: `questions -> keywords` appended to each retrieval query (None: off).
      selector: `(question, hits) -> hits` in prompt order (default: `KnowledgeSelector(k=k)`).
      generator: an `AnswerGenerator`.
      consistency_scorer: an NLI scorer checking every sentence against its cited passages.
      postprocess_policy: "drop", "flag" or "regenerate" (or a `PostprocessConfig`).
      ood_classifier: P(in-domain) classifier; refusals below its threshold.
      k: passages selected per sub-question; `retrieve_k` passages retrieved per sub-question.
      min_top_score: refuse when retrieval's best score is below this raw score, on the scale of
        the retriever in use (BM25: unbounded sums, dense: cosine in [-1, 1], hybrid RRF: ~0.03).
      min_top_score_percentile: the same on a calibrated scale, 0..100: refuse below this
        percentile of in-domain questions' top scores for the retriever in use, as measured in
        `retrieval_calibration` (`vertjax ood train --index`). Exclusive with `min_top_score`.
      retrieval_calibration: the `calibration.RetrievalCalibration` a percentile needs.
      min_relevance: an answer sentence addresses the question when its relevance (0..1, the
        share of the question's IDF-weighted content words it and its passage title cover)
        reaches this; an answer none of whose supported sentences does is labelled "supported but
        may not address the question". 0.5 separates in-domain answers from answers to
        out-of-domain questions on the SQLite manual (experiments/sqlite_own_corpus).
      domain: what the documents are about, named in the refusal message and in the prompts of
        generators that have a `domain` (default.gin binds the index's, `build.index_domain`);
        None: "the indexed documents".
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        rewriter: Rewriter | None = None,
        keyword_expander: KeywordExpander | None = None,
        selector: Selector | None = None,
        generator: generation.AnswerGenerator,
        consistency_scorer: ConsistencyScorer | None = None,
        postprocess_policy: str | postprocess.PostprocessConfig = "flag",
        ood_classifier: parsing.DomainClassifier | None = None,
        k: int = 4,
        retrieve_k: int = 20,
        min_top_score: float | None = None,
        min_top_score_percentile: float | None = None,
        retrieval_calibration: calibration.RetrievalCalibration | None = None,
        domain: str | None = None,
        max_sub_questions: int = 5,
        min_relevance: float = 0.5,
    ):
        from vertjax.retrieval import selection

        if k < 1 or retrieve_k < k or max_sub_questions < 1:
            raise errors.ConfigError(
                f"need 1 <= k <= retrieve_k and max_sub_questions >= 1 (got k={k},"
                f" retrieve_k={retrieve_k}, max_sub_questions={max_sub_questions})"
            )
        if isinstance(min_relevance, bool) or not 0.0 <= min_relevance <= 1.0:
            raise errors.ConfigError(
                f"assistant.Assistant.min_relevance = {min_relevance!r}: must be in [0, 1]"
            )
        self.min_relevance = float(min_relevance)
        if isinstance(postprocess_policy, str):
            postprocess_policy = postprocess.PostprocessConfig(policy=postprocess_policy)
        self.retriever, self.rewriter, self.keyword_expander = retriever, rewriter, keyword_expander
        self.selector = selector or selection.KnowledgeSelector(k=k)
        self.generator, self.consistency_scorer = generator, consistency_scorer
        self.postprocess_config = postprocess_policy
        self.k, self.retrieve_k, self.max_sub_questions = k, retrieve_k, max_sub_questions
        self.domain = domain or NEUTRAL_DOMAIN
        threshold = calibration.gate_threshold(
            retriever,
            min_top_score=min_top_score,
            percentile=min_top_score_percentile,
            calibration=retrieval_calibration,
        )
        self.gate = parsing.DomainGate(
            classifier=ood_classifier, min_top_score=threshold, domain=self.domain
        )
        # What a refused question is told, per `DomainVerdict.kind`.
        self.refusal_messages = {
            parsing.OUTSIDE_DOMAIN: refusals.DEFAULT_REFUSAL.format(domain=self.domain),
            parsing.NO_MATCH: NO_MATCH_REFUSAL.format(domain=self.domain),
        }
        if getattr(generator, "domain", "") is None:  # a prompting generator told no domain
            generator.domain = self.domain
        # The server answers concurrently, and the ScaNN / bm25s searchers behind a retriever are
        # not documented thread-safe: searches take turns (generation still runs in parallel).
        self._retrieval_lock = threading.Lock()

    def _queries(self, questions: list[str]) -> list[str]:
        if self.keyword_expander is None:
            return questions
        expanded = self.keyword_expander(questions)
        return [f"{q} {' '.join(kw)}".strip() for q, kw in zip(questions, expanded, strict=True)]

    def answer(self, question: str, history: Sequence[Any] = ()) -> AnswerResult:
        """Answers one turn; `history` holds earlier turns (strings or `{role, content}`)."""
        *_, result = self._answer(question, history, stream=False)
        return result

    def answer_stream(
        self, question: str, history: Sequence[Any] = ()
    ) -> Iterator[str | AnswerResult]:
        """`answer`, with the answer's text as it becomes final: pieces of text (str) that join
        to `AnswerResult.answer`, then the `AnswerResult` itself.

        A sentence is sent once it is complete and judged: from a generator that streams
        (`BackendAnswerGenerator`), each sentence is checked by the consistency scorer as soon
        as the LLM has written it, and goes out with its verdict applied: `flag` sends it (with
        the marker when unsupported), `drop` only when supported, `regenerate` the sentence or
        its checked replacement. Nothing is sent that the policy may still remove. A generator
        that does not stream (extractive, T5) gives its sentences together; refusals, the
        "Trust:" line and the sources come last, once every sentence is in.
        """
        return self._answer(question, history, stream=True)

    def _answer(
        self, question: str, history: Sequence[Any], *, stream: bool
    ) -> Iterator[str | AnswerResult]:
        """The pipeline, yielding the answer's text pieces then the result; sentences are
        checked one by one as a streaming generator writes them when `stream`, else each
        sub-question's in one batch."""
        if not isinstance(question, str) or not question.strip():
            raise errors.ConfigError("the question must be a non-empty string")
        timer = _Timer()
        t = time.perf_counter()
        rewritten = parsing.contextualize(question, parsing.user_turns(history), self.rewriter)
        t = timer.stage("rewrite", t)
        texts = parsing.decompose(rewritten)[: self.max_sub_questions]
        texts = parsing.resolve_sub_questions(texts, self.rewriter)
        t = timer.stage("decompose", t)
        p_in = self.gate.classify(texts)
        t = timer.stage("ood", t)
        queries = self._queries(texts)
        with self._retrieval_lock:
            hits = self.retriever.search(queries, self.retrieve_k)
        t = timer.stage("retrieve", t)
        subs = []
        for text, p, sub_hits in zip(texts, p_in, hits, strict=True):
            v = self.gate.verdict(p, sub_hits)
            subs.append(SubQuestion(text, v.refused, v.reason, v.p_in_domain, v.top_score, v.kind))
        retrieved = [Passage.of(h, i, with_text=False) for i, hs in enumerate(hits) for h in hs]
        selected: list[Passage] = []
        number: dict[str, int] = {}
        chosen_per_sub: dict[int, list[Hit]] = {}
        relevance: dict[int, generation.QuestionRelevance] = {}
        for i, sub in enumerate(subs):
            if sub.refused:
                continue
            chosen_per_sub[i] = list(self.selector(sub.text, hits[i]))[-self.k :]
            relevance[i] = generation.QuestionRelevance(sub.text, chosen_per_sub[i])
            for h in chosen_per_sub[i]:
                if h.id not in number:
                    selected.append(Passage.of(h, i, with_text=True))
                    number[h.id] = len(selected)
        t = timer.stage("select", t)
        raw: list[dict[str, Any]] = []
        sentences: list[AnswerSentence] = []
        pieces: list[str] = []  # the answer's text as sent
        removed = 0
        for i, chosen in chosen_per_sub.items():
            for batch in self._generated(subs[i].text, chosen, stream=stream):
                t = timer.stage("generate", t)
                part = []
                for s in batch:
                    if any(r["text"] == s["text"] for r in raw):
                        continue  # two sub-questions answered by the same sentence
                    cited = [
                        number[chosen[c - 1].id] for c in s["citations"] if 1 <= c <= len(chosen)
                    ]
                    part.append({"text": s["text"], "citations": list(dict.fromkeys(cited))})
                    raw.append({**part[-1], "sub": i})
                kept, dropped = self._check(part, i, selected, relevance[i])
                removed += dropped
                t = timer.stage("consistency", t)
                for s in kept:
                    pieces.append((" " if sentences else "") + self._shown(s))
                    sentences.append(s)
                    yield pieces[-1]
                t = time.perf_counter()  # the caller's time with a piece is no stage's
            # the generator's end after its last sentence (all of it when it wrote none)
            t = timer.stage("generate", t)
        timer.ms.setdefault("consistency", 0.0)  # no sentence came, so none was checked
        refused, reason, kind = self._refusal(subs, sentences, removed)
        trust = None if refused else self._trust(sentences)
        pieces.append(self._render_tail(subs, sentences, selected, kind, reason, trust))
        if pieces[-1]:
            yield pieces[-1]
        yield AnswerResult(
            question=question,
            rewritten_question=rewritten,
            sub_questions=subs,
            retrieved=retrieved,
            selected=selected,
            sentences=sentences,
            answer="".join(pieces),
            refused=refused,
            refusal_reason=reason,
            timings_ms=timer.total(),
            generator=self.generator.name,
            consistency_policy=self.postprocess_config.policy if self.consistency_scorer else "off",
            removed_sentences=removed,
            refusal_kind=kind,
            trust=trust,
            trust_label=None if trust is None else self._trust_label(trust),
        )

    def _generated(
        self, question: str, passages: list[Hit], *, stream: bool
    ) -> Iterator[list[generation.Sentence]]:
        """The generator's sentences for one sub-question: one at a time as it writes them when
        `stream` and it can (`stream` method), else all in one list."""
        if stream and hasattr(self.generator, "stream"):
            for sentence in self.generator.stream(question, passages):
                yield [sentence]
        else:
            yield self.generator.generate(question, passages)

    def _check(
        self,
        part: list[dict[str, Any]],
        sub: int,
        selected: list[Passage],
        relevance: generation.QuestionRelevance,
    ) -> tuple[list[AnswerSentence], int]:
        """NLI verdicts for sentences of sub-question `sub` (one batch) and the post-processing
        policy (skipped without a scorer), and each kept sentence's relevance to `sub`;
        returns the kept sentences and how many were removed."""
        removed = 0
        if self.consistency_scorer is not None and part:
            checked = postprocess.postprocess_answer(
                part,
                [{"title": p.title, "text": p.text or ""} for p in selected],
                predict=self.consistency_scorer.predict,
                config=self.postprocess_config,
                regenerate=generation.quote_source,
            )
            part, removed = checked["sentences"], checked["removed"]
        out = []
        for s in part:
            status = s.get("status", "unchecked")
            titles = " ".join(selected[c - 1].title for c in s["citations"])
            score = round(relevance(s["text"], titles), 4)
            out.append(
                AnswerSentence(
                    text=s["text"],
                    citations=list(s["citations"]),
                    passage_ids=[selected[c - 1].id for c in s["citations"]],
                    sub_question=sub,
                    status=status,
                    p_entailment=s.get("p_entailment"),
                    supported=None if status == "unchecked" else status == "supported",
                    regenerated=bool(s.get("regenerated", False)),
                    relevance=score,
                    relevant=score >= self.min_relevance,
                )
            )
        return out, removed

    def _refusal(
        self, subs: list[SubQuestion], sentences: list[AnswerSentence], removed: int
    ) -> tuple[bool, str | None, str | None]:
        """(refused, reason, kind) of the whole answer."""
        if all(s.refused for s in subs):
            kinds = {s.refusal_kind for s in subs}
            kind = parsing.OUTSIDE_DOMAIN if parsing.OUTSIDE_DOMAIN in kinds else parsing.NO_MATCH
            return True, "; ".join(dict.fromkeys(s.reason for s in subs if s.reason)), kind
        if not sentences and removed:
            return True, ALL_DROPPED.format(n=removed), ALL_DROPPED_KIND
        if not sentences:
            return True, NO_ANSWER, NO_ANSWER_KIND
        return False, None, None

    @staticmethod
    def _trust(sentences: Sequence[AnswerSentence]) -> str:
        """The answer-level `TRUST_*` code of the kept sentences (see `AnswerResult`)."""
        backed = [s for s in sentences if s.status in ("supported", "unchecked")]
        if any(s.relevant for s in backed):
            return TRUST_ANSWERS
        return TRUST_MAY_NOT_ADDRESS if backed else TRUST_UNSUPPORTED

    def _trust_label(self, trust: str) -> str:
        """`TRUST_LABELS[trust]`, saying so when no consistency scorer checked the support."""
        if self.consistency_scorer is not None:
            return TRUST_LABELS[trust]
        if trust == TRUST_MAY_NOT_ADDRESS:
            return "may not address the question (support not checked)"
        return f"{TRUST_LABELS[trust]} (support not checked)"

    def _shown(self, sentence: AnswerSentence) -> str:
        """One answer sentence as the user sees it: cited, with the flag marker when it is not
        supported (an unchecked one is shown as is)."""
        status = "supported" if sentence.status == "unchecked" else sentence.status
        shown = {"text": sentence.text, "citations": sentence.citations, "status": status}
        return postprocess.render([shown], flag_marker=self.postprocess_config.flag_marker)

    def _render_tail(self, subs, sentences, selected, kind: str | None, reason, trust) -> str:
        """What the user-facing text holds after the answer sentences (the `_shown` sentences
        joined by spaces): notes on refused parts, the trust line and the sources, each on a
        line of its own; for a refusal (no sentences), the whole text saying why (outside the
        domain, nothing in the documents answers it, or every sentence was dropped)."""
        if kind == NO_ANSWER_KIND:
            return f"I could not answer: {NO_ANSWER}."
        if kind == ALL_DROPPED_KIND:
            return f"I could not answer: {reason} (consistency policy 'drop')."
        if kind is not None:
            kinds = dict.fromkeys(s.refusal_kind for s in subs)
            return "\n".join(self.refusal_messages[k] for k in kinds if k in self.refusal_messages)
        lines = [f"({s.text} Not answered: {s.reason}.)" for s in subs if s.refused]
        best = max((s.relevance or 0.0 for s in sentences), default=0.0)
        lines.append(f"Trust: {self._trust_label(trust)} (best relevance {best:.2f}).")
        cited = sorted({c for s in sentences for c in s.citations})
        if cited:
            lines.append("Sources:")
            lines += [f"[{c}] {selected[c - 1].citation()}" for c in cited]
        return "".join("\n" + line for line in lines)
