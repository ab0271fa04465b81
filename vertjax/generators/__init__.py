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


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from a base seed and a position (same position, same seed on resume)."""
    text = "\x1f".join([str(seed), *map(str, parts)])
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF
