"""User-facing error types.

The CLI prints these as one line (no traceback) and exits with status 2. Raise them for input a user
can fix: a missing file, a bad JSONL line, an unknown gin binding, a corrupted checkpoint or index.
"""

from __future__ import annotations

import os


class VertjaxError(Exception):
    """Base class of every error the CLI reports without a traceback."""

    exit_code = 2


class ConfigError(VertjaxError):
    """A gin file, binding or flag is missing or wrong."""


class DataError(VertjaxError):
    """An input file (corpus, JSONL, vocab) is missing, empty or malformed."""

    def __init__(
        self, message: str, *, path: str | os.PathLike | None = None, line: int | None = None
    ):
        where = ""
        if path is not None:
            where = f"{os.fspath(path)}"
            if line is not None:
                where += f":{line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class CheckpointError(VertjaxError):
    """A checkpoint is missing, incomplete or does not match the model."""


class RetrievalIndexError(VertjaxError):
    """A retrieval index is missing, corrupted or has the wrong dimension."""


class TrainingError(VertjaxError):
    """Training diverged (NaN/inf loss) or cannot continue."""


class BackendError(VertjaxError):
    """A generator backend (e.g. an OpenAI-compatible server) is unreachable or misbehaves."""
