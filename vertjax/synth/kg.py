"""A knowledge graph of the Python standard library, and instructions grounded on its entities.

`extract_triples` walks modules with `inspect` and writes `{subject, relation, object}` triples:
module has_class / has_function, class has_method / inherits_from, function or method
has_parameter / has_default / signature / returns / raises, every entity is_a / defined_in /
first_sentence. `entity_instructions` turns one entity's facts into correct, checkable
instruction data (the template backend's answers, and Self-KG's ground truth).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib
import inspect
import io
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from vertjax import errors, io_utils

RELATIONS = (
    "is_a",
    "defined_in",
    "first_sentence",
    "has_class",
    "has_function",
    "has_method",
    "inherits_from",
    "signature",
    "has_parameter",
    "has_default",
    "returns",
    "raises",
)
DEFAULT_MODULES = (
    "argparse", "base64", "bisect", "calendar", "collections", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "difflib", "enum", "fnmatch", "fractions", "functools", "glob",
    "gzip", "hashlib", "heapq", "html", "itertools", "json", "math", "operator", "os.path",
    "pathlib", "pprint", "random", "re", "secrets", "shlex", "shutil", "statistics", "string",
    "tempfile", "textwrap", "time", "unicodedata", "urllib.parse", "uuid", "zlib",
)  # fmt: skip
_SIGNATURE_LINE = re.compile(r"^[\w.]+\(.*\)(\s*->\s*.*)?$", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])")
_EXCEPTION = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning))\b")
_MAX_SENTENCE_CHARS = 300
# Names used for "no" answers of the yes/no parameter and method questions.
_COMMON_PARAMETERS = ("timeout", "encoding", "strict", "maxsize", "callback", "verbose")
_COMMON_METHODS = ("append", "close", "flush", "items", "read", "write", "validate")


def _import(name: str) -> Any:
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _own_doc(obj: Any) -> str:
    """The object's own docstring (a class's, not one it inherits), cleaned."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    if inspect.isclass(obj) and any(doc == getattr(b, "__doc__", None) for b in obj.__mro__[1:]):
        return ""
    return inspect.cleandoc(doc)


def split_sentences(text: str) -> list[str]:
    """Sentences of whitespace-collapsed text (split after . ! ? before a capital or quote)."""
    text = " ".join(text.split())
    return _SENTENCE_END.split(text) if text else []


def first_sentence(doc: str) -> str:
    """The first sentence of the first paragraph that is not a signature line ('' if none)."""
    for paragraph in doc.split("\n\n"):
        text = " ".join(paragraph.split())
        if not text or _SIGNATURE_LINE.match(text):
            continue
        sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
        if len(sentence.split()) < 2 or len(sentence) > _MAX_SENTENCE_CHARS:
            return ""
        return sentence
    return ""


def _plain_default(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and len(value) <= 24 and "/" not in value and "\\" not in value


def _routine_triples(obj: Any, *, module: Any, is_method: bool) -> Iterator[tuple[str, str]]:
    """Signature, parameters, plain defaults, returns and raises of a function or method."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = list(signature.parameters.values())
        if is_method and params and params[0].name in ("self", "cls"):
            params = params[1:]
        shown = [
            p if p.default is p.empty or _plain_default(p.default) else p.replace(default=...)
            for p in params
        ]
        yield "signature", re.sub(r" at 0x[0-9a-f]+", "", str(signature.replace(parameters=shown)))
        for p in params:
            prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
            yield "has_parameter", prefix + p.name
        for p in params:
            if p.default is not p.empty and _plain_default(p.default):
                yield "has_default", f"{p.name}={p.default!r}"
        if signature.return_annotation is not signature.empty:
            yield "returns", inspect.formatannotation(signature.return_annotation)
    doc = _own_doc(obj)
    sentences = split_sentences(doc)
    if signature is None or signature.return_annotation is signature.empty:
        for sentence in sentences:
            if sentence.startswith(("Return ", "Returns ")) and len(sentence) <= 200:
                yield "returns", sentence
                break
    raised: list[str] = []
    for sentence in sentences:
        if "raise" in sentence.lower():
            for name in _EXCEPTION.findall(sentence):
                known = hasattr(builtins, name) or hasattr(module, name)
                if known and name not in raised:
                    raised.append(name)
    for name in raised:
        yield "raises", name


def _entity_triples(
    qualname: str, obj: Any, *, kind: str, parent: str, module: Any
) -> Iterator[tuple[str, str, str]]:
    yield qualname, "is_a", kind
    yield qualname, "defined_in", parent
    sentence = first_sentence(_own_doc(obj))
    if sentence:
        yield qualname, "first_sentence", sentence
    if kind in ("function", "method"):
        for relation, value in _routine_triples(obj, module=module, is_method=kind == "method"):
            yield qualname, relation, value


def module_triples(name: str) -> list[dict[str, str]]:
    """The triples of one module (raises `ConfigError` if it cannot be imported)."""
    try:
        module = _import(name)
    except (Exception, SystemExit) as e:  # SystemExit too means "not importable"; Ctrl-C stops
        raise errors.ConfigError(
            f"cannot import module {name!r} ({type(e).__name__}: {e})"
        ) from None
    triples: list[tuple[str, str, str]] = [(name, "is_a", "module")]
    sentence = first_sentence(_own_doc(module))
    if sentence:
        triples.append((name, "first_sentence", sentence))
    public = getattr(module, "__all__", None)
    members = []
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or (public is not None and attr not in public):
            continue
        home = getattr(obj, "__module__", None) or ""
        if home != name and not (public is not None and home.startswith(f"{name}.")):
            continue  # defined elsewhere (re-exports count only from a package's own `__all__`)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            members.append((attr, obj))
    for attr, obj in members:
        qualname = f"{name}.{attr}"
        if inspect.isclass(obj):
            triples.append((name, "has_class", qualname))
            triples.extend(_entity_triples(qualname, obj, kind="class", parent=name, module=module))
            for base in obj.__bases__:
                if base is not object:
                    triples.append(
                        (qualname, "inherits_from", f"{base.__module__}.{base.__name__}")
                    )
            for meth_name, meth in sorted(vars(obj).items()):
                if meth_name.startswith("_") or not inspect.isroutine(meth):
                    continue
                meth_qualname = f"{qualname}.{meth_name}"
                triples.append((qualname, "has_method", meth_qualname))
                triples.extend(
                    _entity_triples(
                        meth_qualname, meth, kind="method", parent=qualname, module=module
                    )
                )
        else:
            triples.append((name, "has_function", qualname))
            triples.extend(
                _entity_triples(qualname, obj, kind="function", parent=name, module=module)
            )
    return [{"subject": s, "relation": r, "object": o} for s, r, o in triples]


def extract_triples(modules: Sequence[str] = DEFAULT_MODULES) -> list[dict[str, str]]:
    """Triples of the given modules, in module order then member name order (deterministic)."""
    return [t for name in modules for t in module_triples(name)]


def load_triples(path: io_utils.PathLike) -> list[dict[str, str]]:
    """Reads triples JSONL; a record without non-empty string fields raises `DataError`."""
    triples = []
    keys = ("subject", "relation", "object")
    for line, record in enumerate(io_utils.read_jsonl(path, required_keys=keys), start=1):
        if not all(isinstance(record[k], str) and record[k].strip() for k in keys):
            raise errors.DataError(
                f"triple {line}: subject/relation/object must be non-empty strings", path=path
            )
        triples.append({k: record[k] for k in keys})
    if not triples:
        raise errors.DataError("no triples (empty file)", path=path)
    return triples


def entity_facts(triples: Sequence[dict[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """subject -> its (relation, object) pairs, in file order."""
    facts: dict[str, list[tuple[str, str]]] = {}
    for t in triples:
        facts.setdefault(t["subject"], []).append((t["relation"], t["object"]))
    return facts


def render_facts(facts: Sequence[tuple[str, str]]) -> str:
    """One `- relation: object` line per fact (what Self-KG prompts show)."""
    return "\n".join(f"- {relation}: {' '.join(value.split())}" for relation, value in facts)


def parse_facts(text: str) -> list[tuple[str, str]]:
    """The inverse of `render_facts`."""
    facts = []
    for line in text.splitlines():
        m = re.match(r"^- (\w+): (.*)$", line)
        if m:
            facts.append((m.group(1), m.group(2)))
    return facts


@dataclasses.dataclass(frozen=True)
class FactItem:
    """One instruction example derived from an entity's facts."""

    instruction: str
    input: str
    output: str
    is_classification: bool
    entity: str
    family: str


def _values(facts: Sequence[tuple[str, str]], relation: str) -> list[str]:
    return [value for rel, value in facts if rel == relation]


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _listing(values: Sequence[str], limit: int = 12) -> str:
    shown = [f"`{v}`" for v in values[:limit]]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(shown) + more


def entity_instructions(entity: str, facts: Sequence[tuple[str, str]]) -> list[FactItem]:
    """Every instruction example the facts answer correctly, in a fixed order."""
    items: list[FactItem] = []

    def add(family: str, instruction: str, output: str, *, input_: str = "", cls: bool = False):
        items.append(FactItem(instruction, input_, output, cls, entity, family))

    kinds = _values(facts, "is_a")
    kind = kinds[0] if kinds else "name"
    e = f"`{entity}`"
    for sentence in _values(facts, "first_sentence")[:1]:
        if kind == "module":
            add("purpose", f"What is the {e} module for?", sentence)
            add("purpose", f"Describe the standard-library module {e} in one sentence.", sentence)
        else:
            add("purpose", f"What does {e} do?", sentence)
            add("purpose", f"Explain briefly what the {kind} {e} is for.", sentence)
            add(
                "purpose",
                f"Summarize what the following standard-library {kind} does.",
                sentence,
                input_=entity,
            )
    if kind in ("module", "class", "function", "method"):
        add("kind", f"Is {e} a module, a class, a function or a method?", kind, cls=True)
        add(
            "kind",
            "Classify the following standard-library name as a module, a class, a function "
            "or a method.",
            kind,
            input_=entity,
            cls=True,
        )
    for parent in _values(facts, "defined_in")[:1]:
        where = "class" if kind == "method" else "module"
        add("defined_in", f"In which {where} is {e} defined?", f"{e} is defined in `{parent}`.")
    for signature in _values(facts, "signature")[:1]:
        add("signature", f"What is the signature of {e}?", f"`{_short(entity)}{signature}`")
        add(
            "signature",
            f"Write the `def` line of a Python function with the same signature as {e}.",
            f"`def {_short(entity)}{signature}:`",
        )
    params = _values(facts, "has_parameter")
    if params:
        add("parameters", f"Which parameters does {e} accept?", f"{e} accepts {_listing(params)}.")
        add(
            "parameters",
            f"How many parameters does {e} take?",
            f"{e} takes {len(params)} parameter{'s' if len(params) > 1 else ''}: "
            f"{_listing(params)}.",
        )
        named = [p for p in params if not p.startswith("*")]
        absent = next((p for p in _COMMON_PARAMETERS if p not in named), "")
        for name, label in ((named[-1] if named else "", "yes"), (absent, "no")):
            if name:
                add(
                    "parameters",
                    f"Does {e} accept a parameter named `{name}`? Answer yes or no.",
                    label,
                    cls=True,
                )
    for default in _values(facts, "has_default"):
        name, value = default.split("=", 1)
        add(
            "default",
            f"What is the default value of the `{name}` parameter of {e}?",
            f"`{name}` defaults to `{value}`.",
        )
    for returned in _values(facts, "returns")[:1]:
        add("returns", f"What does {e} return?", returned)
    raised = _values(facts, "raises")
    if raised:
        add("raises", f"Which exceptions can {e} raise?", f"{e} can raise {_listing(raised)}.")
    methods = [_short(m) for m in _values(facts, "has_method")]
    if methods:
        add("methods", f"List the public methods of {e}.", f"{e} has {_listing(methods)}.")
        absent = next(m for m in _COMMON_METHODS if m not in methods)
        for name, label in ((methods[0], "yes"), (absent, "no")):
            add(
                "methods",
                f"Does the class {e} have a method called `{name}`? Answer yes or no.",
                label,
                cls=True,
            )
    for base in _values(facts, "inherits_from")[:1]:
        add("bases", f"Which class does {e} inherit from?", f"{e} inherits from `{base}`.")
    functions = [_short(f) for f in _values(facts, "has_function")]
    if functions:
        add(
            "members",
            f"Name the functions of the {e} module.",
            f"The {e} module defines {_listing(functions)}.",
        )
    classes = [_short(c) for c in _values(facts, "has_class")]
    if classes:
        add(
            "members",
            f"Which classes does the {e} module define?",
            f"The {e} module defines {_listing(classes)}.",
        )
    return items
