"""Errors that reach users. Each names what was wrong and where."""

from __future__ import annotations

from pathlib import Path


class RagftError(Exception):
    """Base class for errors ragft reports to users without a traceback."""


class InputError(RagftError):
    """Bad user input: a file, a line of a file, or a value."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(where + message)


class ConfigError(InputError):
    """A configuration file or override that cannot be used."""

    key: str | None = None
    """The offending dotted key, when there is one."""


class ArtifactError(RagftError):
    """A saved artifact (index, adapter, model cache) that is missing, corrupt or mismatched."""
