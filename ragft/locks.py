"""Locks between ragft processes: one process at a time in a run folder, one conversion at a
time of a cached model. The operating system releases a lock when its process dies, even
by SIGKILL, so a stale lock file never blocks anyone."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ragft.errors import BusyError
from ragft.io import write_json_atomic

RUN_LOCK = ".ragft.lock"
HOLDER = ".ragft.lock.json"
"""Who holds a run folder's lock: pid, host, command and start time, for the refusal message."""


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[None]:
    """Hold a run folder for this process. A second process gets a BusyError naming the
    holder at once: two runs writing one folder would interleave their files."""
    from filelock import FileLock, Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / RUN_LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BusyError(
            f"run folder {folder} is in use by {_holder(folder)}; wait for it to finish "
            "or run elsewhere (another experiment.name or --out)"
        ) from None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv), "started": started}
        write_json_atomic(folder / HOLDER, holder)
        yield
    finally:
        with contextlib.suppress(OSError):
            (folder / HOLDER).unlink()
        lock.release()


def _holder(folder: Path) -> str:
    try:
        h = json.loads((folder / HOLDER).read_text(encoding="utf-8"))
        return f"ragft pid {h['pid']} on {h['host']} since {h['started']} ({h['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another ragft process"


@contextlib.contextmanager
def waiting_lock(path: str | Path) -> Iterator[None]:
    """Hold `path` (a lock file), waiting for another process that holds it: for work that
    is done once and shared, such as converting a model into the cache."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield
