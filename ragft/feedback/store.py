"""The feedback store: every exchange a served pipeline had, and the ratings and corrections
people gave it, in one SQLite file of the run folder (`feedback.sqlite`, WAL mode).

A row is committed (and synced) before the request that wrote it is answered, so whatever a
client saw acknowledged survives a killed server. One connection, guarded by a lock, serves
every request thread; readers elsewhere (an export, `ragft monitor`) open the file on their
own, `read_history` read-only.

Each exchange keeps the retriever's top score and the identity of the run that served it;
the store keeps the run it was made for (`store_info`). Stores made before these existed
are read as they are (no score, no identity) and gain the columns when a server opens them.
"""

from __future__ import annotations

import json
import math
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
    latency_s REAL NOT NULL,
    top_score REAL,
    run TEXT
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
CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

ADDED_COLUMNS = {"top_score": "REAL", "run": "TEXT"}
"""Exchange columns a store made before them lacks, added when a server opens it."""


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
    top_score: float | None = None
    """The retriever's score of the first passage shown (None: nothing retrieved, or an older store)."""
    run: str | None = None
    """The identity of the run that served it (`RunIdentity.id`; None in an older store)."""


@dataclass(frozen=True)
class RunIdentity:
    """Which run a store belongs to: a digest of the run's settings, and its experiment's name."""

    id: str
    name: str


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

    def __init__(self, path: str | Path, run: RunIdentity | None = None):
        self.path = Path(path)
        self.run = run
        db = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a 200 means the row is on disk
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(SCHEMA)
            have = {row[1] for row in db.execute("PRAGMA table_info(exchanges)")}
            for column, kind in ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE exchanges ADD COLUMN {column} {kind}")
            if run is not None:  # the run the store was made for: its first server's
                for key, value in (("run", run.id), ("run_name", run.name)):
                    db.execute("INSERT OR IGNORE INTO store_info VALUES (?, ?)", (key, value))
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
        top_score: float | None = None,
    ) -> Exchange:
        """Record an answered request (with the retriever's top score, where it retrieved);
        returns it with its new id."""
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
            top_score,
            self.run.id if self.run else None,
        )
        passages_json = json.dumps([{"id": p.id, "text": p.text} for p in passages], ensure_ascii=False)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO exchanges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    top_score,
                    exchange.run,
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


def open_store(run: str | Path, identity: RunIdentity | None = None) -> FeedbackStore:
    """The feedback store of a run folder (made for the run `identity` names, when given)."""
    return FeedbackStore(Path(run) / FILENAME, identity)


@dataclass(frozen=True)
class Served:
    """One exchange as monitoring reads it: when, what was asked, how it went, what people said."""

    id: str
    created: float
    pipeline: str
    model: str
    question: str
    completion_tokens: int
    latency_s: float
    top_score: float | None
    run: str | None
    ratings: tuple[tuple[float, str], ...] = ()
    """(when, 'up' or 'down') of every rating it had, in the order given."""
    corrected_at: float | None = None
    """When its first correction came (None: never corrected)."""

    @property
    def rating(self) -> str | None:
        """The standing rating: the latest one given."""
        return self.ratings[-1][1] if self.ratings else None

    @property
    def corrected(self) -> bool:
        return self.corrected_at is not None

    def judged(self, before: float = math.inf) -> str | None:
        """What people said of the answer by `before`: the latest rating, else 'down' for a
        correction without one (the answer should have been another), else None."""
        given = [rating for when, rating in self.ratings if when <= before]
        if given:
            return given[-1]
        return "down" if self.corrected_at is not None and self.corrected_at <= before else None


@dataclass(frozen=True)
class History:
    """A store's exchanges in the order they were stored, with the run it was made for (None: an older store)."""

    path: Path
    run: RunIdentity | None
    exchanges: list[Served]


def read_history(path: str | Path) -> History:
    """Every exchange of the store at `path` with the feedback it had, read in one read-only
    transaction: safe beside a server writing to it, and the store's data is not changed (an
    older store is read as it is). SQLite may make the store's `-wal` and `-shm` companion
    files to read a WAL store no server holds open, so the folder must be writable."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no feedback store here: `ragft serve` of the run's pipeline makes it", path)
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as e:
        raise InputError(f"could not open the feedback store read-only: {e}", path) from None
    try:
        db.execute("BEGIN")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"exchanges", "feedback"} <= tables:
            raise InputError("not a ragft feedback store (no exchanges and feedback tables)", path)
        columns = {row[1] for row in db.execute("PRAGMA table_info(exchanges)")}
        extra = ", ".join(c if c in columns else f"NULL AS {c}" for c in ADDED_COLUMNS)
        rows = db.execute(
            "SELECT id, created, pipeline, model, question, completion_tokens, latency_s, "
            f"{extra} FROM exchanges ORDER BY rowid"
        ).fetchall()
        ratings: dict[str, list[tuple[float, str]]] = {}
        corrected: dict[str, float] = {}
        for exchange_id, created, rating, correction in db.execute(
            "SELECT exchange_id, created, rating, correction FROM feedback ORDER BY id"
        ):
            if rating is not None:
                ratings.setdefault(exchange_id, []).append((created, rating))
            if correction:
                corrected.setdefault(exchange_id, created)
        info = dict(db.execute("SELECT key, value FROM store_info").fetchall()) if "store_info" in tables else {}
        db.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise InputError(f"could not read the feedback store: {e}", path) from None
    finally:
        db.close()
    run = RunIdentity(info["run"], info.get("run_name", "")) if "run" in info else None
    served = [Served(*row, tuple(ratings.get(row[0], ())), corrected.get(row[0])) for row in rows]
    return History(path, run, served)
