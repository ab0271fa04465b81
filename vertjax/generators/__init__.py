"""vertjax.generators: text generators behind one small protocol — prompts in, completions out.

Synthesis, context rewriting, keyword extraction and answering share them, so they live below all
four: `t5` (a loaded vertjax T5 checkpoint: `T5Client`, and `T5Generator` over it) and
`openai_chat` (any OpenAI-compatible `/v1/chat/completions` server). The template generator,
which answers the synthesis prompts without a model, belongs to synthesis
(`vertjax.synth.template_backend`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol


class Generator(Protocol):
    """Batched text generation; `name` (backend) and `model` are recorded in every record."""

    name: str
    model: str

    def generate(
        self, prompts: Sequence[str], *, max_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        """One completion per prompt, in order."""
        ...


def generate_flagging_truncated(
    generator: Generator,
    prompts: Sequence[str],
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
) -> list[tuple[str, bool]]:
    """(text, truncated) per prompt. A generator with a `complete` method (the OpenAI backend)
    says which completions stopped at `max_tokens` mid-way; for the others nothing is flagged."""
    complete = getattr(generator, "complete", None)
    kwargs = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
    if complete is None:
        return [(text, False) for text in generator.generate(prompts, **kwargs)]
    return [(c.text, c.truncated) for c in complete(prompts, **kwargs)]


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from a base seed and a position (same position, same seed on resume)."""
    text = "\x1f".join([str(seed), *map(str, parts)])
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF
