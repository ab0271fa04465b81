"""Self-QA: question/answer pairs from unstructured documents, with no seed tasks.

For each passage the generator first writes questions without seeing any answer, then answers
each question with the passage in context. Questions and answers pass heuristic filters (length,
duplicates, no "the passage says" references, the answer's words must come from the passage) and
kept pairs carry their `passage_id`, so they also train and evaluate the retriever
(`questions.jsonl`: `{id, question, positive_ids}`).

`template_questions` / `template_answer` are the extractive rules the template backend uses: a
documented name's first sentence ("What does `json.dumps` do?") and "X is Y." definitions.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vertjax import errors, generators, io_utils
from vertjax.synth import filters, kg, prompts, report

if TYPE_CHECKING:
    from vertjax.generators import Generator

JOB = "self-qa"
QUESTIONS_FILE = "questions.jsonl"
_HEADER = re.compile(r"^# (?P<name>[A-Za-z_][\w.]*)(?P<sig>\(.*\))?[ \t]*$", re.MULTILINE)
_NAME_SIGNATURE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?P<sig>\(.*\))?$")
_METHOD_PARAGRAPH = re.compile(
    r"^(?P<name>[A-Za-z_]\w*\.[A-Za-z_]\w*)(?P<sig>\([^\n]*?\))(?: -> [^:\n]+)?: (?P<doc>.+)$",
    re.MULTILINE,
)
_DEFINITION = re.compile(
    r"^(?P<subject>[A-Z`][\w`'.\- ]{1,60}?) (?P<verb>is|are) (?:a|an|the|one) (?P<rest>.{3,})\.$"
)
_NOT_SUBJECTS = frozenset(
    "If When How It That This These Those There Then Here What Which Where While Although "
    "Because Since Unless Note See Also Each Every Some All Such Only So But And Or As For "
    "In On At By With Otherwise Instead However Thus Below Above Return Returns".split()
)
_NUMBERED = re.compile(r"^\s*(?:\d+[.)]|[-*])\s*(?P<text>.+?)\s*$")
# "Question: ...", "Q2) ...": how small LLMs often label questions instead of numbering them.
_LABELLED = re.compile(r"^\s*Q(?:uestion)?\s*\d*\s*[:.)]\s*(?P<text>.+?)\s*$", re.IGNORECASE)
_ANSWER_REASONS = (
    "answer_empty",
    "answer_truncated",
    "answer_context_reference",
    "answer_too_long",
    "answer_not_in_passage",
)


@dataclasses.dataclass(frozen=True)
class SelfQAConfig:
    """Knobs of a Self-QA job."""

    questions_per_passage: int = 4
    min_question_words: int = 3
    max_question_words: int = 60
    max_answer_words: int = 200
    min_answer_overlap: float = 0.6
    batch_size: int = 16
    max_tokens: int = 256
    temperature: float = 0.7
    seed: int = 0


def _documented_names(title: str, text: str) -> dict[str, tuple[str, str]]:
    """name -> (signature, first sentence of its documentation) for the names a passage
    documents: its section (`title` "module > pkg.name(sig)", when the passage starts the
    section), `# name(sig)` headers and `Class.method(sig): doc` paragraphs."""
    found = {}
    section = _NAME_SIGNATURE.match(title.split(" > ")[-1].strip())
    if section and "." in section.group("name") and text[:1].isupper():
        found[section.group("name")] = (section.group("sig") or "", kg.first_sentence(text))
    headers = list(_HEADER.finditer(text))
    for i, m in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[m.end() : end]
        found[m.group("name")] = (m.group("sig") or "", kg.first_sentence(body.strip()))
    owner = section.group("name") if section else ""
    for m in _METHOD_PARAGRAPH.finditer(text):
        name = m.group("name")
        if "__" in name:
            continue
        if owner and name.split(".")[0] == owner.rsplit(".", 1)[-1]:
            name = owner.rsplit(".", 1)[0] + "." + name
        found.setdefault(name, (m.group("sig"), kg.first_sentence(m.group("doc"))))
    return found


def _definitions(text: str) -> list[tuple[str, str, str]]:
    """(subject, verb, sentence) for "X is a/an/the Y." sentences outside code sections."""
    plain = _HEADER.sub(" ", text)
    out = []
    for paragraph in plain.split("\n\n"):
        if paragraph.lstrip().startswith((">>>", "-", "*", "#")):
            continue
        lines = paragraph.strip().splitlines()
        while len(lines) > 1 and len(lines[0].split()) <= 4 and not lines[0].endswith((".", ":")):
            lines = lines[1:]  # a heading line glued to the paragraph
        for sentence in kg.split_sentences("\n".join(lines)):
            m = _DEFINITION.match(sentence)
            if not m or len(m.group("subject").split()) > 5:
                continue
            if m.group("subject").split()[0] in _NOT_SUBJECTS:
                continue
            out.append((m.group("subject"), m.group("verb"), sentence))
    return out


def _subject_phrase(subject: str) -> str:
    """The subject as it reads mid-question: a capitalized common first word is lowercased."""
    first, _, rest = subject.partition(" ")
    if first in ("A", "An", "The") or (first[:1].isupper() and first[1:].islower()):
        first = first.lower()
    return f"{first} {rest}".strip()


def template_questions(title: str, text: str, *, count: int) -> list[str]:
    """Up to `count` questions the passage answers, in passage order."""
    questions = []
    for name, (signature, sentence) in _documented_names(title, text).items():
        if sentence:
            questions.append(f"What does `{name}` do?")
        if signature:
            questions.append(f"What is the signature of `{name}`?")
    for subject, verb, _ in _definitions(text):
        questions.append(f"What {verb} {_subject_phrase(subject)}?")
    return list(dict.fromkeys(questions))[:count]


def template_answer(title: str, text: str, question: str) -> str:
    """The passage's answer to a `template_questions` question ('' when it has none)."""
    names = _documented_names(title, text)
    m = re.fullmatch(r"What does `([\w.]+)` do\?", question)
    if m and m.group(1) in names:
        return names[m.group(1)][1]
    m = re.fullmatch(r"What is the signature of `([\w.]+)`\?", question)
    if m and names.get(m.group(1), ("", ""))[0]:
        return f"`{m.group(1)}{names[m.group(1)][0]}`"
    m = re.fullmatch(r"What (?:is|are) (.+)\?", question)
    if m:
        for subject, _, sentence in _definitions(text):
            if _subject_phrase(subject) == m.group(1):
                return sentence
    return ""


def parse_questions(text: str) -> list[str]:
    """Numbered, bulleted or "Question:"-labelled lines of a question-generation completion (the
    lines a model wrote after them, e.g. an "Answer:" it was told not to write, are ignored)."""
    questions = []
    for line in text.splitlines():
        m = _LABELLED.match(line) or _NUMBERED.match(line)
        if m:
            questions.append(m.group("text"))
    return questions


def load_passages(path: io_utils.PathLike) -> list[dict[str, Any]]:
    """Passages `{id, text[, title]}` from a JSONL file or a built data pack folder."""
    path = pathlib.Path(path)
    if path.is_dir():
        from vertjax.data import packs

        return packs.load_passages(path)
    records = io_utils.load_jsonl(path, required_keys=("id", "text"))
    ids = set()
    for line, record in enumerate(records, start=1):
        if record["id"] in ids:
            raise errors.DataError(f"duplicate passage id {record['id']!r}", path=path, line=line)
        ids.add(record["id"])
    return records


def _question_reason(question: str, *, config: SelfQAConfig, seen: set[str]) -> str | None:
    reason = filters.text_reason(
        question,
        min_words=config.min_question_words,
        max_words=config.max_question_words,
        seen=seen,
        prefix="question_",
    )
    if reason:
        return reason
    return "question_context_reference" if filters.context_reference(question) else None


def _answer_reason(answer: str, passage: str, *, config: SelfQAConfig) -> str | None:
    if not answer.strip():
        return "answer_empty"
    if filters.context_reference(answer):
        return "answer_context_reference"
    if len(answer.split()) > config.max_answer_words:
        return "answer_too_long"
    return filters.grounding_reason(
        answer,
        reference=passage,
        min_overlap=config.min_answer_overlap,
        reason="answer_not_in_passage",
    )


def run_self_qa(
    passages: Sequence[dict[str, Any]],
    generator: Generator,
    out_dir: io_utils.PathLike,
    *,
    config: SelfQAConfig = SelfQAConfig(),
) -> dict[str, int]:
    """Runs (or resumes) a Self-QA job into `out_dir`; returns {kept, rejected} totals."""
    source = "template" if generator.name == "template" else JOB
    with report.JobLog(out_dir) as log:
        seen = {filters.normalize(r["instruction"]) for r in log.kept.records}
        for b in range(0, len(passages), config.batch_size):
            batch = [p for p in passages[b : b + config.batch_size] if not log.is_done(p["id"])]
            if not batch:
                continue
            batch_index = b // config.batch_size
            rendered = [
                prompts.render(
                    "self_qa_questions",
                    count=config.questions_per_passage,
                    title=p.get("title", ""),
                    text=p["text"],
                )[0]
                for p in batch
            ]
            completions = generator.generate(
                rendered,
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                seed=generators.derive_seed(config.seed, batch_index, "questions"),
            )
            todo = []
            for passage, completion, question_prompt in zip(
                batch, completions, rendered, strict=True
            ):
                questions = parse_questions(completion)[: config.questions_per_passage]
                if not questions:
                    _reject_unparseable(
                        log, passage, completion, question_prompt, generator, config
                    )
                for k, question in enumerate(questions):
                    position = f"{passage['id']}:q{k}"
                    done = log.decided.get(position)
                    if done is not None:
                        if done["meta"].get("reason", _ANSWER_REASONS[0]) in _ANSWER_REASONS:
                            seen.add(filters.normalize(question))
                        continue
                    answer_prompt, template = prompts.render(
                        "self_qa_answer",
                        title=passage.get("title", ""),
                        text=passage["text"],
                        question=question,
                    )
                    meta = {
                        "job": JOB,
                        "passage_id": passage["id"],
                        "template": template.id,
                        "template_sha256": template.sha256,
                        "prompt": answer_prompt,
                        "backend": generator.name,
                        "model": generator.model,
                        "seed": config.seed,
                        "position": position,
                    }
                    reason = _question_reason(question, config=config, seen=seen)
                    if reason:
                        log.reject(
                            report.make_record(
                                instruction=question, input_="", output="", source=source, meta=meta
                            ),
                            reason,
                        )
                        continue
                    seen.add(filters.normalize(question))
                    todo.append((passage, question, meta))
            answers = (
                generators.generate_flagging_truncated(
                    generator,
                    [meta["prompt"] for _, _, meta in todo],
                    max_tokens=config.max_tokens,
                    temperature=0.0,
                    seed=generators.derive_seed(config.seed, batch_index, "answers"),
                )
                if todo
                else []
            )
            for (passage, question, meta), (answer, truncated) in zip(todo, answers, strict=True):
                answer = answer.strip()
                record = report.make_record(
                    instruction=question, input_="", output=answer, source=source, meta=meta
                )
                reason = "answer_truncated" if truncated and answer else None
                reason = reason or _answer_reason(
                    answer, f"{passage.get('title', '')}\n{passage['text']}", config=config
                )
                if reason:
                    log.reject(record, reason)
                else:
                    log.keep(record)
            for passage in batch:
                log.mark_done(passage["id"])
        _write_retrieval_questions(log.kept.records, pathlib.Path(out_dir) / QUESTIONS_FILE)
        return {"kept": len(log.kept.records), "rejected": len(log.rejected.records)}


def _reject_unparseable(
    log: report.JobLog,
    passage: dict[str, Any],
    completion: str,
    prompt: str,
    generator: Generator,
    config: SelfQAConfig,
) -> None:
    """Counts a question completion with no numbered or bulleted line (an LLM that ignored the
    format, or one cut off by `max_tokens`) as `questions_unparseable`, or `questions_empty` when
    it is blank, once per passage. The template backend's blank answer means "nothing to ask
    here" (no documented name or definition) and is not a rejection."""
    position = f"{passage['id']}:questions"
    blank = not completion.strip()
    if position in log.decided or (blank and generator.name == "template"):
        return
    meta = {
        "job": JOB,
        "passage_id": passage["id"],
        "prompt": prompt,
        "backend": generator.name,
        "model": generator.model,
        "seed": config.seed,
        "position": position,
    }
    source = "template" if generator.name == "template" else JOB
    record = report.make_record(
        instruction="", input_="", output=completion.strip(), source=source, meta=meta
    )
    log.reject(record, "questions_empty" if blank else "questions_unparseable")


def _write_retrieval_questions(records: Sequence[dict[str, Any]], path: pathlib.Path) -> None:
    io_utils.write_jsonl(
        path,
        (
            {"id": r["id"], "question": r["instruction"], "positive_ids": [r["meta"]["passage_id"]]}
            for r in records
        ),
    )
