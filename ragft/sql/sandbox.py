"""Running model-written SQL safely: read-only, authorised, time-limited, row-capped.

Layers, each enough on its own for what it guards:
- the database is opened read-only (`mode=ro` URI) with `PRAGMA query_only`;
- only a single SELECT / WITH / VALUES statement is accepted;
- an authorizer denies every write, ATTACH (which `VACUUM INTO` needs), PRAGMA,
  transaction control, schema change and `load_extension`;
- a progress handler stops a query past its time limit (a runaway recursive CTE);
- no string or blob may grow past `max_value_bytes` (`randomblob(1e9)` fails at once instead
  of allocating a gigabyte the progress handler cannot interrupt), SQLite's heap is capped at
  `max_memory_bytes` while a query runs (many large values, a huge sort; temporary tables
  are kept in that memory, not on disk);
- rows are fetched up to a cap (a cross join of billions of rows), and up to
  `max_result_bytes` of values.
Every refusal or failure comes back as an `SqlResult` with a kind and reason, never raised.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ragft.errors import InputError

ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
FIRST_WORDS = ("select", "with", "values")

ERROR_KINDS = ("refused", "syntax", "runtime", "timeout", "too_many_rows", "too_large", "multiple_statements", "empty")
MB = 1 << 20
_HEAP = threading.Lock()
"""SQLite's heap limit is per process: queries of every sandbox take turns under it."""


@dataclass(frozen=True)
class SqlResult:
    """What running one statement gave: rows, or the kind of failure and why."""

    rows: list[tuple[Any, ...]] | None
    columns: list[str]
    error_kind: str | None = None
    """None when the statement ran; otherwise one of ERROR_KINDS."""
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error_kind is None


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?(\*/|$)", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql)


class Sandbox:
    """Runs statements against one SQLite file; the file is never changed."""

    def __init__(
        self,
        path: str | Path,
        timeout_s: float = 5.0,
        max_rows: int = 100_000,
        max_value_bytes: int = 10 * MB,
        max_memory_bytes: int = 256 * MB,
        max_result_bytes: int = 64 * MB,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("SQLite database not found", self.path)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        self.max_memory_bytes = max_memory_bytes
        self.max_result_bytes = max_result_bytes
        self._batch = max(1, min(1000, max_result_bytes // max_value_bytes))
        """Rows fetched at a time: however large their values, one batch stays under the result cap."""
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA query_only = ON")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max_value_bytes)
        self.conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
        self._denied = ""
        self.conn.set_authorizer(self._authorize)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            self._denied = f"function {arg2}() is not allowed"
            return sqlite3.SQLITE_DENY
        if action in ALLOWED:
            return sqlite3.SQLITE_OK
        names = {v: k for k, v in vars(sqlite3).items() if k.startswith("SQLITE_") and isinstance(v, int)}
        self._denied = f"{names.get(action, action)} {arg1 or ''} is not allowed".replace("  ", " ")
        return sqlite3.SQLITE_DENY

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, sql: str) -> SqlResult:
        """Run one read-only statement; failures are results, not exceptions."""
        start = time.perf_counter()
        text = _strip_comments(sql).strip().rstrip(";").strip()
        if not text:
            return SqlResult(None, [], "empty", "no SQL statement")
        first = re.match(r"[\s(]*(\w+)", text)
        if first is None or first.group(1).lower() not in FIRST_WORDS:
            word = first.group(1).upper() if first else text[:20]
            return SqlResult(None, [], "refused", f"only SELECT statements may run, not {word}")
        if not sqlite3.complete_statement(text + ";"):
            return SqlResult(None, [], "syntax", "incomplete statement (unclosed quote or parenthesis)")
        deadline = start + self.timeout_s
        self.conn.set_progress_handler(lambda: int(time.perf_counter() > deadline), 1000)
        self._denied = ""
        try:
            with _heap_limit(self.max_memory_bytes):
                cursor = self.conn.execute(text)
                columns = [d[0] for d in cursor.description or []]
                rows, size = [], 0
                while len(rows) <= self.max_rows and size <= self.max_result_bytes:
                    batch = cursor.fetchmany(min(self._batch, self.max_rows + 1 - len(rows)))
                    if not batch:
                        break
                    rows += batch
                    size += sum(_size(v) for row in batch for v in row)
                cursor.close()
        except sqlite3.ProgrammingError as e:
            kind = "multiple_statements" if "one statement" in str(e) else "runtime"
            return SqlResult(None, [], kind, str(e), time.perf_counter() - start)
        except sqlite3.DataError as e:
            return SqlResult(None, [], *self._classify(e), time.perf_counter() - start)
        except MemoryError:
            reason = f"needed more than {self.max_memory_bytes // MB} MB of memory"
            return SqlResult(None, [], "too_large", reason, time.perf_counter() - start)
        except sqlite3.DatabaseError as e:
            return SqlResult(None, [], *self._classify(e), time.perf_counter() - start)
        finally:
            self.conn.set_progress_handler(None, 0)
        seconds = time.perf_counter() - start
        if len(rows) > self.max_rows:
            return SqlResult(None, columns, "too_many_rows", f"more than {self.max_rows} rows", seconds)
        if size > self.max_result_bytes:
            reason = f"more than {self.max_result_bytes // MB} MB of values"
            return SqlResult(None, columns, "too_large", reason, seconds)
        return SqlResult(rows, columns, seconds=seconds)

    def _classify(self, error: sqlite3.DatabaseError) -> tuple[str, str]:
        message = str(error)
        if "too big" in message or "out of memory" in message:
            return "too_large", message
        if "interrupted" in message:
            return "timeout", f"stopped after {self.timeout_s:g} s"
        if "not authorized" in message or "prohibited" in message or "readonly" in message:
            return "refused", self._denied or message
        if "syntax error" in message or "incomplete input" in message or "unrecognized token" in message:
            return "syntax", message
        return "runtime", message


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes)) else 8


@contextlib.contextmanager
def _heap_limit(limit: int) -> Iterator[None]:
    """Cap SQLite's heap (per process) while one query runs, then restore the cap before it.

    `PRAGMA hard_heap_limit` can only lower the cap, so it is set through the C interface;
    where that is not reachable, the pragma sets it once for the process instead."""
    with _HEAP:
        setter = _heap_setter()
        if setter is None:
            with contextlib.closing(sqlite3.connect(":memory:")) as control:
                control.execute(f"PRAGMA hard_heap_limit = {int(limit)}")
            yield
            return
        previous = setter(int(limit))
        try:
            yield
        finally:
            setter(previous)


@functools.cache
def _heap_setter() -> Callable[[int], int] | None:
    """`sqlite3_hard_heap_limit64` of the SQLite library Python's sqlite3 module uses (a
    negative argument reads the cap, 0 removes it); None where the symbol is not found."""
    import _sqlite3
    import ctypes

    try:
        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_hard_heap_limit64
    except (OSError, AttributeError):
        return None
    function.restype, function.argtypes = ctypes.c_int64, [ctypes.c_int64]
    return function
