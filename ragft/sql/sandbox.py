"""Running model-written SQL safely: read-only, authorised, time-limited, row-capped.

Layers, each enough on its own for what it guards:
- the database is opened read-only (`mode=ro` URI) with `PRAGMA query_only`;
- only a single SELECT / WITH / VALUES statement is accepted;
- an authorizer denies every write, ATTACH (which `VACUUM INTO` needs), PRAGMA,
  transaction control, schema change and `load_extension`;
- a progress handler stops a query past its time limit (a runaway recursive CTE);
- rows are fetched up to a cap (a cross join of billions of rows).
Every refusal or failure comes back as an `SqlResult` with a kind and reason, never raised.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ragft.errors import InputError

ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
FIRST_WORDS = ("select", "with", "values")

ERROR_KINDS = ("refused", "syntax", "runtime", "timeout", "too_many_rows", "multiple_statements", "empty")


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

    def __init__(self, path: str | Path, timeout_s: float = 5.0, max_rows: int = 100_000):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("SQLite database not found", self.path)
        self.timeout_s = timeout_s
        self.max_rows = max_rows
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA query_only = ON")
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
            cursor = self.conn.execute(text)
            rows = cursor.fetchmany(self.max_rows + 1)
            columns = [d[0] for d in cursor.description or []]
            cursor.close()
        except sqlite3.ProgrammingError as e:
            kind = "multiple_statements" if "one statement" in str(e) else "runtime"
            return SqlResult(None, [], kind, str(e), time.perf_counter() - start)
        except sqlite3.DatabaseError as e:
            return SqlResult(None, [], *self._classify(e), time.perf_counter() - start)
        finally:
            self.conn.set_progress_handler(None, 0)
        seconds = time.perf_counter() - start
        if len(rows) > self.max_rows:
            return SqlResult(None, columns, "too_many_rows", f"more than {self.max_rows} rows", seconds)
        return SqlResult(rows, columns, seconds=seconds)

    def _classify(self, error: sqlite3.DatabaseError) -> tuple[str, str]:
        message = str(error)
        if "interrupted" in message:
            return "timeout", f"stopped after {self.timeout_s:g} s"
        if "not authorized" in message or "prohibited" in message or "readonly" in message:
            return "refused", self._denied or message
        if "syntax error" in message or "incomplete input" in message or "unrecognized token" in message:
            return "syntax", message
        return "runtime", message
