"""Antonym pairs for contradiction synthesis: a built-in technical list plus WordNet when present.

WordNet 3.0 (Debian `wordnet-base`) is read from its plain-text `data.adj` / `data.adv` files: an
antonym is a `!` pointer whose source/target field names the exact words. Words that are also
verbs in `index.verb` are skipped (`close` → `far` would break the sentence). The files are looked
up in `$VERTJAX_WORDNET`, `/usr/share/wordnet` and the data packs' apt cache; none is downloaded.
"""

from __future__ import annotations

import functools
import os
import pathlib

from vertjax import errors

BUILTIN_PAIRS = (
    ("true", "false"),
    ("first", "last"),
    ("before", "after"),
    ("minimum", "maximum"),
    ("smallest", "largest"),
    ("increase", "decrease"),
    ("increases", "decreases"),
    ("ascending", "descending"),
    ("always", "never"),
    ("enabled", "disabled"),
    ("mutable", "immutable"),
    ("synchronous", "asynchronous"),
    ("required", "optional"),
    ("positive", "negative"),
    ("larger", "smaller"),
    ("more", "fewer"),
    ("lower", "upper"),
    ("lowercase", "uppercase"),
    ("beginning", "end"),
    ("input", "output"),
    ("local", "global"),
    ("public", "private"),
    ("empty", "non-empty"),
    ("valid", "invalid"),
    ("same", "different"),
    ("greater", "less"),
    ("inclusive", "exclusive"),
    ("success", "failure"),
    ("explicit", "implicit"),
    ("absolute", "relative"),
    ("signed", "unsigned"),
    ("shallow", "deep"),
    ("static", "dynamic"),
    ("finite", "infinite"),
    ("above", "below"),
    ("higher", "lower"),
    ("earlier", "later"),
    ("faster", "slower"),
    ("supported", "unsupported"),
    ("ordered", "unordered"),
    ("blocking", "non-blocking"),
    ("new", "old"),
    ("allowed", "forbidden"),
    ("possible", "impossible"),
    ("safe", "unsafe"),
    ("available", "unavailable"),
    ("deprecated", "recommended"),
    ("returns", "raises"),
)

_SEARCH = ("/usr/share/wordnet",)
# Determiners WordNet lists as adjective antonyms; swapping them mostly breaks grammar.
_SKIP = frozenset("no all some any each every both either neither much many few little".split())


def wordnet_dir() -> pathlib.Path | None:
    """The first folder holding WordNet's `data.adj`, or None."""
    from vertjax.data import packs

    candidates = [os.environ.get("VERTJAX_WORDNET", ""), *_SEARCH]
    candidates.append(str(packs.cache_dir() / "apt" / "wordnet-base" / "usr" / "share" / "wordnet"))
    for candidate in candidates:
        if candidate and (pathlib.Path(candidate) / "data.adj").is_file():
            return pathlib.Path(candidate)
    return None


def _parse_data_file(
    path: pathlib.Path,
) -> tuple[dict[str, list[str]], list[tuple[str, int, str, int]]]:
    """(offset → words, antonym pointers (offset, source word no, target offset, target no))."""
    synsets: dict[str, list[str]] = {}
    pointers = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" | ", 1)[0].split()
            try:
                offset, n_words = fields[0], int(fields[3], 16)
                synsets[offset] = [fields[4 + 2 * i].lower() for i in range(n_words)]
                at = 4 + 2 * n_words
                for i in range(int(fields[at])):
                    symbol, target, _, source_target = fields[at + 1 + 4 * i : at + 5 + 4 * i]
                    if symbol == "!":
                        pointers.append(
                            (offset, int(source_target[:2], 16), target, int(source_target[2:], 16))
                        )
            except (IndexError, ValueError):
                raise errors.DataError("not a WordNet data line", path=path, line=line_no) from None
    return synsets, pointers


def _verbs(folder: pathlib.Path) -> set[str]:
    index = folder / "index.verb"
    if not index.is_file():
        return set()
    with index.open(encoding="utf-8", errors="replace") as f:
        return {line.split(" ", 1)[0] for line in f if not line.startswith("  ")}


def wordnet_antonyms(folder: pathlib.Path) -> dict[str, str]:
    """Single-word adjective/adverb antonyms from a WordNet folder, both directions."""
    verbs = _verbs(folder)
    pairs: dict[str, str] = {}
    for name in ("data.adj", "data.adv"):
        path = folder / name
        if not path.is_file():
            continue
        synsets, pointers = _parse_data_file(path)
        for offset, source, target, target_no in pointers:
            if source == 0 or target_no == 0 or target not in synsets:
                continue
            a = synsets[offset][source - 1].split("(")[0]
            b = synsets[target][target_no - 1].split("(")[0]
            if a.isalpha() and b.isalpha() and not ({a, b} & (verbs | _SKIP)):
                pairs.setdefault(a, b)
    return pairs


@functools.cache
def antonyms() -> dict[str, str]:
    """word → antonym: WordNet's (when its files exist here) overridden by the built-in list."""
    folder = wordnet_dir()
    table = wordnet_antonyms(folder) if folder is not None else {}
    for a, b in BUILTIN_PAIRS:
        table[a] = b
        table.setdefault(b, a)
    return table


# Plain-English rewrites of words that technical documentation uses, for paraphrased hypotheses
# (WordNet's most frequent sense of `return` is "go back", not "give back").
BUILTIN_SYNONYMS = (
    ("return", "give back"),
    ("returns", "gives back"),
    ("returned", "given back"),
    ("specified", "given"),
    ("supplied", "given"),
    ("argument", "parameter"),
    ("arguments", "parameters"),
    ("raise", "throw"),
    ("raises", "throws"),
    ("raised", "thrown"),
    ("object", "value"),
    ("objects", "values"),
    ("create", "make"),
    ("creates", "makes"),
    ("created", "made"),
    ("contain", "hold"),
    ("contains", "holds"),
    ("containing", "holding"),
    ("remove", "delete"),
    ("removes", "deletes"),
    ("removed", "deleted"),
    ("modify", "change"),
    ("modifies", "changes"),
    ("modified", "changed"),
    ("function", "routine"),
    ("method", "routine"),
    ("default", "fallback"),
    ("optional", "not required"),
    ("instance", "object"),
    ("sequence", "series"),
    ("iterable", "collection"),
    ("element", "item"),
    ("elements", "items"),
    ("integer", "whole number"),
    ("integers", "whole numbers"),
    ("string", "text"),
    ("strings", "texts"),
    ("empty", "blank"),
    ("large", "big"),
    ("small", "little"),
    ("begin", "start"),
    ("begins", "starts"),
    ("end", "finish"),
    ("ends", "finishes"),
    ("use", "employ"),
    ("uses", "employs"),
    ("used", "employed"),
    ("obtain", "get"),
    ("retrieve", "fetch"),
    ("determine", "work out"),
    ("indicate", "show"),
    ("indicates", "shows"),
    ("attempt", "try"),
    ("require", "need"),
    ("requires", "needs"),
    ("required", "needed"),
    ("provide", "offer"),
    ("provides", "offers"),
    ("allow", "let"),
    ("allows", "lets"),
    ("occur", "happen"),
    ("occurs", "happens"),
    ("additional", "extra"),
    ("entire", "whole"),
    ("initial", "first"),
    ("multiple", "several"),
    ("numerous", "many"),
    ("currently", "now"),
    ("immediately", "at once"),
)
_SYNONYM_STOP = frozenset(
    "a an the is are was were be been being it its this that these those of to in on at by for "
    "with from as or and but not no if then than so do does did has have had can may will shall "
    "should would could must there their they them he she we you i".split()
)


def _first_senses(folder: pathlib.Path, pos: str) -> dict[str, tuple[int, str]]:
    """lemma → (tagged-sense count, offset of its most frequent sense) from `index.<pos>`."""
    path = folder / f"index.{pos}"
    if not path.is_file():
        return {}
    senses = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split()
            count = int(fields[2])  # synsets; offsets close the line, after the tagged count
            if fields[0].isalpha() and fields[0] not in _SYNONYM_STOP:
                senses[fields[0]] = (int(fields[-count - 1]), fields[-count])
    return senses


def wordnet_synonyms(folder: pathlib.Path) -> dict[str, list[str]]:
    """word → single-word synonyms in its most frequent WordNet sense.

    The part of speech is the one whose senses are tagged most often in WordNet's corpus (`order`
    is mostly a noun), and only that part's first synset is used, so substitutions mostly keep
    the sense a technical text means.
    """
    best: dict[str, tuple[int, str, str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        for lemma, (tagged, offset) in _first_senses(folder, pos).items():
            if lemma not in best or tagged > best[lemma][0]:
                best[lemma] = (tagged, pos, offset)
    words = {
        pos: _parse_data_file(folder / f"data.{pos}")[0] for pos in {b[1] for b in best.values()}
    }
    table = {}
    for lemma, (_, pos, offset) in best.items():
        others = [w for w in words[pos].get(offset, ()) if w.isalpha() and w != lemma]
        if others:
            table[lemma] = others
    return table


@functools.cache
def synonyms() -> dict[str, list[str]]:
    """word → replacements: the built-in technical list first, then WordNet's first sense."""
    folder = wordnet_dir()
    table = wordnet_synonyms(folder) if folder is not None else {}
    for word, replacement in BUILTIN_SYNONYMS:
        table[word] = [replacement] + [w for w in table.get(word, []) if w != replacement]
    return table
