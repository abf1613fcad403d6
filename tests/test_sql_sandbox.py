"""Hostile and broken SQL: each refused or failed cleanly, the database file unchanged."""

import sqlite3

import pytest
from helpers import shop_database

from ragft.io import sha256_file
from ragft.sql.sandbox import Sandbox


@pytest.fixture
def db(tmp_path):
    return shop_database(tmp_path / "shop.sqlite", 1000)


HOSTILE = [
    ("DROP TABLE item", "refused"),
    ("DELETE FROM item", "refused"),
    ("UPDATE item SET price = 0", "refused"),
    ("INSERT INTO item (name) VALUES ('x')", "refused"),
    ("ATTACH DATABASE '{dir}/other.db' AS other", "refused"),
    ("PRAGMA writable_schema=1", "refused"),
    ("VACUUM INTO '{dir}/copy.db'", "refused"),
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", "timeout"),
    ("SELECT * FROM item a, item b, item c, item d", "too_many_rows"),
    ("SELECT count(*) FROM item a, item b, item c, item d", "timeout"),
    ("SELECT load_extension('/tmp/evil.so')", "refused"),
    ("SELECT name FROM item; DELETE FROM item", "multiple_statements"),
    ("SELECT name FROM item; SELECT price FROM item", "multiple_statements"),
    ("SELEC name FROM item", "refused"),
    ("SELECT name FROM item WHERE", "syntax"),
    ("SELECT name FROM item WHERE name = 'unclosed", "syntax"),
    ("SELECT nosuch FROM item", "runtime"),
    ("/* hidden */ DROP TABLE item -- SELECT", "refused"),
    ("WITH x AS (SELECT 1) DELETE FROM item", "refused"),
    ("SELECT * FROM pragma_table_info('item')", "refused"),
    ("", "empty"),
    # One huge allocation the progress handler cannot interrupt, and several of them.
    ("SELECT length(randomblob(1000000000))", "too_large"),
    ("SELECT length(randomblob(600000000) || randomblob(600000000) || randomblob(600000000))", "too_large"),
    ("SELECT length(zeroblob(2000000000))", "too_large"),
    ("SELECT length(replace(hex(zeroblob(4000000)), '0', hex(zeroblob(1000))))", "too_large"),
    ("SELECT randomblob(4000000) FROM item", "too_large"),  # rows within the cap, their values not
    (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100) "
        "SELECT length(group_concat(b)) FROM (SELECT randomblob(4000000) AS b FROM r ORDER BY random())",
        "too_large",
    ),
]


@pytest.mark.parametrize("sql,kind", HOSTILE)
def test_hostile_statement_is_refused_and_database_unchanged(db, tmp_path, sql, kind):
    before = sha256_file(db)
    limits = dict(max_value_bytes=5 << 20, max_memory_bytes=32 << 20, max_result_bytes=16 << 20)
    with Sandbox(db, timeout_s=0.5, max_rows=1000, **limits) as sandbox:
        result = sandbox.run(sql.format(dir=tmp_path))
        assert result.error_kind == kind, result
        assert result.rows is None and result.error
        assert sandbox.run("SELECT count(*) FROM item").rows == [(1000,)]  # still usable
    assert sha256_file(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop.sqlite"]  # no file created


def test_select_returns_rows_and_columns(db):
    with Sandbox(db) as sandbox:
        result = sandbox.run("SELECT name, price FROM item WHERE id <= 2 ORDER BY id;")
    assert result.ok and result.columns == ["name", "price"]
    assert result.rows == [("item 0", 0.0), ("item 1", 1.5)]


def test_missing_database_is_named(tmp_path):
    from ragft.errors import InputError

    with pytest.raises(InputError, match="nope.sqlite"):
        Sandbox(tmp_path / "nope.sqlite")


def test_execution_match_compares_multisets_and_order_only_when_gold_sorts(db):
    from ragft.sql.score import execution_match, extract_sql, ordered

    assert ordered("SELECT a FROM t ORDER BY a") and not ordered("SELECT a FROM (SELECT a FROM t ORDER BY a)")
    assert not ordered("SELECT 'order by' FROM t")
    assert extract_sql("Here:\n```sql\nSELECT 1;\n```\nDone") == "SELECT 1;"
    with Sandbox(db) as sandbox:
        gold = "SELECT name FROM item WHERE id < 4"
        assert execution_match(sandbox, gold, "SELECT name FROM item WHERE id IN (3, 2, 1)")[0]
        assert not execution_match(sandbox, gold, "SELECT name FROM item WHERE id < 3")[0]
        assert not execution_match(sandbox, gold, "SELECT DISTINCT name FROM item WHERE id < 4 UNION ALL "
                                                  "SELECT name FROM item WHERE id = 1")[0]  # fmt: skip
        sorted_gold = "SELECT name FROM item WHERE id < 4 ORDER BY id DESC"
        assert not execution_match(sandbox, sorted_gold, "SELECT name FROM item WHERE id < 4 ORDER BY id")[0]
        assert execution_match(sandbox, "SELECT count(*) FROM item", "SELECT count(id) FROM item")[0]
        right, result = execution_match(sandbox, gold, "DROP TABLE item")
        assert not right and result.error_kind == "refused"


def test_memory_stays_bounded_under_hostile_allocations(db):
    """The process's peak memory grows by far less than the hostile statements ask for
    (about 4 GB), and the heap cap is given back after each query."""
    import resource

    statements = [sql for sql, kind in HOSTILE if kind == "too_large"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Sandbox(db, timeout_s=2.0, max_value_bytes=5 << 20, max_memory_bytes=64 << 20) as sandbox:
        for sql in statements:
            assert sandbox.run(sql).error_kind == "too_large", sql
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        assert grown < 400 << 20, f"peak memory grew by {grown >> 20} MB"
    with sqlite3.connect(":memory:") as other:  # other connections in the process are not capped
        assert other.execute("PRAGMA hard_heap_limit").fetchone() == (0,)
        assert other.execute("SELECT length(randomblob(50000000))").fetchone() == (50000000,)
