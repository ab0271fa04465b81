"""The template generator: answers the synthesis prompts without a model.

It recognizes the synthesis prompts (`prompts.parse`) and answers them deterministically from a
knowledge graph and the passage in the prompt, so offline runs produce correct, checkable (and
unsurprising) data, labelled `source: template`. It follows the `vertjax.generators.Generator`
protocol, like the T5 and OpenAI-compatible generators there.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from vertjax.synth import kg, prompts, report, self_qa

_CLASSIFICATION_HINTS = re.compile(
    r"^(is|are|does|do|can|classify|which of|identify whether|decide whether)\b|yes or no|true or false",
    re.IGNORECASE,
)
NEW_INSTRUCTIONS_PER_PROMPT = 8
# Question frames and fillers (written for this project) the template backend fills in as new
# out-of-domain questions for `refusals.run_refusals`: correct, but as repetitive as templates are.
OUT_OF_DOMAIN_FRAMES = (
    ("How do I cook {}?", ("rice", "lentils", "a steak", "salmon", "fresh spinach")),
    ("What is the capital of {}?", ("Canada", "Kenya", "Peru", "Norway", "Vietnam")),
    ("Who won the {} in 2010?", ("Tour de France", "Super Bowl", "Champions League")),
    ("How often should I water {}?", ("an orchid", "tomato plants", "a lawn", "a bonsai")),
    ("What are the health benefits of {}?", ("green tea", "swimming", "yoga", "cycling")),
    ("When was {} built?", ("the Eiffel Tower", "the Colosseum", "Machu Picchu")),
)


class TemplateGenerator:
    """Answers the synthesis prompts from KG facts and the prompt's own passage, with no model."""

    name = "template"

    def __init__(self, triples: Sequence[dict[str, str]] | None = None):
        triples = kg.extract_triples() if triples is None else triples
        self.model = "kg-templates-v1:" + report.stable_id(
            *(f"{t['subject']}|{t['relation']}|{t['object']}" for t in triples)
        )
        self._bank: dict[str, list[kg.FactItem]] = {}
        self._by_entity: dict[str, list[kg.FactItem]] = {}
        for entity, facts in kg.entity_facts(triples).items():
            items = kg.entity_instructions(entity, facts)
            self._by_entity[entity] = items
            for item in items:
                self._bank.setdefault(item.instruction, []).append(item)
        self._instructions = sorted(self._bank)
        self._handlers: dict[str, Callable[[dict[str, str], random.Random], str]] = {
            "self_instruct_generate": self._new_instructions,
            "self_instruct_classify": self._classify,
            "self_instruct_output_first": self._output_first,
            "self_instruct_input_first": self._input_first,
            "self_instruct_dialogue": self._dialogue,
            "self_qa_questions": self._questions,
            "self_qa_answer": self._answer,
            "self_kg": self._kg_examples,
            "refusal_questions": self._refusal_questions,
        }

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int = 0,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[str]:
        """`max_tokens` and `temperature` do not apply (answers are facts); `seed` and the
        prompt pick among equally correct answers."""
        return [self._complete(p, seed=seed) for p in prompts]

    def _complete(self, prompt: str, *, seed: int) -> str:
        parsed = prompts.parse(prompt)
        if parsed is None:
            return ""
        template, fields = parsed
        rng = random.Random(report.stable_id(str(seed), prompt))
        return self._handlers[template.name](fields, rng)

    def _new_instructions(self, fields: dict[str, str], rng: random.Random) -> str:
        shown = set(re.findall(r"^Task \d+: (.*)$", fields["examples"], re.MULTILINE))
        sample = rng.sample(self._instructions, k=min(len(self._instructions), 32))
        picks = [i for i in sample if i not in shown][:NEW_INSTRUCTIONS_PER_PROMPT]
        first = int(fields["next"]) if fields["next"].strip().isdigit() else 1
        return "\n".join(
            (f"Task {first + k}: " if k else " ") + instruction
            for k, instruction in enumerate(picks)
        ).strip()

    def _classify(self, fields: dict[str, str], rng: random.Random) -> str:
        items = self._bank.get(fields["instruction"].strip())
        if items:
            return "Yes" if items[0].is_classification else "No"
        return "Yes" if _CLASSIFICATION_HINTS.search(fields["instruction"].strip()) else "No"

    def _output_first(self, fields: dict[str, str], rng: random.Random) -> str:
        items = self._bank.get(fields["instruction"].strip())
        if not items:
            return ""
        item = rng.choice(items)
        return f"Class label: {item.output}\nInput: {item.input or 'None'}"

    def _input_first(self, fields: dict[str, str], rng: random.Random) -> str:
        items = self._bank.get(fields["instruction"].strip())
        if not items:
            return ""
        item = rng.choice(items)
        return f"Input: {item.input or 'None'}\nOutput: {item.output}"

    def _dialogue(self, fields: dict[str, str], rng: random.Random) -> str:
        items = self._bank.get(fields["instruction"].strip())
        if not items:
            return ""
        item = rng.choice(items)
        follow_ups = [
            other
            for other in self._by_entity[item.entity]
            if other.family != item.family and not other.input and not other.is_classification
        ]
        if not follow_ups:
            return ""
        follow = rng.choice(follow_ups)
        first = f"{item.instruction} {item.input}".strip()
        return (
            f"User: {first}\nAssistant: {item.output}\n"
            f"User: {follow.instruction}\nAssistant: {follow.output}"
        )

    def _questions(self, fields: dict[str, str], rng: random.Random) -> str:
        count = int(fields["count"]) if fields["count"].isdigit() else 4
        questions = self_qa.template_questions(fields["title"], fields["text"], count=count)
        return "\n".join(f"{k}. {q}" for k, q in enumerate(questions, start=1))

    def _answer(self, fields: dict[str, str], rng: random.Random) -> str:
        return self_qa.template_answer(fields["title"], fields["text"], fields["question"].strip())

    def _kg_examples(self, fields: dict[str, str], rng: random.Random) -> str:
        count = int(fields["count"]) if fields["count"].isdigit() else 4
        items = kg.entity_instructions(fields["entity"], kg.parse_facts(fields["facts"]))
        chosen = sorted(rng.sample(range(len(items)), k=min(count, len(items))))
        return "\n###\n".join(
            f"Instruction: {items[i].instruction}\nInput: {items[i].input or 'None'}\n"
            f"Output: {items[i].output}"
            for i in chosen
        )

    def _refusal_questions(self, fields: dict[str, str], rng: random.Random) -> str:
        """Out-of-domain questions filled into fixed frames (`OUT_OF_DOMAIN_FRAMES`), none of
        those the prompt shows: the template's stand-in for an LLM's new questions."""
        count = int(fields["count"]) if fields["count"].isdigit() else 8
        shown = set(re.findall(r"^\d+\. (.*)$", fields["examples"], re.MULTILINE))
        bank = [frame.format(slot) for frame, slots in OUT_OF_DOMAIN_FRAMES for slot in slots]
        unseen = [q for q in bank if q not in shown]
        picks = rng.sample(unseen, k=min(count, len(unseen)))
        return "\n".join(f"{k}. {q}" for k, q in enumerate(picks, start=1))
