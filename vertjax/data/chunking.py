"""Documents → passages: token-bounded chunking that respects headings and paragraphs, stable
passage ids, near-duplicate removal (MinHash over word shingles) and a by-document split.

Tokens here are an approximation of a subword vocabulary: every run of word characters (up to
`MAX_WORD_CHARS` of them) and every single punctuation mark counts as one token (`count_tokens`). A chunk is a slice of the original
text, so its token count is exact under that definition and never exceeds `max_tokens`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from vertjax import errors

# A word longer than MAX_WORD_CHARS counts as several tokens (a subword vocabulary splits it
# too), so a chunk of `max_tokens` tokens stays short even over a line without spaces.
MAX_WORD_CHARS = 64
TOKEN_RE = re.compile(rf"\w{{1,{MAX_WORD_CHARS}}}|[^\w\s]")
TOKENIZER = f"approx: \\w{{1,{MAX_WORD_CHARS}}} runs + punctuation"  # as packs record it
SPLITS = ("train", "validation", "test")
# Where a passage comes from, copied from its document: a relative file path and a URL.
CITATION_KEYS = ("source", "url")


def count_tokens(text: str) -> int:
    """Approximate subword token count: word runs plus punctuation marks."""
    return sum(1 for _ in TOKEN_RE.finditer(text))


MAX_TITLE_CHARS = 120


def cap_title(title: str, *, limit: int = MAX_TITLE_CHARS) -> str:
    """`title` cut to at most `limit` characters at a word boundary, `…` marking the cut (a
    one-line file's first line is its title: a 50 MB line must not become one)."""
    if len(title) <= limit:
        return title
    cut = " ".join(title[: 4 * limit].split())[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "…"


@dataclasses.dataclass(frozen=True)
class ChunkingConfig:
    """How documents become passages.

    Attributes:
      max_tokens: hard upper bound on a passage's `count_tokens`.
      overlap: tokens repeated from the end of one chunk at the start of the next (same section).
      min_tokens: passages shorter than this (stray headings, empty sections) are dropped.
    """

    max_tokens: int = 256
    overlap: int = 32
    min_tokens: int = 8

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise errors.ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.overlap < self.max_tokens:
            raise errors.ConfigError(
                f"overlap must be in [0, max_tokens), got {self.overlap} with max_tokens "
                f"{self.max_tokens}"
            )
        if self.min_tokens < 1:
            raise errors.ConfigError(f"min_tokens must be >= 1, got {self.min_tokens}")


def split_sections(text: str) -> list[tuple[str, list[str]]]:
    """Splits a document into `(heading, paragraphs)`; `# ` paragraphs are headings ('' before the
    first one)."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if not block:
            continue
        if block.startswith("# ") and "\n" not in block:
            sections.append((block[2:].strip(), []))
        else:
            sections[-1][1].append(block)
    return [(h, ps) for h, ps in sections if ps]


def chunk_paragraphs(paragraphs: Sequence[str], *, config: ChunkingConfig) -> list[str]:
    """Packs paragraphs into chunks of at most `config.max_tokens` tokens.

    A chunk ends at a paragraph boundary when one lies in its second half; otherwise (one long
    paragraph) it is cut between tokens. Consecutive chunks share `config.overlap` tokens.
    """
    spans: list[tuple[int, int, int]] = []  # (paragraph index, start char, end char) per token
    boundaries: set[int] = set()  # token indices where a paragraph starts
    for p_index, paragraph in enumerate(paragraphs):
        boundaries.add(len(spans))
        spans.extend((p_index, m.start(), m.end()) for m in TOKEN_RE.finditer(paragraph))
    n = len(spans)
    chunks = []
    start = 0
    while start < n:
        end = min(start + config.max_tokens, n)
        if end < n:
            lowest = start + max(config.overlap, config.max_tokens // 2) + 1
            candidates = [b for b in range(end, lowest - 1, -1) if b in boundaries]
            if candidates:
                end = candidates[0]
        chunks.append(_slice_text(paragraphs, spans[start:end]))
        if end == n:
            break
        start = end - config.overlap
    return chunks


def _slice_text(paragraphs: Sequence[str], spans: Sequence[tuple[int, int, int]]) -> str:
    """The original text covered by token spans: partial first/last paragraphs, blank-line joined."""
    pieces = []
    first = 0
    for k in range(1, len(spans) + 1):
        if k == len(spans) or spans[k][0] != spans[first][0]:
            p_index = spans[first][0]
            pieces.append(paragraphs[p_index][spans[first][1] : spans[k - 1][2]])
            first = k
    return "\n\n".join(pieces)


def passage_id(doc_id: str, index: int) -> str:
    """Stable id of the `index`-th chunk of a document: the same on every rebuild."""
    return hashlib.sha256(f"{doc_id}\x00{index}".encode()).hexdigest()[:16]


def chunk_document(document: dict[str, str], *, config: ChunkingConfig) -> list[dict[str, str]]:
    """Passages `{id, doc_id, title, text}` of one document (plus its `source` and `url`, when it
    has them, for citations); the section heading joins the title."""
    passages = []
    index = 0
    for heading, paragraphs in split_sections(document["text"]):
        title = document["title"]
        if heading and heading != title:
            title = f"{title} > {heading}" if title else heading
        title = cap_title(title, limit=2 * MAX_TITLE_CHARS)  # document title > section heading
        # The heading joins the passage's title (and what is indexed), so it counts towards
        # min_tokens: a one-line API docstring under its signature ("math.gcd(*integers)" /
        # "Greatest Common Divisor.") is a real passage, not a stray heading.
        heading_tokens = count_tokens(heading) if heading else 0
        for text in chunk_paragraphs(paragraphs, config=config):
            if count_tokens(text) + heading_tokens >= config.min_tokens:
                passages.append(
                    {
                        "id": passage_id(document["doc_id"], index),
                        "doc_id": document["doc_id"],
                        "title": title,
                        "text": text,
                        **{k: document[k] for k in CITATION_KEYS if document.get(k)},
                    }
                )
            index += 1
    return passages


# ----------------------------------------------------------------------------------------------
# Near-duplicate removal
# ----------------------------------------------------------------------------------------------

_MERSENNE = (1 << 61) - 1


class NearDuplicateFilter:
    """Keeps the first of every group of near-duplicate texts.

    Exact duplicates after normalisation (case, punctuation, spacing) are caught by a hash; near
    duplicates by MinHash signatures of word shingles with banded LSH, confirmed by the estimated
    Jaccard similarity reaching `threshold`. Deterministic: fixed hash seeds, first seen wins.
    """

    def __init__(
        self, *, threshold: float = 0.8, shingle: int = 5, num_perm: int = 64, bands: int = 16
    ):
        if num_perm % bands:
            raise errors.ConfigError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
        self.threshold = threshold
        self.shingle = shingle
        self.bands = bands
        rng = np.random.default_rng(0)
        # a, b < 2^31 and h < 2^32 keep a * h + b below 2^64: no uint64 overflow.
        self._a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
        self._exact: set[bytes] = set()
        self._buckets: dict[tuple[int, bytes], list[int]] = {}
        self._signatures: list[np.ndarray] = []

    @staticmethod
    def normalize(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def _signature(self, words: list[str]) -> np.ndarray:
        k = min(self.shingle, len(words))
        shingles = {" ".join(words[i : i + k]) for i in range(len(words) - k + 1)}
        hashes = np.fromiter((zlib.crc32(s.encode()) for s in shingles), dtype=np.uint64)
        mixed = (self._a * hashes[:, None] + self._b) % np.uint64(_MERSENNE)
        return mixed.min(axis=0)

    def is_duplicate(self, text: str) -> bool:
        """True if `text` nearly duplicates one seen before; otherwise remembers it."""
        words = self.normalize(text)
        key = hashlib.blake2b(" ".join(words).encode(), digest_size=16).digest()
        if key in self._exact:
            return True
        self._exact.add(key)
        if not words:
            return False
        signature = self._signature(words)
        rows = len(signature) // self.bands
        band_keys = [(b, signature[b * rows : (b + 1) * rows].tobytes()) for b in range(self.bands)]
        candidates = {i for key in band_keys for i in self._buckets.get(key, ())}
        for i in sorted(candidates):
            if float(np.mean(self._signatures[i] == signature)) >= self.threshold:
                return True
        index = len(self._signatures)
        self._signatures.append(signature)
        for key in band_keys:
            self._buckets.setdefault(key, []).append(index)
        return False


def dedupe(
    passages: Iterable[dict[str, str]], *, threshold: float = 0.8
) -> Iterator[dict[str, str]]:
    """Yields passages whose text is not a near-duplicate of an earlier one."""
    seen = NearDuplicateFilter(threshold=threshold)
    for passage in passages:
        if not seen.is_duplicate(passage["text"]):
            yield passage


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------


def split_of(doc_id: str, *, validation_fraction: float, test_fraction: float) -> str:
    """Which split a document belongs to, from a hash of its id: all its passages go together."""
    if validation_fraction < 0 or test_fraction < 0 or validation_fraction + test_fraction >= 1:
        raise errors.ConfigError(
            f"split fractions must be >= 0 and leave room for train, got validation="
            f"{validation_fraction}, test={test_fraction}"
        )
    u = int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big") / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"
