"""T5X-style gin flags: `--gin_file`, `--gin.NAME=VALUE`, `--gin_search_paths`.

Library code stays plain Python; gin files bind it. The operative config of every run is written to
`MODEL_DIR/config.gin` so a run directory always says how it was made.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import importlib.resources
import os
import pathlib
import re
import tokenize
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import gin

from vertjax import errors

# The gin files shipped inside the package (vertjax/gin_configs), searched after the user's paths.
BUILTIN_GIN_DIR = pathlib.Path(str(importlib.resources.files("vertjax") / "gin_configs"))


class _GinBindingAction(argparse.Action):
    """Collects `--gin.NAME=VALUE` (rewritten to `--gin NAME=VALUE` by `normalize_argv`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        getattr(namespace, self.dest).append(values)


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the T5X gin flags to a command's parser."""
    parser.add_argument(
        "--gin_file",
        action="append",
        default=[],
        metavar="FILE",
        help="gin file to parse; repeatable, later files override earlier ones",
    )
    parser.add_argument(
        "--gin_search_paths",
        default="",
        metavar="DIRS",
        help="comma-separated directories searched for gin files and includes",
    )
    parser.add_argument(
        "--gin",
        dest="gin_bindings",
        action=_GinBindingAction,
        default=[],
        metavar="NAME=VALUE",
        help="a gin binding, written T5X-style as --gin.NAME=VALUE; repeatable",
    )


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Rewrites `--gin.NAME=VALUE` into `--gin NAME=VALUE` so argparse can collect it."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            out.extend(["--gin", arg[len("--gin.") :]])
        else:
            out.append(arg)
    return out


def _as_gin_literal(value: str) -> str:
    """Returns VALUE unchanged if it is a gin literal or reference, else quoted as a string.

    T5X needs `--gin.MODEL_DIR=\\"'/tmp/x'\\"`; accepting `--gin.MODEL_DIR=/tmp/x` too saves users a
    quoting puzzle, and anything that already parses (numbers, lists, quoted strings) is untouched.
    """
    stripped = value.strip()
    if stripped.startswith(("@", "%")) or stripped in ("None", "True", "False"):
        return stripped
    try:
        ast.literal_eval(stripped)
        return stripped
    except (ValueError, SyntaxError):
        return repr(stripped)


def binding_strings(bindings: Iterable[str]) -> list[str]:
    out = []
    for binding in bindings:
        if "=" not in binding:
            raise errors.ConfigError(f"gin binding {binding!r} is not of the form NAME=VALUE")
        name, value = binding.split("=", 1)
        out.append(f"{name.strip()} = {_as_gin_literal(value)}")
    return out


def _drop_package_resource_reader() -> None:
    """Stops gin from looking includes up as Python package resources (`gin.resource_reader`).

    For every include missed at a search-path prefix, that reader imports the include's folder as a
    package: it logs "Path not found" errors and crashes (TypeError) when a folder such as a user's
    `runs/` on `sys.path` is a namespace package. vertjax's includes are plain files on the search
    path; gin has no public API to unregister a reader, so its list is filtered here, once.
    """
    readers = gin.config._FILE_READERS
    readers[:] = [r for r in readers if r[0] is not gin.resource_reader.system_path_reader]


_ADDED_SEARCH_PATHS: set[str] = set()


def _add_search_paths(search: Sequence[str]) -> None:
    """Adds each directory of `search` (in order) to gin's include search path, once per process.

    gin keeps its search path for the life of the process and appends to it, so a directory added by
    an earlier parse keeps its place; in a CLI run (one parse) the order is exactly `search`.
    """
    for path in search:
        absolute = os.path.abspath(path)
        if absolute not in _ADDED_SEARCH_PATHS:
            _ADDED_SEARCH_PATHS.add(absolute)
            gin.add_config_file_search_path(absolute)


_drop_package_resource_reader()


def parse_gin(
    *,
    gin_files: Sequence[str],
    gin_bindings: Sequence[str] = (),
    gin_search_paths: Sequence[str] = (),
    finalize: bool = False,
) -> None:
    """Parses gin files and bindings; every failure becomes one `ConfigError` naming the culprit."""
    gin.clear_config()
    # Includes: gin tries the working directory, then the user's paths, then the packaged configs.
    user_paths = [p for p in gin_search_paths if p]
    _add_search_paths(user_paths + [str(BUILTIN_GIN_DIR)])
    search = user_paths + [str(BUILTIN_GIN_DIR), os.getcwd()]
    resolved = []
    for gin_file in gin_files:
        candidates = [pathlib.Path(gin_file)] + [pathlib.Path(p) / gin_file for p in search]
        candidates += _in_shipped_configs(gin_file)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise errors.ConfigError(
                f"gin file {gin_file!r} not found (searched: {', '.join(search)})"
            )
        resolved.append(str(found))
    bindings = binding_strings(gin_bindings)
    for path in resolved:  # one file at a time, so an error can name its file
        try:
            gin.parse_config_file(path)
        except _GIN_PARSE_ERRORS as e:
            raise errors.ConfigError(_gin_message(e, where=path)) from None
    check_macro_bindings(bindings, file_macros())
    try:
        gin.parse_config(bindings)
    except _GIN_PARSE_ERRORS as e:
        raise errors.ConfigError(_gin_message(e, where="--gin bindings")) from None
    if finalize:
        gin.finalize()


def _in_shipped_configs(gin_file: str) -> list[pathlib.Path]:
    """`gin_configs/system/default.gin` or `vertjax/gin_configs/...` (a path into the source
    checkout) as the same file of the installed package, so it works from any folder."""
    parts = pathlib.PurePath(gin_file).parts
    if pathlib.PurePath(gin_file).is_absolute() or "gin_configs" not in parts:
        return []
    inside = parts[len(parts) - parts[::-1].index("gin_configs") :]
    return [BUILTIN_GIN_DIR.joinpath(*inside)] if inside else []


_UNSET = object()
_MACRO_NAME = re.compile(r"[A-Za-z_]\w*")


def file_macros() -> dict[str, Any]:
    """Every macro the parsed gin files define (→ its value) or reference as `%NAME` (→ unset).

    Read from gin's parsed state rather than the files' text, so includes and macros used inside
    lists, dicts and other macros all count.
    """
    config = gin.config._CONFIG
    macros: dict[str, Any] = {
        name: values.get("value", _UNSET)
        for (name, selector), values in config.items()
        if selector == "gin.macro"
    }
    for ref in gin.config.iterate_references(config):
        if ref.configurable.name == "macro":
            macros.setdefault(ref.scoped_selector.rsplit("/", 1)[0], _UNSET)
    return macros


def _same_kind(default: Any, value: Any) -> bool:
    """Whether a command-line value may replace a file's literal default (None always may)."""
    if value is None or default is None or isinstance(default, gin.config.ConfigurableReference):
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and (
            isinstance(default, float) or isinstance(value, int)
        )
    for kinds in (str, (list, tuple), dict):
        if isinstance(default, kinds):
            return isinstance(value, kinds)
    return True


def check_macro_bindings(bindings: Sequence[str], known: dict[str, Any]) -> None:
    """`ConfigError` for a command-line macro that no gin file defines or uses (a typo gin would
    silently ignore), with a did-you-mean, and for a value whose type differs from the file's
    literal default (`--gin.K=abc` where the file has `K = 4`), before anything runs.

    Args:
      bindings: `NAME = VALUE` strings as `binding_strings` writes them.
      known: `file_macros()` of the parsed files.
    """
    for binding in bindings:
        name, _, text = (part.strip() for part in binding.partition("="))
        if not _MACRO_NAME.fullmatch(name):
            continue  # a configurable's parameter: gin itself checks those
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise errors.ConfigError(
                f"gin: --gin.{name}: no gin file defines or uses a macro {name}{hint}"
            )
        default = known[name]
        if default is _UNSET or text.startswith(("@", "%")):
            continue
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue  # gin's own syntax (e.g. a scoped reference): gin judges it
        if not _same_kind(default, value):
            raise errors.ConfigError(
                f"gin: --gin.{name}={text} is a {type(value).__name__}, but the gin files set"
                f" {name} = {default!r} (a {type(default).__name__})"
            )


# What gin raises for a bad file or binding (tokenize.TokenError: an unclosed bracket; NameError:
# under dynamic registration, a name no import statement of the file provides).
_GIN_PARSE_ERRORS = (
    OSError,
    ValueError,
    KeyError,
    SyntaxError,
    ImportError,
    NameError,
    tokenize.TokenError,
)


def _gin_message(e: Exception, *, where: str | None = None) -> str:
    message = str(e).strip().splitlines()
    text = " ".join(line.strip() for line in message if line.strip())
    if isinstance(e, tokenize.TokenError) and len(e.args) == 2:
        text = f"{e.args[0]} (line {e.args[1][0]})"
    if where and where not in text:
        return f"gin: {where}: {text}"
    return f"gin: {text}"


def parse_from_args(args: argparse.Namespace, *, finalize: bool = False) -> None:
    """Parses the gin flags that `add_gin_flags` declared."""
    parse_gin(
        gin_files=args.gin_file,
        gin_bindings=args.gin_bindings,
        gin_search_paths=[p for p in args.gin_search_paths.split(",") if p],
        finalize=finalize,
    )


def write_operative_config(model_dir: str | os.PathLike) -> pathlib.Path:
    """Writes the operative gin config (what the run actually used) to MODEL_DIR/config.gin."""
    path = pathlib.Path(model_dir) / "config.gin"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".gin.tmp")
    tmp.write_text(gin.operative_config_str(), encoding="utf-8")
    tmp.replace(path)
    return path


def query_macro(name: str) -> Any:
    """The value of gin macro NAME; `ConfigError` if it is unset or still `%gin.REQUIRED`."""
    try:
        value = gin.query_parameter(f"{name}/macro.value")
    except ValueError:
        raise errors.ConfigError(
            f"gin macro {name} is not defined (pass --gin.{name}=...)"
        ) from None
    if isinstance(value, gin.config.ConfigurableReference) and str(value) == "%gin.REQUIRED":
        raise errors.ConfigError(f"{name} is required: pass --gin.{name}=...")
    return value


def check_required_macros() -> None:
    """`ConfigError` naming every macro still bound to `%gin.REQUIRED` (T5X's required macros).

    gin itself passes its REQUIRED sentinel on to the callee, which then fails far from the cause.
    """
    missing = re.findall(r"^([A-Za-z_][\w.]*) = %gin\.REQUIRED$", gin.config_str(), re.MULTILINE)
    if missing:
        flags = " ".join(f"--gin.{name}=..." for name in missing)
        raise errors.ConfigError(
            f"required gin macros not set: {', '.join(missing)} (pass {flags})"
        )


def call_configurable(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Calls a gin configurable, turning gin's missing-binding errors into `ConfigError`."""
    try:
        return fn(**kwargs)
    except errors.VertjaxError as e:
        # gin re-raises through a proxy subclass that adds "In call to configurable ..." lines;
        # re-raise the vertjax class itself with the first line only.
        cls = next(c for c in type(e).__mro__ if vars(errors).get(c.__name__) is c)
        raise cls(str(e).splitlines()[0]) from None
    except RuntimeError as e:
        if str(e).startswith("Required bindings for"):  # a parameter gin was told to supply
            raise errors.ConfigError(_gin_message(e)) from None
        raise


_Settings = TypeVar("_Settings")


def _matches(value: Any, hint: Any) -> bool:
    """Whether a gin-parsed value fits a field annotation (int, float, bool, str, None, unions,
    list/tuple/dict of those); an int passes as a float, a bool never as a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):  # gin writes [a, b] or (a, b): either is accepted; items alike
        return isinstance(value, list | tuple) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    return isinstance(value, origin or hint)


def configured_dataclass(cls: type[_Settings]) -> _Settings:
    """An instance of dataclass `cls` from its gin bindings, each field checked first.

    For settings that a gin file binds field by field (`module.Class.field = value` under dynamic
    registration; `--gin.Class.field=value` on the command line). gin itself rejects a misspelt
    field at parse time; this adds one `ConfigError` naming `Class.field` for a field that is not
    bound, still `%gin.REQUIRED`, or whose value does not fit the field's type annotation.
    Ranges are the dataclass's own business (its `__post_init__`).
    """
    name = cls.__name__
    try:
        bound = gin.get_bindings(cls)
    except ValueError:  # never registered: no parsed gin file imports its module
        raise errors.ConfigError(
            f"gin: no gin file binds {name} (import {cls.__module__} in the gin file)"
        ) from None
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        value = bound.get(field.name, default)
        flag = f"--gin.{name}.{field.name}=..."
        if value is gin.REQUIRED or value is dataclasses.MISSING:
            raise errors.ConfigError(f"gin: {name}.{field.name} is required (pass {flag})")
        hint = hints[field.name]
        if not _matches(value, hint):
            kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise errors.ConfigError(
                f"gin: {name}.{field.name} = {value!r} is not of type {kind} (pass {flag})"
            )
    return call_configurable(gin.get_configurable(cls))
