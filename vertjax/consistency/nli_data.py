"""NLI training data in the T5/TRUE text-to-text format: real sets through tfds, and pairs
synthesised offline from a domain passage corpus.

Every record is `{id, premise, hypothesis, label, inputs, targets, ...}` with
`inputs = "hypothesis: H premise: P"` (`format_input`) and `targets` the label word (3-way `entailment|neutral|
contradiction`, or TRUE's binary `consistent|inconsistent`), so the same JSONL feeds a seqio
`seq2seq` task, `vertjax eval consistency` and the lexical baseline.

Synthesis (no downloads): for a window of prose sentences from a passage (the premise),
- entailment: one of its sentences, lightly trimmed or rephrased;
- contradiction: one of its sentences after a rule-based perturbation (negation inserted or removed,
  a number changed, a word swapped for its antonym, a code identifier or name swapped for one from
  another passage of the same split);
- neutral: a sentence from another passage of the same document (the same topic).
Documents, not passages, are split into train/validation/test, so no premise, hypothesis source or
swapped keyword crosses splits.
"""

from __future__ import annotations

import os
import pathlib
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils
from vertjax.consistency import lexicon, paraphrase
from vertjax.data import corpora

NLI_LABELS = ("entailment", "neutral", "contradiction")
BINARY_LABELS = ("consistent", "inconsistent")
SPLITS = ("train", "validation", "test")
_LABEL_ALIASES = {"e": "entailment", "n": "neutral", "c": "contradiction"}

PathLike = str | os.PathLike


def format_input(premise: str, hypothesis: str) -> str:
    """The T5 NLI input string, hypothesis first.

    TRUE writes `premise: P hypothesis: H`; T5 trims inputs from the end, so with a long premise
    that order cuts the hypothesis off (22 % of the demo's pairs at 128 tokens). Hypothesis first,
    trimming only shortens the premise.
    """
    return f"hypothesis: {hypothesis} premise: {premise}"


def to_binary(label: str) -> str:
    """3-way (or binary) label → TRUE's binary label: entailment is consistent, the rest not."""
    label = normalize_label(label)
    return "consistent" if label in ("entailment", "consistent") else "inconsistent"


def is_positive(label: str) -> bool:
    """True when the label means the hypothesis is supported (entailment / consistent)."""
    return to_binary(label) == "consistent"


def normalize_label(value: Any, *, path: PathLike | None = None, line: int | None = None) -> str:
    """A label string from a record (3-way, binary or ANLI's e/n/c); anything else is a DataError."""
    if isinstance(value, str):
        label = _LABEL_ALIASES.get(value.strip().lower(), value.strip().lower())
        if label in NLI_LABELS or label in BINARY_LABELS:
            return label
    raise errors.DataError(
        f"label {value!r} is not one of {NLI_LABELS + BINARY_LABELS}", path=path, line=line
    )


def make_record(
    *, id: str, premise: str, hypothesis: str, label: str, binary: bool = False, **extra: Any
) -> dict[str, Any]:
    """One NLI record with its seq2seq `inputs`/`targets` (binary targets when `binary`)."""
    label = normalize_label(label)
    return {
        "id": id,
        "premise": premise,
        "hypothesis": hypothesis,
        "label": label,
        "inputs": format_input(premise, hypothesis),
        "targets": to_binary(label) if binary else label,
        **extra,
    }


def write_splits(records: Mapping[str, Sequence[dict[str, Any]]], out_dir: PathLike) -> dict:
    """Writes `{split}.jsonl` atomically per split; returns split → record count."""
    out_dir = pathlib.Path(out_dir)
    return {
        split: io_utils.write_jsonl(out_dir / f"{split}.jsonl", rows)
        for split, rows in records.items()
    }


# ----------------------------------------------------------------------------------------------
# tfds: ANLI, MultiNLI, SNLI
# ----------------------------------------------------------------------------------------------
# name → (tfds name, premise feature, our split → tfds split)
TFDS_SOURCES: dict[str, tuple[str, str, dict[str, str]]] = {
    "anli": ("anli/r1", "context", {"train": "train", "validation": "validation", "test": "test"}),
    "anli/r1": (
        "anli/r1",
        "context",
        {"train": "train", "validation": "validation", "test": "test"},
    ),
    "anli/r2": (
        "anli/r2",
        "context",
        {"train": "train", "validation": "validation", "test": "test"},
    ),
    "anli/r3": (
        "anli/r3",
        "context",
        {"train": "train", "validation": "validation", "test": "test"},
    ),
    "multi_nli": (
        "multi_nli",
        "premise",
        {"train": "train", "validation": "validation_matched", "test": "validation_mismatched"},
    ),
    "snli": ("snli", "premise", {"train": "train", "validation": "validation", "test": "test"}),
}


def tfds_records(
    name: str,
    *,
    split: str,
    data_dir: str | None = None,
    binary: bool = False,
    max_examples: int | None = None,
) -> Iterator[dict[str, Any]]:
    """NLI records from a prepared tfds dataset (never downloads); unlabelled examples are skipped.

    Args:
      name: a key of `TFDS_SOURCES` (`anli` is round 1; `anli/r2`, `anli/r3` the others).
      split: train | validation | test (mapped to the dataset's own split names).
    """
    import tensorflow_datasets as tfds

    if name not in TFDS_SOURCES:
        raise errors.ConfigError(
            f"unknown NLI dataset {name!r} (choose from {sorted(TFDS_SOURCES)})"
        )
    tfds_name, premise_key, split_map = TFDS_SOURCES[name]
    if split not in split_map:
        raise errors.ConfigError(f"split must be one of {sorted(split_map)}, got {split!r}")
    dataset, info = corpora.load_prepared_tfds(tfds_name, split=split_map[split], data_dir=data_dir)
    names = [normalize_label(n) for n in info.features["label"].names]
    count = 0
    for index, example in enumerate(tfds.as_numpy(dataset)):
        label_index = int(example["label"])
        if label_index < 0:  # SNLI pairs without a gold label
            continue
        if max_examples is not None and count >= max_examples:
            break
        yield make_record(
            id=f"{name}/{split}/{index}",
            premise=example[premise_key].decode("utf-8"),
            hypothesis=example["hypothesis"].decode("utf-8"),
            label=names[label_index],
            binary=binary,
            source=name,
        )
        count += 1


# ----------------------------------------------------------------------------------------------
# Sentences of a passage
# ----------------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\||\+[-=+]|[-=]{3,}|[{}\[\]#$])")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def prose_sentences(text: str) -> list[str]:
    """The prose sentences of a passage: code, tables and rule lines dropped, lines re-joined."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [ln.strip() for ln in paragraph.splitlines() if ln.strip()]
        if not lines or any(_CODE_LINE.match(ln) for ln in lines):
            continue
        joined = " ".join(lines)
        sentences.extend(s.strip() for s in _SENTENCE_END.split(joined) if s.strip())
    return sentences


def is_claim_like(sentence: str, *, min_words: int = 6, max_words: int = 40) -> bool:
    """A sentence fit to be a hypothesis: mostly words, a reasonable length, ends like prose."""
    tokens = sentence.split()
    if not min_words <= len(tokens) <= max_words or not sentence.endswith("."):
        return False
    wordy = sum(1 for t in tokens if _WORD.fullmatch(t.strip(".,;:()\"'")))
    return wordy / len(tokens) >= 0.7


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


# ----------------------------------------------------------------------------------------------
# Entailed rewrites and contradicting perturbations
# ----------------------------------------------------------------------------------------------
_DISCOURSE = re.compile(
    r"^(However|Also|Moreover|Furthermore|In addition|In fact|Of course|Note that|Note:)\s*,?\s+"
)
_PARENTHETICAL = re.compile(r"\s*\([^()]{1,80}\)")
_CONTRACTIONS = (
    ("is not", "isn't"),
    ("are not", "aren't"),
    ("does not", "doesn't"),
    ("do not", "don't"),
    ("cannot", "can't"),
    ("will not", "won't"),
)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def entailed_variants(sentence: str) -> list[tuple[str, str]]:
    """(transform, text) rewrites of a sentence that its source still entails; verbatim first."""
    out = [("verbatim", sentence)]
    trimmed = _DISCOURSE.sub("", sentence)
    if trimmed != sentence:
        out.append(("drop_discourse_marker", _capitalise(trimmed)))
    no_paren = _PARENTHETICAL.sub("", sentence)
    if no_paren != sentence and len(no_paren.split()) >= 5:
        out.append(("drop_parenthetical", no_paren))
    for long, short in _CONTRACTIONS:
        for a, b in ((long, short), (short, long)):
            pattern = re.compile(rf"\b{re.escape(a)}\b")
            if pattern.search(sentence):
                out.append(("contraction", pattern.sub(b, sentence, count=1)))
    if "e.g." in sentence:
        out.append(("expand_abbreviation", sentence.replace("e.g.", "for example", 1)))
    return out


_NEGATABLE = re.compile(
    r"\b(is|are|was|were|can|will|should|must|may|does|do|has been|have been)\b(?! not\b)"
)
_NEGATED = (
    (re.compile(r"\b(is|are|was|were|will|should|must|may|does|do) not\b"), r"\1"),
    (re.compile(r"\bcannot\b"), "can"),
    (re.compile(r"\b(is|are|does|do|was|were|ca|wo)n't\b"), None),
    (re.compile(r"\bnever\b"), "always"),
    (re.compile(r"\bno longer\b"), "still"),
)
_UNCONTRACT = {
    "is": "is",
    "are": "are",
    "does": "does",
    "do": "do",
    "was": "was",
    "were": "were",
    "ca": "can",
    "wo": "will",
}
_NUMBER = re.compile(r"(?<![\w.])\d{1,6}(?![\w.]\d)")
_NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)
_NUMBER_WORD = re.compile(rf"\b({'|'.join(_NUMBER_WORDS)})\b", re.IGNORECASE)
_IDENTIFIER = re.compile(
    r"(?<![\w.])(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*(?:\(\))?"  # dotted names: os.path.join
    r"|(?<![\w.])[A-Za-z]\w*_\w+(?:\(\))?"  # snake_case
    r"|(?<![\w.])[a-z]\w*\(\)"  # call()
    r"|(?<=\s)[A-Z][a-z]+[A-Z]\w*"  # CamelCase
)
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{2,}\b")  # capitalised names inside a sentence


def negate(sentence: str, rng: random.Random) -> str | None:
    """Inserts a negation after an auxiliary verb (`is` → `is not`, `can` → `cannot`)."""
    matches = list(_NEGATABLE.finditer(sentence))
    if not matches:
        return None
    m = rng.choice(matches)
    verb = m.group(1)
    if verb == "can":
        replacement = "cannot"
    elif verb.endswith(" been"):
        replacement = verb.replace(" been", " not been")
    else:
        replacement = f"{verb} not"
    return sentence[: m.start()] + replacement + sentence[m.end() :]


def unnegate(sentence: str, rng: random.Random) -> str | None:
    """Removes a negation (`is not` → `is`, `cannot` → `can`, `never` → `always`)."""
    options = [(p, r) for p, r in _NEGATED if p.search(sentence)]
    if not options:
        return None
    pattern, replacement = rng.choice(options)
    if replacement is None:
        return pattern.sub(lambda m: _UNCONTRACT[m.group(1)], sentence, count=1)
    return pattern.sub(replacement, sentence, count=1)


def swap_number(sentence: str, rng: random.Random) -> str | None:
    """Changes one number (digits or a number word up to ten) to a different one."""
    digits = list(_NUMBER.finditer(sentence))
    spelled = list(_NUMBER_WORD.finditer(sentence))
    if not digits and not spelled:
        return None
    m = rng.choice(digits + spelled)
    if m in digits:
        value = int(m.group(0))
        new = str(
            rng.choice(
                [v for v in (value + 1, value * 2, max(value - 1, 0), value + 10) if v != value]
            )
        )
    else:
        current = m.group(0).lower()
        new = rng.choice([w for w in _NUMBER_WORDS[1:] if w != current])
    return sentence[: m.start()] + new + sentence[m.end() :]


def swap_antonym(sentence: str, rng: random.Random, antonyms: Mapping[str, str]) -> str | None:
    """Replaces one word that has an antonym in `antonyms` (case kept for a leading capital)."""
    candidates = [m for m in re.finditer(r"[A-Za-z]+", sentence) if m.group(0).lower() in antonyms]
    if not candidates:
        return None
    m = rng.choice(candidates)
    new = antonyms[m.group(0).lower()]
    if m.group(0)[0].isupper():
        new = _capitalise(new)
    return sentence[: m.start()] + new + sentence[m.end() :]


def keywords(text: str) -> list[str]:
    """Code identifiers and capitalised names in a text: the swap candidates."""
    return [m.group(0) for m in _IDENTIFIER.finditer(text)] + [
        m.group(0) for m in _NAME.finditer(text)
    ]


def swap_keyword(
    sentence: str, rng: random.Random, *, pool: Sequence[str], premise: str
) -> str | None:
    """Replaces an identifier/name with one from `pool` (other passages) absent from the premise."""
    found = [k for k in dict.fromkeys(keywords(sentence))]
    if not found or not pool:
        return None
    old = rng.choice(found)
    kind = _IDENTIFIER if _IDENTIFIER.fullmatch(old) else _NAME
    choices = [k for k in pool if k != old and k not in premise and bool(kind.fullmatch(k))]
    if not choices:
        return None
    return sentence.replace(old, rng.choice(choices), 1)


def contradict(
    sentence: str,
    rng: random.Random,
    *,
    antonyms: Mapping[str, str],
    pool: Sequence[str],
    premise: str,
) -> tuple[str, str] | None:
    """(perturbation, text): one applicable perturbation chosen at random, or None."""
    perturbations = {
        "negate": lambda: negate(sentence, rng),
        "unnegate": lambda: unnegate(sentence, rng),
        "number": lambda: swap_number(sentence, rng),
        "antonym": lambda: swap_antonym(sentence, rng, antonyms),
        "keyword": lambda: swap_keyword(sentence, rng, pool=pool, premise=premise),
    }
    names = list(perturbations)
    rng.shuffle(names)
    for name in names:
        result = perturbations[name]()
        if result is not None and result != sentence:
            return name, result
    return None


# ----------------------------------------------------------------------------------------------
# Synthesis
# ----------------------------------------------------------------------------------------------
def split_documents(
    doc_ids: Iterable[str], *, seed: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, str]:
    """doc_id → split, seeded; every split gets at least one document when there are three."""
    docs = sorted(set(doc_ids))
    random.Random(seed).shuffle(docs)
    n = len(docs)
    n_val = max(1, round(fractions[1] * n)) if n >= 3 else 0
    n_test = max(1, round(fractions[2] * n)) if n >= 3 else 0
    assignment = {}
    for i, doc in enumerate(docs):
        assignment[doc] = "validation" if i < n_val else "test" if i < n_val + n_test else "train"
    return assignment


def _windows(sentences: Sequence[str], size: int, rng: random.Random) -> list[int]:
    starts = list(range(max(1, len(sentences) - size + 1)))
    rng.shuffle(starts)
    return starts


# Transforms whose hypotheses defeat word overlap: low-overlap entailments, high-overlap negatives.
ADVERSARIAL_TRANSFORMS = frozenset(
    {
        "paraphrase",
        "negate",
        "unnegate",
        "number",
        "antonym",
        "swap_roles",
        "swap_literal",
        "splice_unsupported",
        "append_unsupported",
    }
)


def _entailed(
    claim: str, rng: random.Random, synonyms: Mapping[str, Sequence[str]], paraphrase_rate: float
):
    """(transform, text): verbatim-like variants, a dropped conjunct, reordering or a paraphrase."""
    options = entailed_variants(claim)
    for name, make in (
        ("drop_conjunct", lambda: paraphrase.drop_conjunct(claim, rng)),
        ("reorder_condition", lambda: paraphrase.reorder_condition(claim)),
    ):
        text = make()
        if text:
            options.append((name, text))
    if rng.random() < paraphrase_rate:
        text, count = paraphrase.substitute_synonyms(claim, rng, synonyms, rate=0.6)
        if count:
            return "paraphrase", text
    return rng.choice(options)


def _contradicted(claim: str, rng: random.Random, **context: Any) -> tuple[str, str] | None:
    extra = [("swap_roles", paraphrase.swap_roles), ("swap_literal", paraphrase.swap_literal)]
    rng.shuffle(extra)
    if rng.random() < 0.3:
        for name, make in extra:
            text = make(claim, rng)
            if text and text != claim:
                return name, text
    return contradict(claim, rng, **context)


def _neutral(claim: str, others: Sequence[str], rng: random.Random) -> tuple[str, str]:
    """An on-topic unsupported hypothesis: another sentence of the document, or one spliced from
    a premise sentence and another sentence's predicate (worded like the premise)."""
    other = rng.choice(others)
    roll = rng.random()
    if roll < 0.3:
        text = paraphrase.splice_unsupported(claim, other, rng)
        if text:
            return "splice_unsupported", text
    elif roll < 0.5:
        text = paraphrase.append_unsupported(claim, other)
        if text:
            return "append_unsupported", text
    return "same_document", other


def synthesize(
    passages: Sequence[Mapping[str, str]],
    *,
    seed: int = 0,
    per_passage: int = 1,
    premise_sentences: int = 4,
    binary: bool = False,
    antonyms: Mapping[str, str] | None = None,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    paraphrase_rate: float = 0.4,
    surface_paraphrase_rate: float = 0.35,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> dict[str, list[dict[str, Any]]]:
    """Synthesised NLI records per split from passages `{id, doc_id, title, text}`.

    Each premise window (up to `premise_sentences` prose sentences) yields one entailed, one
    contradicting and one neutral hypothesis, so the labels are balanced and every premise is seen
    with all three; `per_passage` windows are drawn per passage. Entailments include paraphrases
    (`paraphrase_rate` of them)
    that share few words with the premise, negatives include rewrites that keep its words
    (`paraphrase`), and `surface_paraphrase_rate` of all hypotheses, whatever their label, get
    synonyms swapped in (`surface_synonyms` counts them), so word overlap is no shortcut. Each
    record says its `synthesis` transform and whether it is in the `adversarial` slice
    (`ADVERSARIAL_TRANSFORMS`).
    """
    antonyms = lexicon.antonyms() if antonyms is None else antonyms
    synonyms = lexicon.synonyms() if synonyms is None else synonyms
    rng = random.Random(seed)
    assignment = split_documents((p["doc_id"] for p in passages), seed=seed, fractions=fractions)
    prose = {p["id"]: prose_sentences(p["text"]) for p in passages}
    by_doc: dict[str, list[Mapping[str, str]]] = {}
    pools: dict[str, list[str]] = {s: [] for s in SPLITS}
    for p in passages:
        by_doc.setdefault(p["doc_id"], []).append(p)
        pools[assignment[p["doc_id"]]].extend(keywords(" ".join(prose[p["id"]])))
    pools = {s: sorted(set(pool)) for s, pool in pools.items()}
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for p in passages:
        split = assignment[p["doc_id"]]
        others = [
            s
            for q in by_doc[p["doc_id"]]
            if q["id"] != p["id"]
            for s in prose[q["id"]]
            if is_claim_like(s)
        ]
        sentences = prose[p["id"]]
        for k, start in enumerate(_windows(sentences, premise_sentences, rng)[:per_passage]):
            window = sentences[start : start + premise_sentences]
            claims = [s for s in window if is_claim_like(s)]
            premise = " ".join(window)
            neutral = [s for s in others if s not in premise]
            if not claims or not neutral:
                continue
            contradiction = None
            for source in rng.sample(claims, len(claims)):
                contradiction = _contradicted(
                    source, rng, antonyms=antonyms, pool=pools[split], premise=premise
                )
                if contradiction is not None:
                    break
            if contradiction is None:
                continue
            entailed = _entailed(rng.choice(claims), rng, synonyms, paraphrase_rate)
            base = {"doc_id": p["doc_id"], "passage_id": p["id"]}
            for label, (how, hypothesis) in (
                ("entailment", entailed),
                ("contradiction", (contradiction[0], contradiction[1])),
                ("neutral", _neutral(rng.choice(claims), neutral, rng)),
            ):
                swapped = 0
                if how != "paraphrase" and rng.random() < surface_paraphrase_rate:
                    changed = " ".join(set(hypothesis.split()) - set(premise.split()))
                    hypothesis, swapped = paraphrase.substitute_synonyms(
                        hypothesis, rng, synonyms, rate=0.3, protect=changed
                    )
                out[split].append(
                    make_record(
                        id=f"{p['id']}/{k}/{label}",
                        premise=premise,
                        hypothesis=hypothesis,
                        label=label,
                        binary=binary,
                        synthesis=how,
                        surface_synonyms=swapped,
                        adversarial=how in ADVERSARIAL_TRANSFORMS,
                        **base,
                    )
                )
    for records in out.values():
        rng.shuffle(records)
    return out
