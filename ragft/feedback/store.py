"""The feedback store: every exchange a served pipeline had, and the ratings and corrections
people gave it, in one SQLite file of the run folder (`feedback.sqlite`, WAL mode).

A row is committed (and synced) before the request that wrote it is answered, so whatever a
client saw acknowledged survives a killed server. One connection, guarded by a lock, serves
every request thread; readers elsewhere (an export, a test) open the file on their own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragft.errors import InputError, WriteError

FILENAME = "feedback.sqlite"
RATINGS = ("up", "down")

SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    pipeline TEXT NOT NULL,
    model TEXT NOT NULL,
    question TEXT NOT NULL,
    passages TEXT NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    exchange_id TEXT NOT NULL REFERENCES exchanges(id),
    rating TEXT CHECK (rating IS NULL OR rating IN ('up', 'down')),
    correction TEXT,
    reviewer TEXT
);
CREATE INDEX IF NOT EXISTS feedback_by_exchange ON feedback(exchange_id);
CREATE INDEX IF NOT EXISTS exchanges_by_time ON exchanges(created);
"""


@dataclass(frozen=True)
class Passage:
    """A passage a served pipeline showed its model: chunk id and text."""

    id: str
    text: str


@dataclass(frozen=True)
class Exchange:
    """One answered request: the question, the passages shown, the exact prompt, the answer."""

    id: str
    created: float
    pipeline: str
    model: str
    """The model id the client asked for (the pipeline, or its `:chat` model)."""
    question: str
    passages: tuple[Passage, ...]
    prompt: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


@dataclass(frozen=True)
class Feedback:
    """A reviewer's word on an exchange: a rating, a corrected answer, or both."""

    id: int
    created: float
    exchange_id: str
    rating: str | None
    correction: str | None
    reviewer: str | None


class UnknownExchange(InputError):
    """Feedback for an exchange id the store does not hold."""

    def __init__(self, exchange_id: str):
        self.exchange_id = exchange_id
        super().__init__(f"no exchange {exchange_id!r} in this feedback store")


class FeedbackStore:
    """Exchanges and feedback in one SQLite file (created with its folder on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a 200 means the row is on disk
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            if db is not None:
                db.close()
            raise InputError(f"not a ragft feedback store: {e}", self.path) from None
        except OSError as e:
            raise WriteError(f"could not open {self.path}: {e}") from e
        self._db = db
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write, all of it or none: a failed commit (disk full) is rolled back."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise WriteError(f"could not write {self.path}: {e}") from e
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError):
                    raise WriteError(f"could not write {self.path}: {e}") from e
                raise

    def add_exchange(
        self,
        pipeline: str,
        model: str,
        question: str,
        passages: tuple[Passage, ...],
        prompt: str,
        answer: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_s: float,
    ) -> Exchange:
        """Record an answered request; returns it with its new id."""
        exchange = Exchange(
            uuid.uuid4().hex,
            time.time(),
            pipeline,
            model,
            question,
            passages,
            prompt,
            answer,
            prompt_tokens,
            completion_tokens,
            latency_s,
        )
        passages_json = json.dumps([{"id": p.id, "text": p.text} for p in passages], ensure_ascii=False)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO exchanges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    exchange.id,
                    exchange.created,
                    pipeline,
                    model,
                    question,
                    passages_json,
                    prompt,
                    answer,
                    prompt_tokens,
                    completion_tokens,
                    latency_s,
                ),
            )
        return exchange

    def add_feedback(
        self, exchange_id: str, rating: str | None = None, correction: str | None = None, reviewer: str | None = None
    ) -> Feedback:
        """Record a rating and/or a corrected answer for an exchange; an unknown exchange is
        refused (`UnknownExchange`), as is feedback with neither."""
        if rating is not None and rating not in RATINGS:
            raise InputError(f"rating must be 'up' or 'down', got {rating!r}")
        correction = correction.strip() if correction is not None else None
        if rating is None and not correction:
            raise InputError("feedback needs a rating ('up' or 'down'), a corrected answer, or both")
        created = time.time()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM exchanges WHERE id = ?", (exchange_id,)).fetchone() is None:
                raise UnknownExchange(exchange_id)
            cursor = db.execute(
                "INSERT INTO feedback (created, exchange_id, rating, correction, reviewer) VALUES (?, ?, ?, ?, ?)",
                (created, exchange_id, rating, correction or None, reviewer or None),
            )
            row_id = cursor.lastrowid
        assert row_id is not None
        return Feedback(row_id, created, exchange_id, rating, correction or None, reviewer or None)

    def exchange(self, exchange_id: str) -> Exchange:
        with self._lock:
            row = self._db.execute("SELECT * FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
        if row is None:
            raise UnknownExchange(exchange_id)
        return _exchange(row)

    def recent(self, limit: int = 50, pipeline: str | None = None) -> list[Exchange]:
        """The latest exchanges, newest first."""
        where, args = ("WHERE pipeline = ?", [pipeline]) if pipeline else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM exchanges {where} ORDER BY created DESC, rowid DESC LIMIT ?", [*args, limit]
            ).fetchall()
        return [_exchange(r) for r in rows]

    def feedback(self, exchange_id: str | None = None) -> list[Feedback]:
        """Feedback rows in the order given (for one exchange, or all)."""
        where, args = ("WHERE exchange_id = ?", [exchange_id]) if exchange_id else ("", [])
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM feedback {where} ORDER BY id", args).fetchall()
        return [Feedback(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            (exchanges,) = self._db.execute("SELECT COUNT(*) FROM exchanges").fetchone()
            (feedback,) = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()
        return {"exchanges": exchanges, "feedback": feedback}


def _exchange(row: tuple[Any, ...]) -> Exchange:
    values = list(row)
    values[5] = tuple(Passage(p["id"], p["text"]) for p in json.loads(values[5]))
    return Exchange(*values)


def open_store(run: str | Path) -> FeedbackStore:
    """The feedback store of a run folder."""
    return FeedbackStore(Path(run) / FILENAME)
