"""Lossless reference (copy) decoding: speculative drafts copied from retrieved passages.

Grounded answers often copy spans of their passages (LLMA, prompt-lookup decoding). After each
step, the last n generated tokens are looked up in the reference tokens; on a match, the K tokens
that follow it there become a draft. One decoder pass over `[last token] + draft` verifies the whole
draft: the longest prefix on which the model's own argmax agrees is accepted, plus the model's next
token. The output is therefore exactly greedy decoding's, token for token, while copied spans cost
one forward pass instead of one per token. Rejected positions are discarded by rewinding the KV
cache index (entries past it are masked and later overwritten).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vertjax.models import decoding
from vertjax.models.encoder_decoder import EncoderDecoderModel

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ReferenceDecoded:
    """Tokens (eos included, decoder start excluded) and how the drafts fared."""

    tokens: list[int]
    forward_passes: int
    drafted_tokens: int
    accepted_tokens: int

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0


def find_draft(
    generated: Sequence[int],
    reference: np.ndarray,
    *,
    max_ngram: int,
    min_ngram: int,
    draft_length: int,
) -> list[int]:
    """The tokens following the first occurrence in `reference` of the longest generated suffix.

    Tries suffix lengths from `max_ngram` down to `min_ngram`; returns [] when none occurs.
    """
    for n in range(min(max_ngram, len(generated)), min_ngram - 1, -1):
        suffix = np.asarray(generated[-n:], dtype=reference.dtype)
        if len(reference) <= n:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(reference[:-1], n)
        hits = np.flatnonzero(np.all(windows == suffix, axis=1))
        if hits.size:
            start = int(hits[0]) + n
            return reference[start : start + draft_length].tolist()
    return []


@functools.partial(jax.jit, static_argnums=(0, 5))
def _verify(model, params, cache, encoded, encoder_input_tokens, max_len, tokens):
    """One decoder pass over `tokens [1, L]`; returns the argmax after each position + cache."""
    logits, cache = decoding.decode_step(
        model,
        params,
        cache=cache,
        encoded=encoded,
        encoder_input_tokens=encoder_input_tokens,
        tokens=tokens,
        max_decode_length=max_len,
    )
    return jnp.argmax(logits[0], axis=-1), cache


@functools.partial(jax.jit, static_argnums=(0, 4))
def _prefill(model, params, encoder_input_tokens, _unused, max_len):
    encoded = decoding.encode(model, params, encoder_input_tokens)
    cache = decoding.init_cache(
        model,
        params,
        encoded=encoded,
        encoder_input_tokens=encoder_input_tokens,
        max_decode_length=max_len,
    )
    return encoded, cache


def reference_greedy_decode(
    model: EncoderDecoderModel,
    params: Any,
    encoder_input_tokens: Array,
    reference_tokens: Sequence[int],
    *,
    max_decode_length: int,
    draft_length: int = 8,
    max_ngram: int = 3,
    min_ngram: int = 2,
    eos_id: int = 1,
    use_drafts: bool = True,
) -> ReferenceDecoded:
    """Greedy decoding of one example (`encoder_input_tokens [1, L]`), accelerated by copying.

    Args:
      reference_tokens: token ids of the retrieved passages the answer may copy from.
      draft_length: K, the most draft tokens verified per forward pass.
      max_ngram / min_ngram: suffix lengths used to find a copy point.
      use_drafts: False gives plain one-token-per-pass greedy through the same code path
        (the baseline of `benchmarks/reference_decoding.py`).
    """
    if encoder_input_tokens.shape[0] != 1:
        raise ValueError("reference decoding works on one example at a time")
    reference = np.asarray(reference_tokens, dtype=np.int32)
    cache_len = max_decode_length + draft_length + 1
    encoded, cache = _prefill(model, params, encoder_input_tokens, None, cache_len)
    generated: list[int] = []
    last = 0  # decoder start token
    index = 0
    passes = drafted = accepted = 0
    while len(generated) < max_decode_length:
        draft = []
        if use_drafts:
            draft = find_draft(
                generated,
                reference,
                max_ngram=max_ngram,
                min_ngram=min_ngram,
                draft_length=min(draft_length, max_decode_length - len(generated) - 1),
            )
        # Two shapes only (1 and 1 + K) so the verifier compiles twice; padding is never accepted.
        padding = [0] * (draft_length - len(draft)) if draft else []
        feed = jnp.asarray([[last, *draft, *padding]], jnp.int32)
        predictions, cache = _verify(
            model, params, cache, encoded, encoder_input_tokens, cache_len, feed
        )
        predictions = np.asarray(predictions).tolist()
        passes += 1
        matched = 0
        while matched < len(draft) and draft[matched] == predictions[matched]:
            matched += 1
        drafted += len(draft)
        accepted += matched
        new_tokens = draft[:matched] + [predictions[matched]]
        if eos_id in new_tokens:
            new_tokens = new_tokens[: new_tokens.index(eos_id) + 1]
        generated.extend(new_tokens[: max_decode_length - len(generated)])
        if generated[-1] == eos_id:
            break
        # Keep `last` and the accepted drafts in the cache; the bonus token is fed next time.
        index += 1 + matched
        cache = decoding.set_cache_index(cache, index)
        last = generated[-1]
    return ReferenceDecoded(generated, passes, drafted, accepted)


def measure_speedup(
    model: EncoderDecoderModel,
    params: Any,
    inputs: Sequence[np.ndarray],
    *,
    max_decode_length: int,
    draft_length: int = 8,
    repeats: int = 1,
    seed: int = 0,
) -> dict[str, float]:
    """Tokens/s of plain greedy vs reference decoding on grounded and ungrounded references.

    The model's own greedy answer to each input defines the text: the grounded reference holds it
    between unrelated tokens (as when an answer copies a retrieved passage), the ungrounded one does
    not. Every output is checked identical to greedy (`AssertionError` otherwise).
    """
    import time

    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    seconds = {"greedy": 0.0, "grounded": 0.0, "ungrounded": 0.0}
    tokens = accepted = drafted = 0
    for example in inputs:
        enc = jnp.asarray(np.asarray(example, np.int32)[None])
        run = functools.partial(
            reference_greedy_decode, model, params, enc, max_decode_length=max_decode_length
        )
        answer = run([], use_drafts=False).tokens
        filler = rng.integers(2, vocab, 2 * 100 + len(answer)).tolist()
        references = {
            "greedy": (filler[:100] + answer + filler[100:200], False),
            "grounded": (filler[:100] + answer + filler[100:200], True),
            "ungrounded": (filler, True),
        }
        for name, (reference, use_drafts) in references.items():
            run(reference, use_drafts=use_drafts, draft_length=draft_length)  # compile
            start = time.perf_counter()
            for _ in range(repeats):
                out = run(reference, use_drafts=use_drafts, draft_length=draft_length)
            seconds[name] += (time.perf_counter() - start) / repeats
            assert out.tokens == answer, f"{name}: reference decoding changed the output"
            if name == "grounded":
                accepted += out.accepted_tokens
                drafted += out.drafted_tokens
        tokens += len(answer)
    result = {f"{k}_tokens_per_second": tokens / v for k, v in seconds.items()}
    result.update(
        tokens=tokens,
        grounded_speedup=seconds["greedy"] / seconds["grounded"],
        ungrounded_speedup=seconds["greedy"] / seconds["ungrounded"],
        grounded_acceptance=accepted / drafted if drafted else 0.0,
    )
    return result
