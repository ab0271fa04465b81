"""Post-processing answers with the NLI model: find unsupported or contradicted sentences and
apply a policy to them (TRUE's use of a consistency model to flag and filter generations).

Each answer sentence is checked against the passages it cites (all passages when it cites none,
or when `use_citations` is off). P(entailment) >= threshold: supported; otherwise contradicted when
the model's argmax label is `contradiction` (or `inconsistent`), else unsupported. Policies:
- drop: remove the sentences that are not supported;
- flag: keep them, marked (`status`, and `flag_marker` in the rendered text);
- regenerate: ask a callable for a replacement, re-check it up to `max_attempts` times, then fall
  back to `fallback` (drop or flag).
`PostprocessConfig` is a plain keyword-only dataclass, so gin binds it
(`postprocess.PostprocessConfig.policy = 'drop'`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from vertjax import errors
from vertjax.consistency import citations

POLICIES = ("drop", "flag", "regenerate")
_NEGATIVE_LABELS = ("contradiction", "inconsistent")


class Predict(Protocol):
    """`Scorer.predict`: premises, hypotheses → objects with `p_entailment` and `label`."""

    def __call__(self, premises: Sequence[str], hypotheses: Sequence[str]) -> Sequence[Any]: ...


# regenerate(sentence {text, citations}, passages, verdict) -> a new {text, citations} or None
Regenerate = Callable[[Mapping[str, Any], Sequence[Mapping[str, str]], Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PostprocessConfig:
    """How answers are checked and what happens to sentences that fail."""

    policy: str = "flag"
    threshold: float = 0.5
    use_citations: bool = True
    flag_marker: str = " [unsupported]"
    max_attempts: int = 1
    fallback: str = "drop"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise errors.ConfigError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.fallback not in ("drop", "flag"):
            raise errors.ConfigError(f"fallback must be 'drop' or 'flag', got {self.fallback!r}")
        if not 0.0 <= self.threshold <= 1.0 or self.max_attempts < 1:
            raise errors.ConfigError("need 0 <= threshold <= 1 and max_attempts >= 1")


def _premise(sentence: Mapping[str, Any], passages: Sequence[Mapping[str, str]], cfg) -> str:
    cited = [c for c in sentence.get("citations", ()) if 1 <= c <= len(passages)]
    chosen = [passages[c - 1] for c in cited] if cfg.use_citations and cited else passages
    return "\n".join(p["text"] for p in chosen)


def check_sentences(
    sentences: Sequence[Mapping[str, Any]],
    passages: Sequence[Mapping[str, str]],
    *,
    predict: Predict,
    config: PostprocessConfig = PostprocessConfig(),
) -> list[dict[str, Any]]:
    """`{text, citations, status, p_entailment}` per sentence (status: supported | unsupported |
    contradicted), one batched NLI call for the whole answer."""
    if not sentences:
        return []
    if not passages:
        raise errors.DataError("cannot check an answer against no passages")
    premises = [_premise(s, passages, config) for s in sentences]
    predictions = predict(premises, [s["text"] for s in sentences])
    out = []
    for sentence, prediction in zip(sentences, predictions, strict=True):
        if prediction.p_entailment >= config.threshold:
            status = "supported"
        elif prediction.label in _NEGATIVE_LABELS:
            status = "contradicted"
        else:
            status = "unsupported"
        out.append(
            {
                "text": sentence["text"],
                "citations": list(sentence.get("citations", ())),
                "status": status,
                "p_entailment": float(prediction.p_entailment),
            }
        )
    return out


def postprocess_answer(
    sentences: Sequence[Mapping[str, Any]],
    passages: Sequence[Mapping[str, str]],
    *,
    predict: Predict,
    config: PostprocessConfig = PostprocessConfig(),
    regenerate: Regenerate | None = None,
) -> dict[str, Any]:
    """Applies the policy; returns `{sentences, checked, text, removed}`.

    `checked` holds every original sentence with its verdict; `sentences` what is kept (with
    `status`, plus `regenerated: True` for replacements); `text` the rendered answer with citations
    and flag markers; `removed` how many sentences were dropped.
    """
    if config.policy == "regenerate" and regenerate is None:
        raise errors.ConfigError("policy 'regenerate' needs a regenerate callable")
    checked = check_sentences(sentences, passages, predict=predict, config=config)
    kept = []
    for verdict in checked:
        if verdict["status"] == "supported":
            kept.append(verdict)
            continue
        action = config.policy
        if action == "regenerate":
            replacement = _regenerate(verdict, passages, predict, config, regenerate)
            if replacement is not None:
                kept.append(replacement)
                continue
            action = config.fallback
        if action == "flag":
            kept.append(verdict)
    return {
        "sentences": kept,
        "checked": checked,
        "text": render(kept, flag_marker=config.flag_marker),
        "removed": len(checked) - len(kept),
    }


def _regenerate(verdict, passages, predict, config, regenerate) -> dict[str, Any] | None:
    """A checked, supported replacement for a failing sentence, or None."""
    current = verdict
    for _ in range(config.max_attempts):
        candidate = regenerate(
            {"text": current["text"], "citations": current["citations"]}, passages, current
        )
        if candidate is None:
            return None
        [current] = check_sentences([candidate], passages, predict=predict, config=config)
        if current["status"] == "supported":
            return dict(current, regenerated=True)
    return None


def render(sentences: Sequence[Mapping[str, Any]], *, flag_marker: str = " [unsupported]") -> str:
    """The answer text with `[n]` citations, flagged sentences followed by `flag_marker`."""
    parts = []
    for s in sentences:
        text = citations.format_sentence(s["text"], s.get("citations", ()))
        parts.append(text + (flag_marker if s.get("status", "supported") != "supported" else ""))
    return " ".join(parts)
