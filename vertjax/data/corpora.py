"""Document readers: turn a source (HTML, reST, Markdown, plain text, JSONL, the interpreter's own
documentation, WordNet, Gutenberg plays) into documents `{doc_id, title, text}`; documents read from
files also carry `source`, the file's path relative to the folder read (never an absolute path), so a
citation names a file the user can open.

A document's `text` uses one light convention the chunker understands: paragraphs are separated by a
blank line and a heading is a paragraph of its own starting with `# `. Readers therefore turn HTML
`<h1>`..`<h6>` and reST underlined titles into `# Heading` paragraphs, so chunks can start at
section boundaries and carry the section in their title.
"""

from __future__ import annotations

import contextlib
import html.parser
import importlib
import inspect
import io
import json
import logging
import os
import pathlib
import pkgutil
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from vertjax import errors
from vertjax.data.chunking import cap_title

Document = dict[str, str]

logger = logging.getLogger(__name__)

_WS = re.compile(r"[ \t\r\f\v]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize_paragraphs(text: str) -> str:
    """Collapses runs of spaces, strips every line and leaves at most one blank line between blocks."""
    lines = [_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    "address article aside blockquote br caption dd div dl dt figcaption figure footer form header "
    "hr li main ol p pre section table tbody thead tr ul".split()
)
_HEADING_TAGS = frozenset(f"h{i}" for i in range(1, 7))
_SKIP_TAGS = frozenset("script style svg nav noscript button select textarea".split())
# Navigation chrome of the Debian-packaged manuals (DocBook nav bars, SQLite's menus and TOC box).
_SKIP_CLASSES = frozenset("navheader navfooter nosearch menu searchmenu toc".split())


class _HtmlToText(html.parser.HTMLParser):
    """Collects visible text, paragraph breaks at block tags, `# ` headings, and the `<title>`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self._parts: list[str] = []
        self._in_title = False
        self._heading: list[str] | None = None
        self._pre = 0
        self._skip_tag: str | None = None
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            self._skip_depth += tag == self._skip_tag
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag in _SKIP_TAGS or classes & _SKIP_CLASSES:
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag == "title":
            self._in_title = True
        elif tag in _HEADING_TAGS:
            self._parts.append("\n\n")
            self._heading = []
        elif tag == "pre":
            self._pre += 1
            self._parts.append("\n\n")
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n\n" if tag != "br" else "\n")
        elif tag in ("td", "th"):
            self._parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag == "title":
            self._in_title = False
        elif tag in _HEADING_TAGS and self._heading is not None:
            heading = " ".join("".join(self._heading).split())
            if heading:
                self._parts.append(f"# {heading}\n\n")
            self._heading = None
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._parts.append("\n\n")
        elif tag in _BLOCK_TAGS:
            self._parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip_tag is not None:
            return
        if self._in_title:
            self.title += data
        elif self._heading is not None:
            self._heading.append(data)
        elif self._pre:
            # Keep code lines, but a blank line inside <pre> must not split the block.
            self._parts.append(re.sub(r"\n\s*\n", "\n", data))
        else:
            self._parts.append(" ".join(data.split("\n")))

    def text(self) -> str:
        return normalize_paragraphs("".join(self._parts))


def html_to_document(markup: str) -> tuple[str, str]:
    """Returns `(title, text)` of an HTML page: `<title>` and the visible text without navigation."""
    parser = _HtmlToText()
    parser.feed(markup)
    parser.close()
    return " ".join(parser.title.split()), parser.text()


# ----------------------------------------------------------------------------------------------
# reStructuredText
# ----------------------------------------------------------------------------------------------

_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>_:.])\1{2,}\s*$")
_RST_ROLE = re.compile(r":[\w:.+-]+:`(?:[^`<]*?<)?~?!?([^`>]+?)>?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]*>`__?")
_RST_DIRECTIVE = re.compile(r"^\.\.\s+[\w:-]+::")
_RST_BARE_DIRECTIVES = (
    "index",
    "module",
    "moduleauthor",
    "sectionauthor",
    "highlight",
    "toctree",
    "currentmodule",
    "testsetup",
    "testcleanup",
    "versionadded",
    "impl-detail",
)


def rst_to_text(source: str) -> tuple[str, str]:
    """Returns `(title, text)` of a reST page: underlined titles become `# ` headings, roles and links
    become their text, and bookkeeping directives (index, module, toctree, ...) are dropped."""
    lines = source.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    title = ""
    skipping_indent: int | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if skipping_indent is not None:
            if not stripped or len(line) - len(line.lstrip()) > skipping_indent:
                i += 1
                continue
            skipping_indent = None
        if _RST_ADORNMENT.match(line) and i + 2 < len(lines) and _RST_ADORNMENT.match(lines[i + 2]):
            heading = lines[i + 1].strip()  # over- and underlined title
            if heading and not _RST_ADORNMENT.match(lines[i + 1]):
                title = title or _rst_inline(heading)
                out += ["", f"# {_rst_inline(heading)}", ""]
                i += 3
                continue
        next_line = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            stripped
            and not line[0].isspace()
            and _RST_ADORNMENT.match(next_line)
            and len(next_line.rstrip()) >= len(stripped)
        ):
            title = title or _rst_inline(stripped)
            out += ["", f"# {_rst_inline(stripped)}", ""]
            i += 2
            continue
        if _RST_ADORNMENT.match(line):  # a transition line (----) or stray adornment
            out.append("")
            i += 1
            continue
        if stripped.startswith(".."):
            name = stripped[2:].strip().split("::")[0].strip()
            if not _RST_DIRECTIVE.match(stripped) or name in _RST_BARE_DIRECTIVES:
                skipping_indent = len(line) - len(line.lstrip())  # comment or bookkeeping directive
                i += 1
                continue
            rest = stripped.split("::", 1)[1].strip()
            out.append(_rst_inline(rest) if rest else "")
            i += 1
            continue
        if re.match(r"^\s*:[\w-]+:( |$)", line):  # directive option (:synopsis: ...)
            i += 1
            continue
        out.append(_rst_inline(line))
        i += 1
    return title, normalize_paragraphs("\n".join(out))


def _rst_inline(text: str) -> str:
    text = re.sub(r":(pep|rfc):`(\d+)[^`]*`", lambda m: f"{m[1].upper()} {m[2]}", text)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_ROLE.sub(r"\1", text)
    text = text.replace("``", "").replace("**", "")
    return text[:-1] if text.endswith("::") and text.strip() != "::" else text


def markdown_title(text: str, default: str) -> str:
    """The first `# ` heading of a Markdown/plain text, else its first non-empty line, else
    `default`; at most `chunking.MAX_TITLE_CHARS` characters."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return cap_title(line.lstrip("#").strip()) or default
    return default


# ----------------------------------------------------------------------------------------------
# Folders of files
# ----------------------------------------------------------------------------------------------

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".html", ".htm", ".jsonl")


def read_text_file(path: pathlib.Path, *, strict: bool) -> str | None:
    """Reads UTF-8 text; a file that is not UTF-8 is skipped with a warning, or raises under `strict`."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        message = f"not valid UTF-8 (byte {e.start})"
        if strict:
            raise errors.DataError(message, path=path) from None
        logger.warning("skipping %s: %s", path, message)
        return None


def file_documents(path: pathlib.Path, *, doc_id: str, strict: bool) -> Iterator[Document]:
    """Documents of one file, by suffix: HTML, reST (`.rst`, `.rst.txt`), Markdown/text, or JSONL."""
    raw = read_text_file(path, strict=strict)
    if raw is None:
        return
    name = path.name.lower()
    if name.endswith(".jsonl"):
        yield from _jsonl_documents(raw, path=path, doc_id=doc_id)
        return
    if name.endswith((".html", ".htm")):
        title, text = html_to_document(raw)
    elif name.endswith((".rst", ".rst.txt")):
        title, text = rst_to_text(raw)
    else:
        text = normalize_paragraphs(raw)
        title = markdown_title(text, path.stem)
    if text:
        yield {"doc_id": doc_id, "title": title or path.stem, "text": text, "source": doc_id}


def _jsonl_documents(raw: str, *, path: pathlib.Path, doc_id: str) -> Iterator[Document]:
    for line_no, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise errors.DataError(f"invalid JSON ({e.msg})", path=path, line=line_no) from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise errors.DataError(
                "expected an object with a string 'text'", path=path, line=line_no
            )
        key = record.get("doc_id", record.get("id", line_no))
        yield {
            "doc_id": f"{doc_id}#{key}",
            "title": str(record.get("title") or path.stem),
            "text": normalize_paragraphs(record["text"]),
            "source": doc_id,  # the JSONL file a user can open
        }


def folder_documents(
    root: pathlib.Path, *, strict: bool = False, patterns: Iterable[str] | None = None
) -> Iterator[Document]:
    """Documents of every supported file under `root` (sorted, so builds are reproducible).

    `patterns` (globs relative to `root`) restrict which files are read; doc ids are relative paths.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise errors.DataError("source folder not found", path=root)
    if patterns is None:
        files = (p for p in _walk(root) if p.name.lower().endswith(TEXT_SUFFIXES))
    else:
        files = (p for pattern in patterns for p in root.glob(pattern))
    for path in sorted(set(files)):
        link = _symlink_under(root, path)
        if link is not None:
            logger.warning("skipping %s: %s is a symbolic link (not followed)", path, link)
        elif path.is_file():
            yield from file_documents(path, doc_id=path.relative_to(root).as_posix(), strict=strict)


def _walk(root: pathlib.Path) -> Iterator[pathlib.Path]:
    """Every entry under `root`, without descending into symlinked folders."""
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = pathlib.Path(folder)
        yield from (base / name for name in names)
        yield from (base / name for name in dirs if (base / name).is_symlink())


def _symlink_under(root: pathlib.Path, path: pathlib.Path) -> pathlib.Path | None:
    """The first symbolic link on the way from `root` (exclusive) to `path`, if any: a link in a
    source folder may point anywhere (`/etc/os-release`), so its target is never read."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return current
    return None


# ----------------------------------------------------------------------------------------------
# The running interpreter's documentation
# ----------------------------------------------------------------------------------------------

# Modules with side effects on import (browsers, printing, GUIs), huge test suites, or whose
# content depends on what else is installed (distutils is shimmed by setuptools).
_STDLIB_SKIP = frozenset(
    "antigravity this idlelib tkinter turtle turtledemo test lib2to3 distutils ensurepip "
    "pydoc_data encodings msilib winreg winsound msvcrt _winapi".split()
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def stdlib_module_names() -> list[str]:
    """Public standard-library modules, including submodules of packages, sorted."""
    names: set[str] = set()
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in _STDLIB_SKIP:
            continue
        module = _quiet_import(top)
        if module is None:
            continue
        names.add(top)
        for info in pkgutil.walk_packages(
            getattr(module, "__path__", []), prefix=f"{top}.", onerror=lambda _name: None
        ):
            parts = info.name.split(".")
            if any(p.startswith("_") or p in ("test", "tests") for p in parts):
                continue
            names.add(info.name)
    return sorted(names)


def _quiet_import(name: str) -> Any:
    """Imports a module with its output and warnings silenced; None if it cannot be imported."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except (Exception, SystemExit):  # any failure means "not available"; Ctrl-C still stops
            return None


def _docstring(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


class _Elided:
    """Stands for a default value whose repr depends on the machine (paths, os.environ, ...)."""

    def __repr__(self) -> str:
        return "..."


def _plain_default(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and len(value) <= 24 and "/" not in value and "\\" not in value


def _signature(obj: Any) -> str:
    """The signature with machine-dependent defaults shown as `...`, so builds are reproducible
    and never copy the build machine's environment into the corpus."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    params = [
        p if p.default is p.empty or _plain_default(p.default) else p.replace(default=_Elided())
        for p in signature.parameters.values()
    ]
    return _ADDRESS.sub("", str(signature.replace(parameters=params)))


def _module_document(module: Any) -> Document | None:
    """A module's docstring, then one `# name` section per public class/function it defines."""
    name = module.__name__
    blocks = [_docstring(module)]
    public = getattr(module, "__all__", None)
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or (public is not None and attr not in public):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) != name:
            continue
        own = _docstring(obj)
        section = [f"# {name}.{attr}{_signature(obj) if inspect.isroutine(obj) else ''}", own]
        if inspect.isclass(obj):
            for meth_name, meth in sorted(vars(obj).items()):
                if meth_name.startswith("_") and meth_name != "__init__":
                    continue
                meth_doc = _docstring(meth) if inspect.isroutine(meth) else ""
                if meth_doc and meth_doc != own:
                    section.append(f"{attr}.{meth_name}{_signature(meth)}: {meth_doc}")
        if any(part.strip() for part in section[1:]):
            blocks.append("\n\n".join(part for part in section if part))
    text = normalize_paragraphs(_ADDRESS.sub("", "\n\n".join(b for b in blocks if b)))
    if not text:
        return None
    return {"doc_id": f"module/{name}", "title": f"{name} module", "text": text}


def python_stdlib_documents() -> Iterator[Document]:
    """The running interpreter's documentation: `pydoc_data.topics` (the language reference topics
    behind `help()`), then the docstrings of standard-library modules, classes and functions."""
    from pydoc_data import topics

    for name, text in sorted(topics.topics.items()):
        text = normalize_paragraphs(text)
        if text:
            yield {"doc_id": f"topic/{name}", "title": f"Python reference: {name}", "text": text}
    for name in stdlib_module_names():
        module = _quiet_import(name)
        if module is not None:
            document = _module_document(module)
            if document is not None:
                yield document


# ----------------------------------------------------------------------------------------------
# General text: WordNet glosses and Gutenberg Shakespeare
# ----------------------------------------------------------------------------------------------


def wordnet_documents(wordnet_dir: pathlib.Path) -> Iterator[Document]:
    """WordNet `data.{noun,verb,adj,adv}` synsets as definitional English, one document per
    lexicographer file (e.g. all noun.animal synsets), one paragraph per synset."""
    groups: dict[tuple[str, int], list[str]] = {}
    found = False
    for pos in ("noun", "verb", "adj", "adv"):
        path = pathlib.Path(wordnet_dir) / f"data.{pos}"
        if not path.is_file():
            continue
        found = True
        with path.open(encoding="utf-8", errors="strict") as f:
            for line_no, line in enumerate(f, start=1):
                if line.startswith(" ") or "|" not in line:
                    continue  # licence header
                fields, gloss = line.split("|", 1)
                parts = fields.split()
                try:
                    lex_file, n_words = int(parts[1]), int(parts[3], 16)
                except (IndexError, ValueError):
                    raise errors.DataError(
                        "malformed synset line", path=path, line=line_no
                    ) from None
                words = [parts[4 + 2 * k].replace("_", " ") for k in range(n_words)]
                words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]
                groups.setdefault((pos, lex_file), []).append(
                    f"{', '.join(words)}: {gloss.strip()}"
                )
    if not found:
        raise errors.DataError("no WordNet data.noun/verb/adj/adv files", path=wordnet_dir)
    for (pos, lex_file), paragraphs in sorted(groups.items()):
        yield {
            "doc_id": f"wordnet/{pos}.{lex_file:02d}",
            "title": f"WordNet {pos} definitions (lexicographer file {lex_file:02d})",
            "text": "\n\n".join(paragraphs),
        }


def shakespeare_documents(texts: Iterable[tuple[str, str]]) -> Iterator[Document]:
    """Plays and poems from `(file name, text)` pairs of the `shksprdata/texts` folder. Each work is
    shipped twice (`*_gut.txt` modern spelling, `*_gut_f.txt` First Folio): only `_gut` is kept."""
    for name, raw in sorted(texts):
        if not name.endswith("_gut.txt"):
            continue
        text = normalize_paragraphs(raw)
        if text:
            work = name[: -len("_gut.txt")]
            yield {
                "doc_id": f"shakespeare/{work}",
                "title": markdown_title(text, work),
                "text": text,
            }


# ----------------------------------------------------------------------------------------------
# TensorFlow Datasets (pod scale: c4, wikipedia, ...)
# ----------------------------------------------------------------------------------------------


def load_prepared_tfds(name: str, *, split: str, data_dir: str | None) -> tuple[Any, Any]:
    """(dataset, info) of a TFDS dataset already prepared in `data_dir`; never downloads.

    A dataset that is not prepared there is one `DataError` saying how to prepare it.
    """
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            name,
            split=split,
            data_dir=data_dir,
            download=False,
            shuffle_files=False,
            with_info=True,
        )
    except (
        AssertionError,
        FileNotFoundError,
        ValueError,
        tfds.core.registered.DatasetNotFoundError,
    ) as e:
        raise errors.DataError(
            f"tfds dataset {name!r} (split {split!r}) is not prepared here: {e}; prepare it with "
            f"`tfds build {name}` and pass its data dir",
            path=data_dir,
        ) from None


def tfds_documents(
    name: str,
    *,
    data_dir: str | None,
    split: str = "train",
    text_key: str = "text",
    title_key: str = "title",
) -> Iterator[Document]:
    """Examples of a prepared TFDS dataset as documents. Never downloads: the dataset must already
    be prepared in `data_dir` (e.g. by `tfds build` on a machine with internet)."""
    import tensorflow_datasets as tfds

    dataset, _ = load_prepared_tfds(name, split=split, data_dir=data_dir)
    for index, example in enumerate(tfds.as_numpy(dataset)):
        if text_key not in example:
            raise errors.DataError(
                f"tfds {name!r} has no {text_key!r} feature "
                f"(features: {', '.join(sorted(example))})"
            )
        text = normalize_paragraphs(example[text_key].decode("utf-8", errors="replace"))
        title = example.get(title_key, b"")
        title = title.decode("utf-8", errors="replace") if isinstance(title, bytes) else ""
        if text:
            yield {
                "doc_id": f"tfds/{name}/{split}/{index}",
                "title": title or f"{name} #{index}",
                "text": text,
            }
