"""Text generators behind one small protocol: prompts in, completions out.

- `T5Generator`: a vertjax T5 checkpoint decoded with `vertjax.models.decoding` (quality is that
  of the checkpoint: the tiny demo models write noise; a converted instruction-tuned T5 is usable).
- `OpenAIChatGenerator`: any OpenAI-compatible `/v1/chat/completions` server (vLLM, llama.cpp
  server, ...) with timeouts, bounded retries with exponential backoff, a concurrency limit and a
  `BackendError` when the server cannot be reached. The quality of a strong LLM.
- `TemplateGenerator`: no model. It recognizes the synthesis prompts (`prompts.parse`) and answers
  them deterministically from a knowledge graph and the passage in the prompt, so offline runs
  produce correct, checkable (and unsurprising) data, labelled `source: template`.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from vertjax import errors
from vertjax.synth import kg, prompts, report, self_qa

BACKENDS = ("template", "openai", "t5")
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_CLASSIFICATION_HINTS = re.compile(
    r"^(is|are|does|do|can|classify|which of|identify whether|decide whether)\b|yes or no|true or false",
    re.IGNORECASE,
)
NEW_INSTRUCTIONS_PER_PROMPT = 8


class Generator(Protocol):
    """Batched text generation; `name` (backend) and `model` are recorded in every record."""

    name: str
    model: str

    def generate(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        """One completion per prompt, in order."""
        ...


class T5Generator:
    """Decodes prompts with a vertjax T5 checkpoint (sampling when temperature > 0)."""

    name = "t5"

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike,
        vocab_path: str | os.PathLike,
        *,
        batch_size: int = 8,
        max_input_length: int = 512,
        top_k: int = 0,
        top_p: float = 1.0,
    ):
        from vertjax.models import encoder_decoder

        if batch_size < 1 or max_input_length < 2:
            raise errors.ConfigError("T5Generator needs batch_size >= 1 and max_input_length >= 2")
        loaded = encoder_decoder.load_pretrained(checkpoint_dir, vocab_path)
        self.vocab, self.params, self.t5 = loaded.vocabulary, loaded.params, loaded.model
        self.model = f"{loaded.model_dir}@{loaded.step}"
        self.batch_size, self.max_input_length = batch_size, max_input_length
        self.top_k, self.top_p = top_k, top_p

    def _tokens(self, batch: Sequence[str]) -> Any:
        """`[batch_size, bucket]` eos-terminated, 0-padded to a power of two (few compilations)."""
        import numpy as np

        rows = [
            self.vocab.encode(p)[: self.max_input_length - 1] + [self.vocab.eos_id] for p in batch
        ]
        bucket = min(self.max_input_length, max(8, 1 << (max(map(len, rows)) - 1).bit_length()))
        tokens = np.zeros((self.batch_size, bucket), np.int32)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        return tokens

    def generate(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        import numpy as np

        from vertjax.models import decoding

        outputs = []
        for start in range(0, len(prompts), self.batch_size):
            batch = prompts[start : start + self.batch_size]
            result = decoding.decode_batch(
                self.t5,
                self.params,
                self._tokens(batch),
                max_decode_length=max_tokens,
                method="sample" if temperature > 0 else "greedy",
                temperature=temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                seed=report.derive_seed(seed, start),
            )
            tokens = np.asarray(result.tokens)
            outputs += [self.vocab.decode(tokens[i].tolist()) for i in range(len(batch))]
        return outputs


class OpenAIChatGenerator:
    """Calls an OpenAI-compatible chat completions endpoint, one request per prompt."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_retries < 0 or concurrency < 1 or timeout <= 0 or backoff < 0:
            raise errors.ConfigError(
                "openai backend needs timeout > 0, max_retries >= 0, backoff >= 0, concurrency >= 1"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.concurrency = concurrency
        self._sleep = sleep

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> str:
        """One completion, retried on 429/5xx, timeouts and refused connections."""
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                logging.info("%s: retry %d in %.2fs (%s)", self.url, attempt, delay, last)
                self._sleep(delay)
            request = urllib.request.Request(self.url, data=data, headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode("utf-8", "replace")
                if e.code not in _RETRY_STATUS:
                    hint = f" (is ${self.api_key_env} set?)" if e.code in (401, 403) else ""
                    raise errors.BackendError(
                        f"{self.url}: HTTP {e.code}{hint}: {detail}"
                    ) from None
                last = f"HTTP {e.code}"
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = f"{type(reason).__name__}: {reason}"
                continue
            return self._content(payload)
        raise errors.BackendError(
            f"{self.url}: no answer after {self.max_retries + 1} attempt(s) (last: {last}); "
            "is the server running and the base URL right?"
        )

    def _content(self, payload: bytes) -> str:
        try:
            content = json.loads(payload)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise errors.BackendError(
                f"{self.url}: not a chat completion response: {payload[:200]!r}"
            ) from None
        return content if isinstance(content, str) else ""

    def generate(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        bodies = [
            {
                "model": self.model,
                "messages": [{"role": "user", "content": p}],
                "max_tokens": max_tokens,
                "temperature": temperature,
                "seed": report.derive_seed(seed, i),
            }
            for i, p in enumerate(prompts)
        ]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._post, bodies))


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


def make_generator(backend: str, **options: Any) -> Generator:
    """A generator by backend name; `options` are the constructor's keyword arguments."""
    if backend == "template":
        return TemplateGenerator(**options)
    if backend == "openai":
        return OpenAIChatGenerator(**options)
    if backend == "t5":
        return T5Generator(**options)
    raise errors.ConfigError(f"unknown backend {backend!r} (choose from {BACKENDS})")
