"""Fast autoregressive decoding for the T5 encoder-decoder: greedy, sampling and beam search.

Every method runs one `jax.lax.while_loop` over the decoder's key/value cache (one new token per
step, never re-running the prefix) and stops early once every sequence has produced eos. The
cache building blocks (`encode`, `init_cache`, `decode_step`, `set_cache_index`, `tile_beams`,
`gather_beams`) are public so that other decoders, e.g. reference (copy) speculative decoding,
can verify several tokens in one step and rewind the cache after rejected drafts.

T5 conventions: the decoder's first input token is 0 (pad) and eos is 1. Output sequences hold
the generated tokens including eos and are 0-padded after it to `max_decode_length`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from vertjax import errors
from vertjax.models.encoder_decoder import EncoderDecoderModel

Array = jax.Array
Cache = Any

EOS_ID = 1
METHODS = ("greedy", "sample", "beam")
# A finite "minus infinity" for beam scores: sums and divisions of it stay finite and ordered.
NEG_INF = -1.0e7


@dataclasses.dataclass(frozen=True)
class Decoded:
    """What `decode_batch` returns.

    Attributes:
      tokens: `[batch, max_decode_length]` best sequence per example (eos included, 0 after it).
      scores: `[batch]` its score: the sum of the model's log-probabilities of the generated
        tokens (raw logits: no temperature or filtering); for beam search divided by the length
        penalty `((5 + length) / 6) ** alpha`.
      beams: `[batch, num_beams, max_decode_length]` all returned beams, best first (beam only).
      beam_scores: `[batch, num_beams]` their scores (beam only).
    """

    tokens: Array
    scores: Array
    beams: Array | None = None
    beam_scores: Array | None = None


# --- Cache building blocks -------------------------------------------------------------------


def encode(model: EncoderDecoderModel, params: Any, encoder_input_tokens: Array) -> Array:
    """Encoder hidden states `[batch, length, emb_dim]` (no dropout)."""
    return model.module.apply(
        {"params": params}, encoder_input_tokens, enable_dropout=False, method="encode"
    )


def init_cache(
    model: EncoderDecoderModel,
    params: Any,
    *,
    encoded: Array,
    encoder_input_tokens: Array,
    max_decode_length: int,
) -> Cache:
    """An empty decoder cache of `max_decode_length` positions (cache index 0).

    The call also projects `encoded` once into every layer's cross-attention keys and values.
    """
    batch = encoder_input_tokens.shape[0]
    _, variables = model.module.apply(
        {"params": params},
        encoded,
        encoder_input_tokens,
        jnp.zeros((batch, max_decode_length), jnp.int32),
        enable_dropout=False,
        decode=True,
        max_decode_length=max_decode_length,
        method="decode",
        mutable=["cache"],
    )
    return variables["cache"]


def decode_step(
    model: EncoderDecoderModel,
    params: Any,
    *,
    cache: Cache,
    encoded: Array,
    encoder_input_tokens: Array,
    tokens: Array,
    max_decode_length: int,
) -> tuple[Array, Cache]:
    """Feeds `tokens [batch, L]` at the cache index; returns logits `[batch, L, vocab]` and the
    cache with its index advanced by L. Position j's logits predict the token after tokens[:, j].
    """
    logits, variables = model.module.apply(
        {"params": params, "cache": cache},
        encoded,
        encoder_input_tokens,
        tokens,
        enable_dropout=False,
        decode=True,
        max_decode_length=max_decode_length,
        method="decode",
        mutable=["cache"],
    )
    return logits, variables["cache"]


def get_cache_index(cache: Cache) -> Array:
    """The position the next decoded token is written at (a scalar)."""
    return cache["decoder"]["cache_index"]


def set_cache_index(cache: Cache, index: Array | int) -> Cache:
    """Rewinds (or moves) the cache: entries at and past `index` are masked, later overwritten."""
    decoder = dict(cache["decoder"], cache_index=jnp.asarray(index, jnp.int32))
    return dict(cache, decoder=decoder)


def tile_beams(tree: Any, num_beams: int) -> Any:
    """Repeats every leaf with a batch axis `num_beams` times: `[b, ...]` → `[b * num_beams, ...]`
    (example-major, so beam j of example i is row `i * num_beams + j`); scalars (the cache index)
    are left as they are."""
    return jax.tree.map(lambda x: jnp.repeat(x, num_beams, axis=0) if x.ndim else x, tree)


def gather_beams(tree: Any, beam_indices: Array) -> Any:
    """Selects beams per example: leaves `[b * k, ...]` and `beam_indices [b, n]` (values in
    `[0, k)`) → leaves `[b * n, ...]`; scalars (the cache index) are left as they are."""
    batch, num = beam_indices.shape

    def gather(x: Array) -> Array:
        if not x.ndim:
            return x
        beams = x.reshape((batch, -1) + x.shape[1:])
        index = beam_indices.reshape((batch, num) + (1,) * (beams.ndim - 2))
        picked = jnp.take_along_axis(beams, index, axis=1)
        return picked.reshape((batch * num,) + x.shape[1:])

    return jax.tree.map(gather, tree)


def length_penalty(length: Array, alpha: Array | float) -> Array:
    """GNMT/T5X length penalty `((5 + length) / 6) ** alpha`."""
    return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


# --- Sampling --------------------------------------------------------------------------------


def filter_logits(logits: Array, *, top_k: Array | int = 0, top_p: Array | float = 1.0) -> Array:
    """Masks logits `[..., vocab]` outside the top-k and the top-p nucleus with -inf.

    top_k=0 and top_p=1.0 disable the filters (both may be traced). Top-p keeps the smallest set
    of most likely tokens whose probability sums to at least `top_p` (always the most likely
    one), computed on the top-k renormalised distribution. Tokens tied with the last kept one are
    kept too. Thresholds are found by bisection instead of a sort over the vocabulary (a sort of
    32k logits per step costs ~80 ms on CPU; 2 x 32 masked reductions cost ~2 ms).
    """
    keys = _order_keys(logits)
    k = jnp.clip(jnp.where(top_k > 0, top_k, logits.shape[-1]), 1, logits.shape[-1])
    kth = _largest_passing(keys, lambda t: jnp.sum(keys >= t, axis=-1, keepdims=True) >= k)
    logits = jnp.where(keys >= kth, logits, -jnp.inf)
    probs = jax.nn.softmax(logits, axis=-1)
    prob_keys = _order_keys(probs)

    def has_mass(t: Array) -> Array:
        mass = jnp.sum(jnp.where(prob_keys >= t, probs, 0.0), axis=-1, keepdims=True)
        return mass >= top_p

    pth = _largest_passing(prob_keys, has_mass)
    keep = (prob_keys >= pth) | (top_p >= 1.0)  # float rounding must not drop the tail at 1.0
    return jnp.where(keep, logits, -jnp.inf)


def _order_keys(x: Array) -> Array:
    """uint32 keys that sort like the float32 values (negative floats: all bits flipped)."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(1 << 31))


def _largest_passing(keys: Array, passes: Callable[[Array], Array]) -> Array:
    """The largest threshold `[..., 1]` in the keys' range for which the monotone `passes` holds
    (the smallest key if none does), by 32 bisection steps over the uint32 range."""
    lo = jnp.min(keys, axis=-1, keepdims=True)
    hi = jnp.max(keys, axis=-1, keepdims=True)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2 + (hi - lo) % 2  # rounds up without overflowing
        ok = passes(mid)
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, bisect, (lo, jnp.maximum(hi, lo)))
    return lo


def _sample_loop(
    model: EncoderDecoderModel,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_decode_length: int,
    greedy: bool,
    eos_id: int,
    temperature: Array,
    top_k: Array,
    top_p: Array,
    rng: Array,
) -> tuple[Array, Array]:
    """Greedy (argmax) or sampled decoding; returns tokens `[b, max_len]` and log-prob sums."""
    batch = encoder_input_tokens.shape[0]
    encoded = encode(model, params, encoder_input_tokens)
    step_fn = functools.partial(
        decode_step,
        model,
        params,
        encoded=encoded,
        encoder_input_tokens=encoder_input_tokens,
        max_decode_length=max_decode_length,
    )
    cache = init_cache(
        model,
        params,
        encoded=encoded,
        encoder_input_tokens=encoder_input_tokens,
        max_decode_length=max_decode_length,
    )
    state = {
        "i": jnp.array(0, jnp.int32),
        "cache": cache,
        "last": jnp.zeros((batch,), jnp.int32),
        "tokens": jnp.zeros((batch, max_decode_length), jnp.int32),
        "scores": jnp.zeros((batch,), jnp.float32),
        "done": jnp.zeros((batch,), bool),
    }

    def cond(s: dict) -> Array:
        return (s["i"] < max_decode_length) & ~jnp.all(s["done"])

    def body(s: dict) -> dict:
        logits, cache = step_fn(cache=s["cache"], tokens=s["last"][:, None])
        logits = logits[:, 0].astype(jnp.float32)
        if greedy:
            token = jnp.argmax(logits, axis=-1)
        else:
            scaled = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
            token = jax.random.categorical(jax.random.fold_in(rng, s["i"]), scaled, axis=-1)
        token = jnp.where(s["done"], 0, token).astype(jnp.int32)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        token_lp = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
        return {
            "i": s["i"] + 1,
            "cache": cache,
            "last": token,
            "tokens": s["tokens"].at[:, s["i"]].set(token),
            "scores": s["scores"] + jnp.where(s["done"], 0.0, token_lp),
            "done": s["done"] | (token == eos_id),
        }

    final = jax.lax.while_loop(cond, body, state)
    return final["tokens"], final["scores"]


def _beam_loop(
    model: EncoderDecoderModel,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_decode_length: int,
    num_beams: int,
    eos_id: int,
    alpha: Array,
) -> tuple[Array, Array]:
    """Beam search with 2k candidates a step and separate live and finished beams.

    A beam finishes when one of the 2k candidates emits eos or reaches `max_decode_length` (T5X);
    its score is its log-prob divided by the length penalty; the live beams are the k best
    candidates that did not emit eos. The loop stops when, for every example, k beams have finished
    and no live beam can still beat the worst of them. Returns `[b, k, max_len]` sequences and
    `[b, k]` scores, best first.
    """
    batch, k = encoder_input_tokens.shape[0], num_beams
    encoded = encode(model, params, encoder_input_tokens)
    cache = init_cache(
        model,
        params,
        encoded=encoded,
        encoder_input_tokens=encoder_input_tokens,
        max_decode_length=max_decode_length,
    )
    step_fn = functools.partial(
        decode_step,
        model,
        params,
        encoded=tile_beams(encoded, k),
        encoder_input_tokens=tile_beams(encoder_input_tokens, k),
        max_decode_length=max_decode_length,
    )
    empty = jnp.zeros((batch, k, max_decode_length), jnp.int32)
    state = {
        "i": jnp.array(0, jnp.int32),
        "cache": tile_beams(cache, k),
        "live_seqs": empty,
        # only beam 0 is live at the start, so the first step does not pick k copies of a token
        "live_lp": jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF), (batch, 1)),
        "fin_seqs": empty,
        "fin_scores": jnp.full((batch, k), NEG_INF),
        "fin_flags": jnp.zeros((batch, k), bool),
    }
    best_possible_penalty = length_penalty(max_decode_length, alpha)

    def cond(s: dict) -> Array:
        best_live = jnp.max(s["live_lp"], axis=1) / best_possible_penalty
        worst_finished = jnp.min(jnp.where(s["fin_flags"], s["fin_scores"], NEG_INF), axis=1)
        settled = jnp.all(s["fin_flags"], axis=1) & (worst_finished >= best_live)
        return (s["i"] < max_decode_length) & ~jnp.all(settled)

    def body(s: dict) -> dict:
        i = s["i"]
        last = jnp.where(i > 0, s["live_seqs"][:, :, jnp.maximum(i - 1, 0)], 0)
        logits, cache = step_fn(cache=s["cache"], tokens=last.reshape(batch * k, 1))
        log_probs = jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)
        vocab = log_probs.shape[-1]
        candidates = s["live_lp"][:, :, None] + log_probs.reshape(batch, k, vocab)
        cand_lp, flat_index = jax.lax.top_k(candidates.reshape(batch, k * vocab), 2 * k)
        parent, token = flat_index // vocab, flat_index % vocab
        seqs = jnp.take_along_axis(s["live_seqs"], parent[:, :, None], axis=1)
        seqs = seqs.at[:, :, i].set(token)
        # as in T5X: any of the 2k candidates that emits eos (or reaches the last step) competes
        # for the finished set, not only those in the top k (GNMT/HF), so a short hypothesis just
        # outside the live beams is not lost
        is_eos = token == eos_id
        finishing = (cand_lp > NEG_INF / 2) & (is_eos | (i + 1 == max_decode_length))

        new_scores = jnp.where(finishing, cand_lp / length_penalty(i + 1, alpha), NEG_INF)
        all_scores = jnp.concatenate([s["fin_scores"], new_scores], axis=1)
        all_flags = jnp.concatenate([s["fin_flags"], finishing], axis=1)
        all_seqs = jnp.concatenate([s["fin_seqs"], seqs], axis=1)
        fin_scores, fin_pick = jax.lax.top_k(jnp.where(all_flags, all_scores, NEG_INF), k)

        live_lp, live_pick = jax.lax.top_k(jnp.where(is_eos, NEG_INF, cand_lp), k)
        return {
            "i": i + 1,
            "cache": gather_beams(cache, jnp.take_along_axis(parent, live_pick, axis=1)),
            "live_seqs": jnp.take_along_axis(seqs, live_pick[:, :, None], axis=1),
            "live_lp": live_lp,
            "fin_seqs": jnp.take_along_axis(all_seqs, fin_pick[:, :, None], axis=1),
            "fin_scores": fin_scores,
            "fin_flags": jnp.take_along_axis(all_flags, fin_pick, axis=1),
        }

    final = jax.lax.while_loop(cond, body, state)
    return final["fin_seqs"], final["fin_scores"]


@functools.partial(
    jax.jit, static_argnames=("model", "max_decode_length", "method", "num_beams", "eos_id")
)
def _decode_jit(
    model: EncoderDecoderModel,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_decode_length: int,
    method: str,
    num_beams: int,
    eos_id: int,
    temperature: Array,
    top_k: Array,
    top_p: Array,
    alpha: Array,
    rng: Array,
) -> tuple[Array, Array]:
    tokens = encoder_input_tokens.astype(jnp.int32)
    if method == "beam":
        return _beam_loop(
            model,
            params,
            tokens,
            max_decode_length=max_decode_length,
            num_beams=num_beams,
            eos_id=eos_id,
            alpha=alpha,
        )
    return _sample_loop(
        model,
        params,
        tokens,
        max_decode_length=max_decode_length,
        greedy=method == "greedy",
        eos_id=eos_id,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        rng=rng,
    )


def decode_batch(
    model: EncoderDecoderModel,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_decode_length: int,
    method: str = "greedy",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    num_beams: int = 4,
    alpha: float = 0.6,
    seed: int = 0,
    eos_id: int = EOS_ID,
) -> Decoded:
    """Decodes a batch of (0-padded, eos-terminated) encoder inputs `[batch, length]`.

    Args:
      method: "greedy" (argmax), "sample" (temperature, then top-k, then top-p; temperature 0
        means greedy) or "beam".
      max_decode_length: the most tokens generated per example (eos included).
      temperature, top_k, top_p, seed: sampling only (top_k=0 and top_p=1.0 disable filtering).
      num_beams, alpha: beam search only; alpha is the length-penalty exponent (0: none).
      eos_id: the token that ends a sequence.

    One compiled program is cached per (model, shapes, method, num_beams, max_decode_length);
    the sampling and length-penalty numbers are traced, so changing them does not recompile.
    """
    if method not in METHODS:
        raise errors.ConfigError(f"decoding method must be one of {METHODS}, got {method!r}")
    if max_decode_length < 1:
        raise errors.ConfigError(f"max_decode_length must be positive, got {max_decode_length}")
    if temperature < 0 or top_k < 0 or not 0.0 < top_p <= 1.0:
        raise errors.ConfigError(
            f"sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1 "
            f"(got temperature={temperature}, top_k={top_k}, top_p={top_p})"
        )
    if num_beams < 1 or alpha < 0:
        raise errors.ConfigError(
            f"beam search needs num_beams >= 1 and alpha >= 0 (got {num_beams}, {alpha})"
        )
    if method == "beam" and 2 * num_beams > model.config.vocab_size:
        raise errors.ConfigError(
            f"num_beams={num_beams} needs a vocabulary of at least {2 * num_beams} tokens"
        )
    if method == "sample" and temperature == 0:
        method = "greedy"
    tokens, scores = _decode_jit(
        model,
        params,
        jnp.asarray(encoder_input_tokens),
        max_decode_length=max_decode_length,
        method=method,
        num_beams=num_beams if method == "beam" else 1,
        eos_id=eos_id,
        temperature=jnp.float32(temperature),
        top_k=jnp.int32(top_k),
        top_p=jnp.float32(top_p),
        alpha=jnp.float32(alpha),
        rng=jax.random.key(seed),
    )
    if method == "beam":
        return Decoded(tokens[:, 0], scores[:, 0], beams=tokens, beam_scores=scores)
    return Decoded(tokens, scores)
