"""Text-to-SQL data: the Spider layout, or one SQLite file with a JSONL of question/SQL pairs.

Schemas are serialised for prompts as CREATE TABLE statements (with primary and foreign
keys), optionally followed by a few sample rows per table read from the database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ragft.errors import InputError
from ragft.io import read_json, read_jsonl


@dataclass(frozen=True)
class SqlExample:
    """A question with its gold SQL over one database."""

    id: str
    question: str
    query: str
    db_id: str
    split: str
    group: str | None = None
    """The cluster it was sampled in, when not its database; the bootstrap resamples clusters."""


@dataclass(frozen=True)
class SqlData:
    """A text-to-SQL data set as its files hold it: the pairs of every split, the schemas and
    the database files (`ragft.SQLTask` holds a task's train and test pairs from it)."""

    examples: list[SqlExample]
    schemas: dict[str, str]
    """Database id to its CREATE TABLE text."""
    databases: dict[str, Path]
    """Database id to its SQLite file, for the databases that are present."""

    def split(self, name: str) -> list[SqlExample]:
        return [e for e in self.examples if e.split == name]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_from_tables_entry(entry: dict) -> str:
    """CREATE TABLE statements from one `tables.json` entry (Spider's schema file)."""
    tables = entry["table_names_original"]
    columns = entry["column_names_original"]
    types = entry["column_types"]
    primary = set()
    for key in entry.get("primary_keys", []):
        primary.update(key if isinstance(key, list) else [key])
    foreign: dict[int, list[tuple[int, int]]] = {}
    for src, dst in entry.get("foreign_keys", []):
        foreign.setdefault(columns[src][0], []).append((src, dst))
    out = []
    for t, table in enumerate(tables):
        lines = []
        for c, (owner, name) in enumerate(columns):
            if owner != t:
                continue
            sql_type = "number" if types[c] == "number" else "text"
            lines.append(f"  {_ident(name)} {sql_type}" + (" primary key" if c in primary else ""))
        for src, dst in foreign.get(t, []):
            target = f"{_ident(tables[columns[dst][0]])}({_ident(columns[dst][1])})"
            lines.append(f"  foreign key ({_ident(columns[src][1])}) references {target}")
        out.append(f"CREATE TABLE {_ident(table)} (\n" + ",\n".join(lines) + "\n);")
    return "\n".join(out)


def connect_read_only(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    return conn


def schema_from_sqlite(path: str | Path) -> str:
    """The CREATE TABLE statements stored in a SQLite file."""
    with connect_read_only(Path(path)) as conn:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL").fetchall()
    return "\n".join(r[0].strip() + ";" for r in rows if not r[0].startswith("CREATE TABLE sqlite_"))


def sample_rows(path: str | Path, rows: int = 3) -> str:
    """A few rows of each table, as SQL comments to append to a schema."""
    out = []
    with connect_read_only(Path(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            if table.startswith("sqlite_"):
                continue
            cursor = conn.execute(f"SELECT * FROM {_ident(table)} LIMIT {int(rows)}")
            names = [d[0] for d in cursor.description]
            values = cursor.fetchall()
            out.append(f"/* {len(values)} rows of {table}: {', '.join(names)}")
            out += [" | ".join(str(v) for v in row) for row in values]
            out.append("*/")
    return "\n".join(out)


def load_spider(folder: str | Path, splits: tuple[str, ...] = ("train", "dev")) -> SqlData:
    """Spider layout: `<split>.json`, `tables.json`, `database/<db_id>/<db_id>.sqlite`."""
    folder = Path(folder)
    tables_path = folder / "tables.json"
    if not tables_path.is_file():
        raise InputError("no tables.json (Spider layout expected)", folder)
    schemas = {entry["db_id"]: schema_from_tables_entry(entry) for entry in read_json(tables_path)}
    examples = []
    for split in splits:
        path = folder / f"{split}.json"
        rows = read_json(path)
        if not isinstance(rows, list):
            raise InputError("expected a JSON list of {db_id, question, query}", path)
        for n, row in enumerate(rows):
            missing = [k for k in ("db_id", "question", "query") if k not in row]
            if missing:
                raise InputError(f"example {n} lacks {', '.join(missing)}", path)
            if row["db_id"] not in schemas:
                raise InputError(f"example {n}: database {row['db_id']!r} is not in tables.json", path)
            examples.append(SqlExample(f"{split}-{n}", row["question"], row["query"], row["db_id"], split))
    databases = {p.parent.name: p for p in sorted((folder / "database").glob("*/*.sqlite")) if p.stem == p.parent.name}
    return SqlData(examples, schemas, databases)


def load_sqlite_task(database: str | Path, pairs: str | Path) -> SqlData:
    """One SQLite file and a JSONL of {id?, question, query, split, group?} rows (split: train/test)."""
    database, pairs = Path(database), Path(pairs)
    if not database.is_file():
        raise InputError("SQLite database not found", database)
    db_id = database.stem
    examples = []
    for number, row in read_jsonl(pairs):
        missing = [k for k in ("question", "query", "split") if k not in row]
        if missing:
            raise InputError(f"missing key {missing[0]!r}", pairs, number)
        if row["split"] not in ("train", "test"):
            raise InputError(f"split must be train or test, got {row['split']!r}", pairs, number)
        group = None if row.get("group") is None else str(row["group"])
        examples.append(
            SqlExample(str(row.get("id", number)), row["question"], row["query"], db_id, row["split"], group)
        )
    return SqlData(examples, {db_id: schema_from_sqlite(database)}, {db_id: database})
