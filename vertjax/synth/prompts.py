"""Versioned prompt templates for instruction synthesis, and their inverse.

Prompts live in `vertjax/resources/synth/templates/<name>.v<N>.txt` as `string.Template` text
(`$field` placeholders), never in code, so a change of wording is a new file and every record can
name the exact template (`name.vN`) and hash it came from. `parse` is the inverse of `render`: it
recovers the template and its fields from a rendered prompt, which lets the deterministic
template backend answer the same prompts an LLM gets.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import importlib.resources.abc
import re
import string

from vertjax import errors

RESOURCE_DIR = ("resources", "synth")
_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.txt$")


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """One template file: `id` is `name.vN`, `sha256` the hash of its text (for audit)."""

    name: str
    version: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.name}.v{self.version}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    @functools.cached_property
    def fields(self) -> tuple[str, ...]:
        return tuple(
            m.group("named") or m.group("braced")
            for m in string.Template.pattern.finditer(self.text)
            if m.group("named") or m.group("braced")
        )

    @functools.cached_property
    def regex(self) -> re.Pattern[str]:
        """Literal text escaped, each `$field` a greedy named group (long fields such as documents
        come before short ones in the templates), anchored at both ends."""
        parts, last = [], 0
        for m in string.Template.pattern.finditer(self.text):
            parts.append(re.escape(self.text[last : m.start()]))
            field = m.group("named") or m.group("braced")
            parts.append(f"(?P<{field}>.*)" if field else re.escape("$"))
            last = m.end()
        parts.append(re.escape(self.text[last:]))
        return re.compile("".join(parts) + r"\Z", re.DOTALL)

    def render(self, **fields: object) -> str:
        missing = set(self.fields) - set(fields)
        if missing:
            raise errors.ConfigError(
                f"template {self.id}: missing field(s) {', '.join(sorted(missing))}"
            )
        return string.Template(self.text).substitute({k: str(v) for k, v in fields.items()})


def resource_path(name: str) -> importlib.resources.abc.Traversable:
    """A file or folder under `vertjax/resources/synth/` (installed as package data)."""
    return importlib.resources.files("vertjax").joinpath(*RESOURCE_DIR, name)


@functools.cache
def _all_templates() -> dict[str, PromptTemplate]:
    """Every template file, keyed by id; `name` alone maps to its highest version."""
    found: dict[str, PromptTemplate] = {}
    folder = resource_path("templates")
    for entry in folder.iterdir():
        m = _FILE_NAME.match(entry.name)
        if not m:
            continue
        template = PromptTemplate(
            name=m.group("name"),
            version=int(m.group("version")),
            text=entry.read_text(encoding="utf-8").rstrip("\n"),
        )
        if len(set(template.fields)) != len(template.fields):
            raise errors.ConfigError(f"template {template.id}: a field appears twice")
        found[template.id] = template
        latest = found.get(template.name)
        if latest is None or latest.version < template.version:
            found[template.name] = template
    return found


def get_template(name: str) -> PromptTemplate:
    """A template by `name` (latest version) or by exact id `name.vN`."""
    templates = _all_templates()
    if name not in templates:
        known = sorted(k for k in templates if "." in k)
        raise errors.ConfigError(f"unknown prompt template {name!r} (known: {', '.join(known)})")
    return templates[name]


def render(name: str, **fields: object) -> tuple[str, PromptTemplate]:
    """Renders a template; returns (prompt, template) so callers can record the template id."""
    template = get_template(name)
    return template.render(**fields), template


def parse(prompt: str) -> tuple[PromptTemplate, dict[str, str]] | None:
    """The template (any version) and fields that render to `prompt`, or None."""
    for key, template in sorted(_all_templates().items()):
        if "." not in key:
            continue
        m = template.regex.match(prompt)
        if m:
            return template, m.groupdict()
    return None
