"""Out-of-domain refusals, and synthesized instruction JSONL as seqio seq2seq tasks.

A vertical model must refuse what lies outside its domain. `refusal_records` pairs general-
knowledge questions (cooking, sport, geography, ...; written for this project) with one fixed
refusal answer, as instruction records labelled `source: refusal`, to be mixed into instruction
tuning. `run_refusals` grows more such questions with a generator, Self-Instruct style: each
prompt shows shipped and already kept questions in context and asks for new ones, which pass
filters (length, duplicates, `not_a_question` without a final "?", `in_domain` when it names
the domain's words, ROUGE-L >= 0.7 against every question so far) and are paired with the same
fixed refusal. Off-format output is counted (`questions_unparseable` / `questions_empty` per
prompt, `truncated` for the question a `max_tokens` cut-off ended in), never crashed on; the
job resumes like the other synth jobs.
`register_instruction_task` turns instruction records into `{id, inputs, targets}` JSONL
(inputs = formatted instruction + input, targets = output) and registers them with seqio.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vertjax import errors, generators, io_utils
from vertjax.synth import filters, prompts, report, self_qa

if TYPE_CHECKING:
    from vertjax.generators import Generator

JOB = "refusal"
DOMAIN = "the Python standard library"
DEFAULT_REFUSAL = (
    "I can only answer questions about {domain}. This question is outside that domain, "
    "so I cannot answer it reliably."
)
OUT_OF_DOMAIN_QUESTIONS = (
    "How long should I boil an egg to get a soft yolk?",
    "What is a good substitute for buttermilk in pancakes?",
    "How do I make a sourdough starter from scratch?",
    "At what temperature should a roast chicken be cooked?",
    "Which spices go into a classic garam masala?",
    "How do I keep basil fresh for longer?",
    "Who won the FIFA World Cup in 2014?",
    "How many players are on a basketball team on the court?",
    "What is the offside rule in football?",
    "How long is a marathon in kilometres?",
    "Which country has won the most Olympic gold medals in swimming?",
    "What does a birdie mean in golf?",
    "What is the capital of Australia?",
    "Which river is the longest in South America?",
    "How high is Mount Kilimanjaro?",
    "Which countries share a border with Switzerland?",
    "What is the largest desert in Asia?",
    "In which ocean are the Maldives?",
    "Who painted the ceiling of the Sistine Chapel?",
    "When did the Roman Empire in the West fall?",
    "Who was the first woman to win a Nobel Prize?",
    "What caused the French Revolution?",
    "Which composer wrote the Four Seasons?",
    "How many strings does a standard violin have?",
    "What key signature has three sharps?",
    "Who wrote the novel Pride and Prejudice?",
    "What is the plot of Moby-Dick in two sentences?",
    "What is the difference between a sonnet and a haiku?",
    "How often should I water a cactus?",
    "When is the best time to plant tulip bulbs?",
    "Why do leaves change colour in autumn?",
    "How do vaccines train the immune system?",
    "What are the symptoms of the common cold?",
    "How many hours of sleep does an adult need?",
    "How do I train a puppy to sit?",
    "What do rabbits eat?",
    "How should I prepare for a job interview?",
    "What is a good way to save money for retirement?",
    "How does compound interest work on a savings account?",
    "Should I lease or buy a car?",
    "What is the best way to learn to play the guitar?",
    "How do I remove a red wine stain from a carpet?",
    "Which planet has the most moons?",
    "Why is the sky blue?",
    "How far is the Moon from the Earth?",
    "What is the boiling point of water at the top of Mount Everest?",
    "Can you recommend a romantic film for tonight?",
    "What are the rules of chess castling?",
    "How do I change a flat bicycle tyre?",
    "What should I pack for a week of hiking in the Alps?",
    "Translate 'good morning' into Japanese.",
    "Write a poem about the sea.",
)


def refusal_records(
    *,
    questions: Sequence[str] = OUT_OF_DOMAIN_QUESTIONS,
    domain: str = DOMAIN,
    refusal: str = DEFAULT_REFUSAL,
) -> list[dict[str, Any]]:
    """One instruction record per question with the fixed refusal (`{domain}` filled in)."""
    answer = refusal.format(domain=domain)
    return [
        report.make_record(
            instruction=question,
            input_="",
            output=answer,
            source=JOB,
            meta={
                "job": JOB,
                "template": "refusals.v1",
                "backend": "none",
                "model": "none",
                "seed": None,
                "position": f"refusal-{k}",
                "domain": domain,
            },
        )
        for k, question in enumerate(questions)
    ]


# Words that put a question inside the default domain (Python and programming): a generated
# "out-of-domain" question that uses one is rejected as `in_domain`.
DOMAIN_TERMS = (
    "python",
    "code",
    "coding",
    "program",
    "programming",
    "programmer",
    "script",
    "function",
    "module",
    "library",
    "import",
    "class",
    "method",
    "exception",
    "variable",
    "api",
    "syntax",
    "compiler",
    "interpreter",
    "debug",
    "software",
    "stdlib",
)
_CODE_LIKE = re.compile(r"`|\b\w+\.\w+\(|\b[a-z]+_[a-z_]+\b|\w\(\)")


@dataclasses.dataclass(frozen=True)
class RefusalConfig:
    """Knobs of a generated-refusals job (`run_refusals`)."""

    target: int = 50
    max_rounds: int = 10
    prompts_per_round: int = 2
    shipped_examples: int = 6
    generated_examples: int = 2
    questions_per_prompt: int = 8
    min_words: int = 3
    max_words: int = 40
    rouge_threshold: float = 0.7
    domain: str = DOMAIN
    domain_terms: tuple[str, ...] = DOMAIN_TERMS
    refusal: str = DEFAULT_REFUSAL
    max_tokens: int = 256
    temperature: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        if self.domain != DOMAIN and tuple(self.domain_terms) == DOMAIN_TERMS:
            raise errors.ConfigError(
                f"generated refusals for the domain {self.domain!r} need that domain's words "
                "(domain_terms, --domain_terms): the default ones are Python's, so the in_domain "
                "filter would keep the domain's own questions as ones to refuse"
            )


def in_domain(question: str, terms: Sequence[str]) -> bool:
    """Whether `question` names one of the domain `terms` (whole words) or looks like code."""
    lowered = question.lower()
    return bool(_CODE_LIKE.search(question)) or any(
        re.search(rf"\b{re.escape(t.lower())}s?\b", lowered) for t in terms
    )


def _question_reason(
    question: str, *, config: RefusalConfig, pool: filters.RougePool, seen: set[str]
) -> str | None:
    reason = filters.text_reason(
        question, min_words=config.min_words, max_words=config.max_words, seen=seen
    )
    if reason:
        return reason
    if not question.rstrip().endswith("?"):
        return "not_a_question"
    if in_domain(question, config.domain_terms):
        return "in_domain"
    score, _ = pool.nearest(question, stop_at=config.rouge_threshold)
    return "rouge_similar" if score >= config.rouge_threshold else None


def _prompt(
    shipped: Sequence[str], generated: Sequence[str], *, rng: random.Random, config: RefusalConfig
) -> str:
    chosen = rng.sample(list(shipped), min(config.shipped_examples, len(shipped)))
    chosen += rng.sample(list(generated), min(config.generated_examples, len(generated)))
    rng.shuffle(chosen)
    examples = "\n".join(f"{k}. {q}" for k, q in enumerate(chosen, 1))
    return prompts.render(
        "refusal_questions",
        domain=config.domain,
        count=config.questions_per_prompt,
        examples=examples,
    )[0]


def run_refusals(
    generator: Generator,
    out_dir: io_utils.PathLike,
    *,
    shipped: Sequence[str] = OUT_OF_DOMAIN_QUESTIONS,
    config: RefusalConfig = RefusalConfig(),
) -> dict[str, int]:
    """Runs (or resumes) a generated-refusals job into `out_dir` (see the module doc); returns
    {kept, rejected, rounds_run}."""
    if not shipped:
        raise errors.ConfigError("generated refusals need at least one shipped question")
    answer = config.refusal.format(domain=config.domain)
    source = "template" if generator.name == "template" else JOB
    with report.JobLog(out_dir) as log:
        kept = [r["instruction"] for r in log.kept.records]
        pool = filters.RougePool([*shipped, *kept])
        seen = {filters.normalize(q) for q in [*shipped, *kept]}
        rounds = 0
        for r in range(config.max_rounds):
            if len(log.kept.records) >= config.target:
                break
            if log.is_done(f"round-{r}"):
                continue
            rounds += 1
            generated = [k["instruction"] for k in log.kept.records if k["meta"]["round"] < r]
            rng = random.Random(generators.derive_seed(config.seed, r, "examples"))
            prompt_list = [
                _prompt(shipped, generated, rng=rng, config=config)
                for _ in range(config.prompts_per_round)
            ]
            completions = generators.generate_flagging_truncated(
                generator,
                prompt_list,
                max_tokens=config.max_tokens,
                temperature=config.temperature,
                seed=generators.derive_seed(config.seed, r, "questions"),
            )
            for j, (prompt, (completion, truncated)) in enumerate(
                zip(prompt_list, completions, strict=True)
            ):
                meta = {
                    "job": JOB,
                    "template": prompts.get_template("refusal_questions").id,
                    "prompt": prompt,
                    "backend": generator.name,
                    "model": generator.model,
                    "seed": config.seed,
                    "round": r,
                    "domain": config.domain,
                }
                questions = self_qa.parse_questions(completion)
                if not questions:
                    reason = "questions_empty" if not completion.strip() else None
                    record = report.make_record(
                        instruction="",
                        input_="",
                        output=completion.strip(),
                        source=source,
                        meta=dict(meta, position=f"r{r}.p{j}.questions"),
                    )
                    if record["meta"]["position"] not in log.decided:
                        log.reject(record, reason or "questions_unparseable")
                    continue
                # the max_tokens cut fell inside the last question only when the completion
                # ends on its line (not after a newline, nor in text after the list)
                ends_in_question = bool(self_qa.parse_questions(completion.rsplit("\n", 1)[-1]))
                cut = len(questions) - 1 if truncated and ends_in_question else -1
                for c, question in enumerate(questions[: config.questions_per_prompt]):
                    position = f"r{r}.p{j}.c{c}"
                    if position in log.decided:
                        continue
                    record = report.make_record(
                        instruction=question,
                        input_="",
                        output=answer,
                        source=source,
                        meta=dict(meta, position=position),
                    )
                    reason = "truncated" if c == cut else None
                    reason = reason or _question_reason(
                        question, config=config, pool=pool, seen=seen
                    )
                    if reason:
                        log.reject(record, reason)
                    elif log.keep(record):
                        seen.add(filters.normalize(question))
                        pool.add(question)
                        if len(log.kept.records) >= config.target:
                            break
                if len(log.kept.records) >= config.target:
                    break
            if len(log.kept.records) < config.target:
                log.mark_done(f"round-{r}")
        return {
            "kept": len(log.kept.records),
            "rejected": len(log.rejected.records),
            "rounds_run": rounds,
        }


def format_inputs(instruction: str, input_: str = "") -> str:
    """The model input of an instruction record: the instruction, then its input if any."""
    text = f"Instruction: {instruction.strip()}"
    return f"{text}\nInput: {input_.strip()}" if input_.strip() else text


def seq2seq_records(records: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """`{id, inputs, targets}` per instruction record."""
    return [
        {
            "id": r["id"],
            "inputs": format_inputs(r["instruction"], r["input"]),
            "targets": r["output"],
        }
        for r in records
    ]


def _read_instructions(path: str | os.PathLike) -> list[dict[str, Any]]:
    records = io_utils.load_jsonl(path, required_keys=("id", "instruction", "input", "output"))
    for line, r in enumerate(records, start=1):
        if not all(isinstance(r[k], str) for k in ("instruction", "input", "output")):
            raise errors.DataError("instruction/input/output must be strings", path=path, line=line)
    return records


def register_instruction_task(
    name: str,
    *,
    split_files: Mapping[str, str | os.PathLike],
    vocab_path: str | os.PathLike,
    work_dir: str | os.PathLike,
) -> Any:
    """Registers instruction JSONL (one or more files per split) as a seqio seq2seq task.

    Args:
      name: the seqio task name.
      split_files: split -> an instruction JSONL path (or a list of them, concatenated: e.g. the
        Self-Instruct output plus `refusals.jsonl`).
      vocab_path: the SentencePiece model or its `vertjax vocab` folder.
      work_dir: where the converted `{name}.{split}.jsonl` files are written (atomically).

    Returns:
      The registered `seqio.Task`.
    """
    from vertjax.data import tasks

    converted = {}
    for split, paths in split_files.items():
        paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        records = [r for p in paths for r in _read_instructions(p)]
        out = pathlib.Path(work_dir) / f"{name}.{split}.jsonl"
        io_utils.write_jsonl(out, seq2seq_records(records))
        converted[split] = out
    return tasks.register_jsonl_task(
        name,
        split_files=converted,
        vocab_path=vocab_path,
        kind="seq2seq",
        inputs_key="inputs",
        targets_key="targets",
    )
