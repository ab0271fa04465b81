"""Tests for vertjax.models.decoding on a tiny random T5: the cached loops against full re-runs."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vertjax import errors
from vertjax.models import decoding, encoder_decoder, t5

MAX_LEN = 10
CONFIG = t5.T5Config(
    vocab_size=32,
    emb_dim=16,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=8,
    mlp_dim=32,
)
MODEL = encoder_decoder.EncoderDecoderModel(CONFIG)
_LOGITS = jax.jit(MODEL.logits)


@pytest.fixture(scope="module")
def params():
    # seed 3 gives varied (not single-token) greedy outputs for the inputs below
    return MODEL.init_params(jax.random.key(3))


@pytest.fixture(scope="module")
def inputs() -> jax.Array:
    tokens = np.random.RandomState(0).randint(3, CONFIG.vocab_size, (4, 7))
    tokens[:, -1] = decoding.EOS_ID
    tokens[2, 4:] = 0  # a padded example
    tokens[2, 3] = decoding.EOS_ID
    return jnp.asarray(tokens, jnp.int32)


@pytest.fixture(scope="module")
def greedy_default_eos(params, inputs) -> np.ndarray:
    return np.asarray(
        decoding.decode_batch(MODEL, params, inputs, max_decode_length=MAX_LEN).tokens
    )


@pytest.fixture(scope="module")
def eos_id(greedy_default_eos) -> int:
    """A token the random model emits, used as eos: it ends some rows mid-way and not others
    (the random model never emits the real eos, so this is how eos handling gets exercised)."""
    tokens = greedy_default_eos
    for token in np.unique(tokens):
        rows = [np.flatnonzero(row == token) for row in tokens]
        firsts = [r[0] for r in rows if r.size]
        if firsts and min(firsts) >= 1 and len(firsts) < len(rows):
            return int(token)
    raise AssertionError(f"no usable eos stand-in in {tokens}")


@pytest.fixture(scope="module")
def greedy(params, inputs, eos_id) -> decoding.Decoded:
    return decoding.decode_batch(
        MODEL, params, inputs, max_decode_length=MAX_LEN, method="greedy", eos_id=eos_id
    )


def _lengths(tokens: np.ndarray, eos_id: int) -> np.ndarray:
    """Generated length per row: up to and including the first eos, else the full length."""
    is_eos = tokens == eos_id
    return np.where(is_eos.any(-1), is_eos.argmax(-1) + 1, tokens.shape[-1])


def _full_logits(params, inputs: jax.Array, decoder_inputs: np.ndarray) -> np.ndarray:
    """Teacher-forced logits of the whole model (no cache), nothing masked on the decoder side."""
    batch = {
        "encoder_input_tokens": inputs,
        "decoder_input_tokens": jnp.asarray(decoder_inputs),
        "decoder_target_tokens": jnp.ones(decoder_inputs.shape, jnp.int32),
    }
    return np.asarray(_LOGITS(params, batch))


def _model_log_prob(params, inputs, tokens: np.ndarray, eos_id: int) -> np.ndarray:
    """Sum of the full model's log-probabilities of each row's generated tokens."""
    shifted = np.concatenate([np.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
    log_probs = jax.nn.log_softmax(_full_logits(params, inputs, shifted), axis=-1)
    token_lp = np.take_along_axis(np.asarray(log_probs), tokens[..., None], axis=-1)[..., 0]
    weights = np.arange(tokens.shape[1])[None] < _lengths(tokens, eos_id)[:, None]
    return np.sum(token_lp * weights, axis=1)


def test_greedy_with_cache_matches_full_rerun_on_growing_prefix(params, inputs, eos_id, greedy):
    tokens = np.asarray(greedy.tokens)
    lengths = _lengths(tokens, eos_id)
    assert 1 < lengths.min() < MAX_LEN == lengths.max()  # some rows stop early, some don't
    for i in range(MAX_LEN):
        # the prefix [0, t_0 .. t_{i-1}], right-padded to one shape so the jitted model is reused
        prefix = np.zeros((len(tokens), MAX_LEN), np.int32)
        prefix[:, 1 : i + 1] = tokens[:, :i]
        expected = _full_logits(params, inputs, prefix)[:, i].argmax(-1)
        active = i < lengths
        np.testing.assert_array_equal(tokens[active, i], expected[active])
    np.testing.assert_allclose(
        greedy.scores, _model_log_prob(params, inputs, tokens, eos_id), rtol=1e-5, atol=1e-5
    )


def test_eos_stops_each_sequence(greedy_default_eos, eos_id, greedy):
    tokens = np.asarray(greedy.tokens)
    lengths = _lengths(tokens, eos_id)
    for row, length in enumerate(lengths):
        assert tokens[row, length - 1] == eos_id or length == MAX_LEN
        assert not tokens[row, length:].any()  # 0 after eos
        np.testing.assert_array_equal(tokens[row, :length], greedy_default_eos[row, :length])


@pytest.mark.parametrize("settings", [{"temperature": 1e-6}, {"top_k": 1}, {"temperature": 0.0}])
def test_sampling_degenerates_to_greedy(params, inputs, eos_id, greedy, settings):
    out = decoding.decode_batch(
        MODEL, params, inputs, max_decode_length=MAX_LEN, method="sample", eos_id=eos_id, **settings
    )
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    np.testing.assert_allclose(out.scores, greedy.scores, rtol=1e-6)


def test_sampling_is_seeded_and_respects_top_k(params, inputs, eos_id):
    def sample(seed: int) -> np.ndarray:
        return np.asarray(
            decoding.decode_batch(
                MODEL,
                params,
                inputs,
                max_decode_length=MAX_LEN,
                method="sample",
                top_k=3,
                seed=seed,
                eos_id=eos_id,
            ).tokens
        )

    first, again, other = sample(5), sample(5), sample(6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    shifted = np.concatenate([np.zeros_like(first[:, :1]), first[:, :-1]], axis=1)
    logits = _full_logits(params, inputs, shifted)
    rank = (logits > np.take_along_axis(logits, first[..., None], -1)).sum(-1)
    valid = np.arange(MAX_LEN)[None] < _lengths(first, eos_id)[:, None]
    assert rank[valid].max() < 3


def test_filter_logits_top_k_and_top_p():
    probs = np.array([0.05, 0.5, 0.15, 0.3], np.float32)
    logits = jnp.log(jnp.asarray(probs))

    def kept(**kwargs) -> list[int]:
        return np.flatnonzero(np.isfinite(decoding.filter_logits(logits, **kwargs))).tolist()

    assert kept() == [0, 1, 2, 3]
    assert kept(top_k=1) == [1]
    assert kept(top_k=2) == [1, 3]
    assert kept(top_k=9) == [0, 1, 2, 3]
    assert kept(top_p=0.5) == [1]  # 0.5 alone reaches 0.5
    assert kept(top_p=0.6) == [1, 3]
    assert kept(top_p=0.9) == [1, 2, 3]
    assert kept(top_p=0.99) == [0, 1, 2, 3]
    # top-p applies to the top-k renormalised distribution: 0.5 / 0.8 = 0.625 >= 0.6
    assert kept(top_k=2, top_p=0.6) == [1]
    kept_values = decoding.filter_logits(logits, top_k=2)
    np.testing.assert_array_equal(kept_values[jnp.array([1, 3])], logits[jnp.array([1, 3])])
    batched = decoding.filter_logits(jnp.stack([logits, -logits]), top_k=jnp.int32(1))
    assert np.isfinite(batched).sum(-1).tolist() == [1, 1]
    assert int(np.argmax(batched[1])) == 0


def _reference_filter(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """Sort-based top-k then top-p for one row (no ties), as the textbook defines them."""
    order = np.argsort(-logits)
    keep = order[: top_k or len(order)]
    probs = np.exp(logits[keep] - logits[keep].max())
    probs /= probs.sum()
    mass_before = np.cumsum(probs) - probs
    keep = keep[mass_before < top_p] if top_p < 1.0 else keep
    return np.isin(np.arange(len(logits)), keep)


@pytest.mark.parametrize("top_k", [0, 1, 5, 17])
@pytest.mark.parametrize("top_p", [1.0, 0.3, 0.75, 0.95])
def test_filter_logits_matches_sort_based_reference(top_k, top_p):
    logits = np.random.RandomState(top_k).normal(scale=3.0, size=(6, 50)).astype(np.float32)
    logits[1, :10] = -np.inf  # already masked tokens
    got = np.isfinite(
        np.asarray(decoding.filter_logits(jnp.asarray(logits), top_k=top_k, top_p=top_p))
    )
    expected = np.stack([_reference_filter(row, top_k, top_p) for row in logits])
    expected &= np.isfinite(logits)
    np.testing.assert_array_equal(got, expected)


def _reference_beam_search(params, inputs, *, num_beams: int, eos_id: int, alpha: float):
    """T5X's beam search written plainly, with full re-runs: each step takes the 2k best
    extensions of the live beams; every one of them that emits eos (or reaches MAX_LEN) becomes a
    finished candidate scored by log-prob / length penalty; the k best that did not emit eos stay
    live. Returns each example's k best finished `(score, tokens)`, best first."""
    vocab = CONFIG.vocab_size
    results = []
    for row in range(inputs.shape[0]):
        live: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
        finished: list[tuple[float, tuple[int, ...]]] = []
        for i in range(MAX_LEN):
            decoder_inputs = np.zeros((len(live), MAX_LEN), np.int32)
            for j, (_, seq) in enumerate(live):
                decoder_inputs[j, 1 : i + 1] = seq
            logits = _full_logits(
                params, jnp.repeat(inputs[row : row + 1], len(live), 0), decoder_inputs
            )
            log_probs = np.asarray(jax.nn.log_softmax(logits[:, i], axis=-1))
            candidates = sorted(
                (
                    (lp + log_probs[j, t], seq + (t,))
                    for j, (lp, seq) in enumerate(live)
                    for t in range(vocab)
                ),
                key=lambda c: -c[0],
            )[: 2 * num_beams]
            penalty = float(decoding.length_penalty(i + 1, alpha))
            finished += [
                (lp / penalty, seq)
                for lp, seq in candidates
                if seq[-1] == eos_id or i + 1 == MAX_LEN
            ]
            live = [c for c in candidates if c[1][-1] != eos_id][:num_beams]
        results.append(sorted(finished, key=lambda c: -c[0])[:num_beams])
    return results


@pytest.mark.parametrize(("num_beams", "alpha"), [(1, 0.0), (2, 0.6), (4, 0.0)])
def test_beam_search_finishes_any_of_the_2k_candidates_as_t5x_does(
    params, inputs, eos_id, num_beams, alpha
):
    out = decoding.decode_batch(
        MODEL,
        params,
        inputs,
        max_decode_length=MAX_LEN,
        method="beam",
        num_beams=num_beams,
        alpha=alpha,
        eos_id=eos_id,
    )
    expected = _reference_beam_search(
        params, inputs, num_beams=num_beams, eos_id=eos_id, alpha=alpha
    )
    for example, best in enumerate(expected):
        want_scores = [score for score, _ in best]
        np.testing.assert_allclose(
            np.asarray(out.beam_scores)[example], want_scores, rtol=1e-4, atol=1e-4
        )
        for beam, (_, seq) in enumerate(best):
            got = np.asarray(out.beams)[example, beam]
            np.testing.assert_array_equal(got[: len(seq)], seq)
            assert not got[len(seq) :].any()


def test_one_beam_scores_at_least_greedy(params, inputs, eos_id, greedy):
    out = decoding.decode_batch(
        MODEL, params, inputs, max_decode_length=MAX_LEN, method="beam", num_beams=1, eos_id=eos_id
    )
    greedy_score = _model_log_prob(params, inputs, np.asarray(greedy.tokens), eos_id)
    assert np.all(np.asarray(out.scores) >= greedy_score - 1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_scores_and_order(params, inputs, eos_id, greedy, alpha):
    out = decoding.decode_batch(
        MODEL,
        params,
        inputs,
        max_decode_length=MAX_LEN,
        method="beam",
        num_beams=4,
        alpha=alpha,
        eos_id=eos_id,
    )
    beams, beam_scores = np.asarray(out.beams), np.asarray(out.beam_scores)
    assert beams.shape == (inputs.shape[0], 4, MAX_LEN)
    assert np.all(np.diff(beam_scores, axis=1) <= 0)  # best first
    flat = beams.reshape(-1, MAX_LEN)
    lengths = _lengths(flat, eos_id)
    for row, length in zip(flat, lengths, strict=True):
        assert not row[length:].any()
    rescored = _model_log_prob(params, jnp.repeat(inputs, 4, axis=0), flat, eos_id)
    penalty = np.asarray(decoding.length_penalty(lengths, alpha))
    np.testing.assert_allclose(beam_scores.reshape(-1), rescored / penalty, rtol=1e-5, atol=1e-5)
    for example in range(inputs.shape[0]):  # distinct hypotheses
        assert len({tuple(b) for b in beams[example]}) == 4
    if alpha == 0.0:
        greedy_score = _model_log_prob(params, inputs, np.asarray(greedy.tokens), eos_id)
        assert np.all(beam_scores[:, 0] >= greedy_score - 1e-5)
        assert np.any(beam_scores[:, 0] > greedy_score + 1e-3)  # beam search found better ones


def test_length_penalty_formula():
    np.testing.assert_allclose(decoding.length_penalty(7, 0.6), (12 / 6) ** 0.6, rtol=1e-6)
    assert float(decoding.length_penalty(30, 0.0)) == 1.0


def test_multi_token_step_and_rewind_match_single_steps(params, inputs):
    encoded = decoding.encode(MODEL, params, inputs)
    kwargs = {"encoded": encoded, "encoder_input_tokens": inputs, "max_decode_length": MAX_LEN}
    cache = decoding.init_cache(MODEL, params, **kwargs)
    drafts = jnp.asarray(np.random.RandomState(1).randint(2, 32, (inputs.shape[0], 3)), jnp.int32)
    feed = jnp.concatenate([jnp.zeros_like(drafts[:, :1]), drafts], axis=1)

    step = jax.jit(
        functools.partial(decoding.decode_step, MODEL), static_argnames="max_decode_length"
    )
    single, step_cache = [], cache
    for j in range(feed.shape[1]):
        logits, step_cache = step(params, cache=step_cache, tokens=feed[:, j : j + 1], **kwargs)
        single.append(logits[:, 0])
    together, cache = step(params, cache=cache, tokens=feed, **kwargs)
    np.testing.assert_allclose(together, jnp.stack(single, axis=1), rtol=1e-5, atol=1e-5)
    assert int(decoding.get_cache_index(cache)) == feed.shape[1]

    # reject the last two drafts: rewind to after token 1 and feed a different token
    rewound = decoding.set_cache_index(cache, 2)
    other = (feed[:, 2:3] + 1) % CONFIG.vocab_size
    logits, rewound = step(params, cache=rewound, tokens=other, **kwargs)
    prefix = np.zeros((inputs.shape[0], MAX_LEN), np.int32)
    prefix[:, :3] = np.concatenate([feed[:, :2], other], axis=1)
    expected = _full_logits(params, inputs, prefix)[:, 2]
    np.testing.assert_allclose(logits[:, 0], expected, rtol=1e-5, atol=1e-5)
    assert int(decoding.get_cache_index(rewound)) == 3


def test_tile_and_gather_beams():
    tree = {"x": jnp.arange(6).reshape(2, 3), "index": jnp.array(4)}
    tiled = decoding.tile_beams(tree, 2)
    np.testing.assert_array_equal(tiled["x"][:, 0], [0, 0, 3, 3])
    assert tiled["index"].shape == ()
    picked = decoding.gather_beams(
        tiled | {"x": tiled["x"] + jnp.array([0, 10, 0, 10])[:, None]}, jnp.array([[1, 1], [0, 1]])
    )
    np.testing.assert_array_equal(picked["x"][:, 0], [10, 10, 3, 13])
    assert int(picked["index"]) == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "nucleus"},
        {"max_decode_length": 0},
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_k": -2},
        {"method": "beam", "num_beams": 0},
        {"method": "beam", "alpha": -0.5},
        {"method": "beam", "num_beams": 17},  # 2 * 17 candidates > 32 tokens
    ],
)
def test_bad_settings_raise_config_error(params, inputs, kwargs):
    kwargs = {"max_decode_length": MAX_LEN} | kwargs
    with pytest.raises(errors.ConfigError):
        decoding.decode_batch(MODEL, params, inputs, **kwargs)
