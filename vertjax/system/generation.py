"""Answer generation with citations (ALCE style): selected passages in, cited sentences out.

Every generator implements `AnswerGenerator.generate(question, passages) -> [{text, citations}]`
with 1-based citations into `passages` (the selected passages, in prompt order):
- `ExtractiveGenerator`: no model. Picks the passages' sentences that share the most (IDF-weighted)
  words with the question and cites the passage each comes from: deterministic, always grounded,
  so the offline system gives sensible cited answers with zero trained models.
- `T5AnswerGenerator`: a T5 checkpoint fine-tuned on `vertjax.consistency.citations` records
  (`answer with citations: question: ... passages: [1] ...`); greedy decoding goes through lossless
  reference decoding (`vertjax.models.reference_decoding`) with the passages as the copy source.
- `BackendAnswerGenerator`: any `vertjax.generators.Generator`, e.g. an OpenAI-compatible
  server, prompted with the numbered passages and asked to cite them as [n]. Its `stream` yields
  each sentence as soon as the LLM has finished writing it (a generator with `stream` is one the
  `Assistant` can stream sentence by sentence; the others answer all at once).
`quote_source` is a `regenerate` callable for the consistency post-processing policy.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vertjax import errors
from vertjax.consistency import citations
from vertjax.generators import openai_chat
from vertjax.retrieval.keywords import STOPWORDS
from vertjax.retrieval.types import Hit

if TYPE_CHECKING:
    from vertjax.generators.t5 import T5Client

PathLike = str | os.PathLike
Sentence = dict[str, Any]  # {text, citations: [1-based passage numbers]}
_WORD = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*|\d+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
_RULE = re.compile(r"[*=~^#+-]{3,}")
_CODE_LINE = re.compile(r"^\s*(?:>>>|\.\.\.|\$ |[{}\[\]()]|\w+\s*=\s)")
# What the documents are called when the index records no domain (an older pack or a JSONL).
NEUTRAL_DOMAIN = "the indexed documents"
# One worked example, then the passages (the most relevant last, i.e. nearest the question), the
# question and "Answer:". Measured with SmolLM2-135M-Instruct (experiments/llm_answers): asked with
# instructions only, it echoed "Question: ..." and stopped, or listed the passages back; with the
# example it answers in prose (and still rarely cites the right passage: the NLI check is for that).
BACKEND_PROMPT = (
    "Answer questions about {domain} from numbered passages, and end each sentence with the "
    "number of the passage that supports it.\n\n"
    "Example\nPassages:\n[1] The library opens at 9 am.\n[2] On Fridays the library closes at "
    "5 pm.\nQuestion: When does the library close on Friday?\nAnswer: It closes at 5 pm [2].\n\n"
    "Now answer from these passages, citing them the same way.\nPassages:\n{passages}\n"
    "Question: {question}\nAnswer:"
)
# What small LLMs add around an answer: an echoed "Question: ..." line, an "Answer:" / "The answer
# to your question is:" label, a made-up next "Question:" (the model continuing the example's
# pattern), code fences, and numbered or bulleted list items (whose "1." would read as a sentence).
_ECHOED_QUESTION = re.compile(r"^\s*(?:question|q)\s*:.*$", re.I | re.M)
_ANSWER_LABEL = re.compile(
    r"^\s*(?:(?:the\s+)?answer(?:\s+to\s+(?:your|the)\s+question)?(?:\s+is)?|a)\s*:\s*", re.I
)
_SENTENCE_DONE = re.compile(r"[.!?][\"')\]]*$")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.S)
_COMPLETE_END = re.compile(r"(?:[.!?][\"')\]]*|\])\s*$")


class AnswerGenerator(Protocol):
    """Writes a cited answer to `question` from `passages` (selected, in prompt order)."""

    name: str

    def generate(self, question: str, passages: Sequence[Hit]) -> list[Sentence]: ...


def content_words(text: str) -> list[str]:
    """Lowercased words minus stopwords and one-letter tokens; a dotted name (`json.dumps`)
    also gives its parts."""
    out = []
    for token in (t.lower() for t in _WORD.findall(text)):
        out += [token, *token.split(".")] if "." in token else [token]
    return [w for w in out if w not in STOPWORDS and len(w) > 1]


def _stem(word: str) -> str:
    """A crude suffix-stripping stem, so "files"/"file", "sorting"/"sort" and
    "enabled"/"enable" match."""
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) >= 4 else word


def stems(text: str) -> list[str]:
    """`content_words` stemmed, in order."""
    return [_stem(w) for w in content_words(text)]


def passage_sentences(text: str, *, max_chars: int = 400) -> list[str]:
    """Prose sentences of a passage: headings rules, code lines and fragments are left out."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [ln for ln in paragraph.splitlines() if not _CODE_LINE.match(ln)]
        prose = _RULE.sub(" ", " ".join(" ".join(lines).split()))
        for sentence in _SENTENCE_END.split(prose.strip()):
            sentence = sentence.strip()
            words = sentence.split()
            if not words:
                continue
            starts = sentence[0].isupper() or sentence[0] in "\"'`(*"
            complete = starts and sentence[-1] in ".!?"
            if 4 <= len(words) and len(sentence) <= max_chars and complete:
                out.append(sentence)
    return out


class QuestionRelevance:
    """How much of a question a sentence addresses: the share of the question's content-word IDF
    mass that the sentence (plus the title of the passage it comes from) covers, in [0, 1].

    No model: the IDF is over the sentences of the passages the answer was drawn from, so a
    question word that none of them uses (the "World Cup" asked of a software manual) weighs the
    most, and an answer that never mentions it scores low however well its passage supports it.
    This is the signal that an NLI verdict cannot give for extracted sentences, which always
    entail themselves.
    """

    def __init__(self, question: str, passages: Sequence[Hit]):
        units = [
            set(stems(s)) for p in passages for s in [p.title, *passage_sentences(p.text)] if s
        ]
        df = Counter(stem for unit in units for stem in unit)
        self._n = max(len(units), 1)
        self._df = df
        self.question = list(dict.fromkeys(stems(question)))
        self.weights = {s: self.weight(s) for s in self.question}

    def weight(self, stem: str) -> float:
        """IDF of a stem over the passages' sentences (unseen stems weigh the most)."""
        return math.log(1 + self._n / max(self._df.get(stem, 0), 1))

    def __call__(self, sentence: str, title: str = "") -> float:
        total = sum(self.weights.values())
        if total == 0:
            return 0.0
        covered = set(stems(sentence)) | set(stems(title))
        return sum(w for s, w in self.weights.items() if s in covered) / total


# Question forms, and the sentences that answer each (English-general, no domain words).
_HOW_TO = re.compile(
    r"^\s*how\s+(?:do|can|should|could|would|to)\s+(?:i|we|you|one\s+)?\s*(\w+)", re.I
)
_WHAT_IS = re.compile(
    r"^\s*what\s+(?:is|are|does|do)\s+(?:an?\s+|the\s+)?(.+?)(?:\s+(?:do|mean|for))?\s*\??\s*$",
    re.I,
)
_WHY = re.compile(r"^\s*why\b", re.I)
# Verbs too general to say what a how-to question wants done ("How do I make a column ...").
_LIGHT_VERBS = frozenset({"make", "get", "do", "have", "go", "see", "find", "know", "put"})
_INSTRUCTION = re.compile(
    r"^(?:use|to|run|call|type|set|add|enter|pass|invoke|specify|create|open)\b|\byou\s+(?:can|"
    r"must|should|need\s+to)\b|\bcan\s+be\s+used\s+to\b|\buse\s+the\b",
    re.I,
)
_REASON = re.compile(
    r"\b(?:because|since|so\s+that|in\s+order\s+to|should|avoid|reason|therefore|overhead)\b",
    re.I,
)
_HEDGE_START = re.compile(r"^(?:if|when|but|however|although|though|unless|for\s+example)\b", re.I)
_NAVIGATION = re.compile(r"→|\s\|\s|\[[^\]]*\|[^\]]*\]|»|«")


def _question_cues(question: str) -> tuple[str, str | None, set[str]]:
    """(form, its key stem, the subject's stems): form is how-to (key: the action verb),
    what-is (subject: X of "What is X?"), why, or other."""
    if m := _HOW_TO.match(question):
        verb = m.group(1).lower()
        return "how-to", None if verb in _LIGHT_VERBS else _stem(verb), set()
    if m := _WHAT_IS.match(question):
        return "what-is", None, set(stems(m.group(1)))
    return ("why" if _WHY.match(question) else "other"), None, set()


def _list_like(sentence: str) -> bool:
    """Navigation or link lists rather than prose: arrows, pipes, mostly capitalised words."""
    words = sentence.split()
    capitalised = sum(w[:1].isupper() for w in words)
    return bool(_NAVIGATION.search(sentence)) or capitalised > 0.6 * len(words)


class ExtractiveGenerator:
    """Cited answers built from the passages' sentences that best answer the question (no model).

    A sentence scores the IDF mass of the question's content words it shares (the passage title
    counts half, a passage's first sentences a little), plus, measured on hand-written questions
    (experiments/sqlite_own_corpus/extraction_eval.py):
    - phrases: each pair of question words found next to each other, as in the question;
    - the question's form: "How do I <verb> ..." prefers sentences with the verb and instructions
      ("Use ...", "you can ..."); "What is/does X?" prefers sentences that start with X (a
      definition, "X is ...") over ones that merely mention it; "Why" prefers reasons;
    - navigation / link-list sentences (arrows, pipes, mostly capitalised words) count half.

    Args:
      max_sentences: answer length in sentences.
      min_score: a sentence must share at least this much IDF-weighted stem mass with the question.
    """

    name = "extractive"

    def __init__(self, *, max_sentences: int = 2, min_score: float = 1.0):
        if max_sentences < 1:
            raise errors.ConfigError(f"max_sentences must be >= 1, got {max_sentences}")
        self.max_sentences, self.min_score = max_sentences, min_score

    def generate(self, question: str, passages: Sequence[Hit]) -> list[Sentence]:
        candidates = []  # (sentence, passage number, position in passage, stems in order)
        for number, passage in enumerate(passages, start=1):
            for position, sentence in enumerate(passage_sentences(passage.text)):
                candidates.append((sentence, number, position, stems(sentence)))
        if not candidates:
            return []
        relevance = QuestionRelevance(question, passages)
        weight = relevance.weights
        wanted = set(weight)
        mean = sum(weight.values()) / max(len(weight), 1)
        pairs = list(itertools.pairwise(relevance.question))
        form, verb, subject = _question_cues(question)
        title_stems = {i: set(stems(p.title)) for i, p in enumerate(passages, 1)}
        scored = []
        for order, (sentence, number, position, ordered) in enumerate(candidates):
            words = set(ordered)
            in_title = wanted & title_stems[number]
            if not wanted & words and not (in_title and position == 0):
                continue
            score = sum(weight[s] for s in wanted & words)
            score += 0.5 * sum(weight[s] for s in in_title)  # the topic
            score += 0.5 / (1 + position)  # a passage's first sentences define its subject
            adjacent = set(itertools.pairwise(ordered))
            score += sum(0.5 * min(weight[a], weight[b]) for a, b in pairs if (a, b) in adjacent)
            if form == "how-to":
                score += weight.get(verb, 0.0) if verb in words else 0.0
                score += 0.5 * mean if _INSTRUCTION.search(sentence) else 0.0
            elif form == "what-is" and subject and subject <= set(ordered[:4]):
                score += mean if not _HEDGE_START.match(sentence) else 0.0
            elif form == "why" and _REASON.search(sentence):
                score += 0.5 * mean
            if _list_like(sentence):
                score *= 0.5
            rank = len(passages) - number  # ties: the most relevant passage (last) first
            scored.append((-score, rank, order, sentence, number, words))
        scored.sort(key=lambda row: row[:3])
        chosen: list[Sentence] = []
        seen: list[set[str]] = []
        for neg_score, _, _, sentence, number, words in scored:
            if -neg_score < self.min_score or len(chosen) == self.max_sentences:
                break
            if any(len(words & s) > 0.8 * max(len(words), 1) for s in seen):
                continue  # a near copy of a chosen sentence (overlapping chunks)
            chosen.append({"text": sentence, "citations": [number]})
            seen.append(words)
        return chosen


def quote_source(
    sentence: Mapping[str, Any], passages: Sequence[Mapping[str, str]], verdict: Mapping[str, Any]
) -> Sentence | None:
    """`regenerate` for post-processing: the cited passage's sentence closest to the failing one,
    quoted verbatim (None when it cites nothing or its passages have no prose sentence)."""
    wanted = set(content_words(sentence["text"]))
    best: tuple[int, str, int] | None = None
    for number in sentence.get("citations", ()):
        if not 1 <= number <= len(passages):
            continue
        for candidate in passage_sentences(passages[number - 1]["text"]):
            overlap = len(wanted & set(content_words(candidate)))
            if candidate != sentence["text"] and (best is None or overlap > best[0]):
                best = (overlap, candidate, number)
    return None if best is None else {"text": best[1], "citations": [best[2]]}


def _passage_records(passages: Sequence[Hit]) -> list[dict[str, str]]:
    return [{"title": p.title, "text": p.text} for p in passages]


class T5AnswerGenerator:
    """A T5 trained on the ALCE-style citation format (`consistency.citations`).

    Args:
      client: the loaded T5 (`T5AnswerGenerator.from_run_dir(checkpoint, vocab)` loads one).
      method: "greedy" (reference decoding when `reference_decoding`), "sample" or "beam".
      max_input_length / max_decode_length: token budgets of the prompt and of the answer.
    """

    name = "t5"

    def __init__(
        self,
        client: T5Client,
        *,
        method: str = "greedy",
        reference_decoding: bool = True,
        max_input_length: int = 512,
        max_decode_length: int = 128,
        draft_length: int = 8,
    ):
        if method not in ("greedy", "sample", "beam"):
            raise errors.ConfigError(f"method must be greedy, sample or beam, got {method!r}")
        self.client = client
        self.method, self.reference_decoding = method, reference_decoding
        self.max_input_length, self.max_decode_length = max_input_length, max_decode_length
        self.draft_length = draft_length
        self.last_stats: dict[str, Any] = {}

    @classmethod
    def from_run_dir(
        cls, checkpoint: PathLike, vocab: PathLike, **options: Any
    ) -> T5AnswerGenerator:
        """A generator over a trained run dir (or `checkpoint_<step>`) and its SentencePiece
        vocab; `options` are the constructor's keyword arguments (gin binds this one)."""
        from vertjax.generators import t5  # jax and the model: only when a T5 is asked for

        return cls(t5.T5Client.from_run_dir(checkpoint, vocab), **options)

    def generate(self, question: str, passages: Sequence[Hit]) -> list[Sentence]:
        from vertjax.models import reference_decoding

        vocabulary, eos_id = self.client.vocabulary, self.client.eos_id
        prompt = citations.format_inputs(question, _passage_records(passages))
        tokens = self.client.encoder_batch(
            [prompt], batch_size=1, max_length=self.max_input_length, min_length=16
        )
        if self.method == "greedy" and self.reference_decoding:
            reference = [t for p in passages for t in vocabulary.encode(p.text)]
            decoded = reference_decoding.reference_greedy_decode(
                self.client.model,
                self.client.params,
                tokens,
                reference,
                max_decode_length=self.max_decode_length,
                draft_length=self.draft_length,
                eos_id=eos_id,
            )
            ids = decoded.tokens
            self.last_stats = {
                "forward_passes": decoded.forward_passes,
                "acceptance_rate": decoded.acceptance_rate,
            }
        else:
            result = self.client.decode_batch(
                tokens,
                max_decode_length=self.max_decode_length,
                method=self.method,
                eos_id=eos_id,
            )
            ids = np.asarray(result.tokens)[0].tolist()
        if eos_id in ids:
            ids = ids[: ids.index(eos_id)]
        text = vocabulary.decode([i for i in ids if i > 0])
        return citations.parse_answer(text, num_passages=len(passages))["sentences"]


class BackendAnswerGenerator:
    """Prompts a `vertjax.generators.Generator` (e.g. `OpenAIChatGenerator`) with the numbered
    passages in the order given (the `Assistant`'s selector puts the most relevant last, right
    before the question) and parses `[n]` citations from the reply (`answer_text`, then
    `citations.parse_answer`). The prompt's `{domain}` is `domain`; the `Assistant` sets an unset
    one to the index's domain. `last_text` keeps the last raw reply (for reports)."""

    name = "backend"

    def __init__(
        self,
        generator: Any,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        prompt: str = BACKEND_PROMPT,
        domain: str | None = None,
    ):
        if "{passages}" not in prompt or "{question}" not in prompt:
            raise errors.ConfigError("the answer prompt needs {passages} and {question} fields")
        self.generator, self.prompt, self.domain = generator, prompt, domain
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        self.name = f"backend:{getattr(generator, 'name', type(generator).__name__)}"
        self.last_text = ""

    def _prompt(self, question: str, passages: Sequence[Hit]) -> str:
        numbered = "\n".join(
            citations.format_passage(i, p) for i, p in enumerate(_passage_records(passages), 1)
        )
        return self.prompt.format(
            passages=numbered, question=question.strip(), domain=self.domain or NEUTRAL_DOMAIN
        )

    def _options(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "seed": self.seed}

    def _parse(self, text: str, *, truncated: bool, num_passages: int) -> list[Sentence]:
        """The reply's sentences (`answer_text`, then `citations.parse_answer`)."""
        cleaned = answer_text(text, truncated=truncated)
        return citations.parse_answer(cleaned, num_passages=num_passages)["sentences"]

    def _answers(self, sentence: Sentence) -> bool:
        """False for a sentence copied from the prompt's own wording (its worked example)."""
        scaffold = " ".join(
            self.prompt.format(passages="", question="", domain=self.domain or NEUTRAL_DOMAIN)
            .lower()
            .split()
        )
        return sentence["text"].lower().rstrip(".!?") not in scaffold

    def generate(self, question: str, passages: Sequence[Hit]) -> list[Sentence]:
        prompt = self._prompt(question, passages)
        if hasattr(self.generator, "complete"):  # knows when max_tokens cut the answer
            [done] = self.generator.complete([prompt], **self._options())
            text, truncated = done.text, done.truncated
        else:
            [text] = self.generator.generate([prompt], **self._options())
            truncated = False
        self.last_text = text
        parsed = self._parse(text, truncated=truncated, num_passages=len(passages))
        return [s for s in parsed if self._answers(s)]

    def stream(self, question: str, passages: Sequence[Hit]) -> Iterator[Sentence]:
        """`generate`'s sentences, each as soon as the LLM has written it: a sentence is complete
        once the next one has begun (the reply so far, cleaned and parsed, holds a sentence after
        it), the last one when the reply ends. The reply is streamed from a backend that can
        (`OpenAIChatGenerator.stream`); from one that cannot, every sentence comes at the end.

        The same reply gives the same sentences as `generate`: cleaning and parsing only ever
        change the reply's unfinished end, and the end of the reply is parsed as `generate`
        parses it (a sentence cut off by `max_tokens` is dropped)."""
        if not hasattr(self.generator, "stream"):
            yield from self.generate(question, passages)
            return
        text, finish, done = "", None, 0  # done: parsed sentences already complete
        for delta in self.generator.stream(self._prompt(question, passages), **self._options()):
            text += delta.text
            finish = delta.finish_reason or finish
            parsed = self._parse(text, truncated=False, num_passages=len(passages))
            yield from (s for s in parsed[done:-1] if self._answers(s))
            done = max(done, len(parsed) - 1)
        self.last_text = text
        parsed = self._parse(text, truncated=finish == "length", num_passages=len(passages))
        yield from (s for s in parsed[done:] if self._answers(s))


def answer_text(text: str, *, truncated: bool = False) -> str:
    """A backend's reply reduced to its answer: code blocks, an echoed "Question: ..." line, an
    "Answer:" label and list numbers removed (a list item ends as a sentence), and everything from
    a second, made-up question on cut. `truncated`
    (the reply hit `max_tokens`) drops the last sentence when it is unfinished, so a sentence cut
    mid-word is not judged or shown."""
    text = _CODE_FENCE.sub(" ", text)
    lines = text.strip().splitlines()
    while lines and (not lines[0].strip() or _ECHOED_QUESTION.fullmatch(lines[0])):
        lines.pop(0)  # the prompt's question echoed before the answer
    kept = []
    stopped = False  # the last kept line was given a full stop the model had not written
    for line in lines:
        if _ECHOED_QUESTION.fullmatch(line):
            stopped = False  # the line before the made-up question was finished
            break  # the model goes on with a question of its own
        stopped = bool(_LIST_ITEM.match(line))
        if stopped:  # a list item is a sentence of its own, without its number
            line = _LIST_ITEM.sub("", line).rstrip()
            stopped = bool(line) and not _SENTENCE_DONE.search(line)
            line += "." if stopped else ""
        kept.append(line)
    if truncated and stopped:  # the cut fell in that item: without its stop it reads unfinished
        kept[-1] = kept[-1][:-1]
    text = _ANSWER_LABEL.sub("", "\n".join(kept).strip(), count=1).strip()
    if truncated and text and not _COMPLETE_END.search(text):
        ends = [m.end() for m in re.finditer(r"[.!?](?:\s*\[[^\]\n]*\])*(?=\s)", text)]
        text = text[: ends[-1]] if ends else ""
    return text


def openai_generator(
    *, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0
) -> BackendAnswerGenerator:
    """A `BackendAnswerGenerator` over an OpenAI-compatible `/v1/chat/completions` server."""
    return BackendAnswerGenerator(
        openai_chat.OpenAIChatGenerator(
            base_url, model, api_key_env=api_key_env, timeout=timeout, max_retries=2
        )
    )
