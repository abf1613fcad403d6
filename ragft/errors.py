"""Errors that reach users. Each names what was wrong and where."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class RagftError(Exception):
    """Base class for errors ragft reports to users without a traceback."""


class RenamedWarning(FutureWarning):
    """A setting, flag or name written the way an earlier release spelled it: it still works
    in this release, and the message names the new spelling."""


class NotMade(RagftError):
    """Predictions a run may only read (`ragft compare --pipeline` names other pipelines) are
    not finished in the run folder with the keys the config gives them now."""


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


class WriteError(RagftError):
    """A file ragft writes could not be written (disk full, no permission); what was written before stays."""


class EndpointError(RagftError):
    """A generator endpoint that did not answer, or refused the request."""


class BusyError(RagftError):
    """A run folder another ragft process is working in."""


EXIT_OK = 0
EXIT_INTERNAL = 1
"""An error ragft did not anticipate: a bug, or a library failing in a way not yet named."""
EXIT_INPUT = 2
"""Bad input: a config key or value, a data file, a command-line argument, a saved artifact."""
EXIT_SYSTEM = 3
"""The machine refused: a disk full, a permission missing, memory exhausted, a run folder in use."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C or SIGTERM; finished work is kept and the same command continues it."""


@contextlib.contextmanager
def naming(what: str) -> Iterator[None]:
    """Name `what` (a pipeline, a file) in any error raised inside, as an exception note
    that `explain` puts before the message."""
    try:
        yield
    except Exception as e:
        if what not in getattr(e, "__notes__", ()):
            e.add_note(what)
        raise


def explain(error: BaseException) -> tuple[str, int]:
    """One or two lines for a user and the exit code, for any exception."""
    notes = [n for n in getattr(error, "__notes__", ()) if "\n" not in n]
    where = "".join(f"{n}: " for n in reversed(notes))
    if isinstance(error, (WriteError, BusyError, EndpointError)):
        return f"ragft: error: {where}{error}", EXIT_SYSTEM
    if isinstance(error, RagftError):
        return f"ragft: error: {where}{error}", EXIT_INPUT
    if isinstance(error, OSError) and error.strerror:
        files = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        return f"ragft: error: {where}{files + ': ' if files else ''}{error.strerror}", EXIT_SYSTEM
    if isinstance(error, MemoryError):
        return f"ragft: error: {where}out of memory; try smaller batch sizes", EXIT_SYSTEM
    message = f"{type(error).__name__}: {error}".rstrip(": ")
    return (
        f"ragft: internal error: {where}{message}\n"
        "ragft: this is a bug or a setup ragft does not handle yet; run again with --debug for the traceback",
        EXIT_INTERNAL,
    )
