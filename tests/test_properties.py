"""Generated hostile input: the only outcomes allowed are success or ragft's own clear error
(never a traceback from inside), and for the SQL sandbox an unchanged database file.

`make test` runs a few hundred cases per target (derandomized, so CI is repeatable);
`make test-all` sets RAGFT_HYPOTHESIS=thorough for 2,000 fresh random cases per target.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from helpers import HANDBOOK
from hypothesis import given
from hypothesis import strategies as st

from ragft.config import PIPELINE_SECTIONS, describe, load_config, pipeline_settings
from ragft.errors import RagftError
from ragft.io import read_jsonl, sha256_file


def _allowed(call):
    """Run `call`: success or a RagftError (with a message) pass; anything else fails the test."""
    try:
        return call()
    except RagftError as e:
        assert str(e).strip(), "an error without a message"
        return e


# --- corpus folders, JSONL files, examples files -----------------------------------------

TEXTS = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.text(alphabet="éàüß€", max_size=50).map(lambda t: t.encode("latin-1", errors="replace")),
    st.sampled_from([b"", b"\n\n", b"\xef\xbb\xbfbom text", b"%PDF-1.4 not really", b"<html><p>x</p>", b"\x00" * 64]),
    st.integers(1, 3).map(lambda n: b"word " * (40_000 * n)),  # large files
)
NAMES = st.tuples(
    st.text(alphabet="abc-_ .", min_size=1, max_size=8).filter(lambda n: n.strip(" .")),
    st.sampled_from([".txt", ".md", ".html", ".htm", ".pdf", ".jsonl", ".bin", ""]),
).map("".join)


@given(files=st.dictionaries(NAMES, TEXTS, max_size=6), skip_bad=st.booleans())
def test_corpus_folders_of_random_files_load_or_are_refused_by_name(files, skip_bad):
    from ragft.corpus.loaders import load_corpus

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        result = _allowed(lambda: load_corpus(tmp, skip_bad=skip_bad))
        if isinstance(result, RagftError):
            assert tmp in str(result)


ROWS = st.lists(
    st.dictionaries(
        st.sampled_from(["id", "text", "title", "question", "answers", "split", "doc_id", "x"]),
        st.one_of(
            st.text(max_size=20),
            st.integers(),
            st.none(),
            st.booleans(),
            st.lists(st.text(max_size=5), max_size=3),
            st.sampled_from(["train", "test", "dev"]),
        ),
    ),
    max_size=6,
)
DAMAGE = st.lists(
    st.tuples(
        st.sampled_from(["cut", "byte", "drop", "dup"]), st.integers(0, 10_000), st.binary(min_size=1, max_size=3)
    ),
    max_size=3,
)


def _damaged(rows, damage) -> bytes:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    for kind, at, blob in damage:
        at = at % (len(data) + 1)
        if kind == "cut":
            data = data[:at]
        elif kind == "byte":
            data = data[:at] + blob + data[at + 1 :]
        elif kind == "drop":
            data = data[:at] + data[at + len(blob) :]
        else:
            data = data[:at] + data[at:] * 2
    return data


@given(rows=ROWS, damage=DAMAGE, torn_ok=st.booleans())
def test_damaged_jsonl_reads_or_names_the_file_and_line(rows, damage, torn_ok):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_bytes(_damaged(rows, damage))
        result = _allowed(lambda: list(read_jsonl(path, torn_tail_ok=torn_ok)))
        if isinstance(result, RagftError):
            assert str(result).startswith(f"{path}:")


@given(rows=ROWS, damage=DAMAGE, suffix=st.sampled_from([".jsonl", ".json"]))
def test_examples_files_load_or_name_the_file_and_line(rows, damage, suffix):
    from ragft.corpus.loaders import load_corpus
    from ragft.tasks.qa import QATask

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"qa{suffix}"
        path.write_bytes(_damaged(rows, damage))
        corpus = _corpus()
        result = _allowed(lambda: QATask.from_jsonl(path, corpus))
        if isinstance(result, RagftError):
            assert str(path) in str(result)
        _allowed(lambda: load_corpus(path))  # the same file handed over as a corpus


_CORPUS = []


def _corpus():
    if not _CORPUS:
        from ragft.corpus.loaders import load_corpus

        _CORPUS.append(load_corpus(HANDBOOK / "docs"))
    return _CORPUS[0]


# --- TOML configs, [[pipelines]] tables and key=value overrides ----------------------------

KEYS = [key for key, _, _ in describe()]
PIPELINE_KEYS = [k for k in KEYS if k.split(".")[0] in PIPELINE_SECTIONS]
VALUES = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=6), st.floats(-2, 2)), max_size=3),
    st.sampled_from(["lora", "raft", "hnsw", "bfloat16", "cuda:1", "rag+ft", "tokens", "qa", "sql", "0", "-1"]),
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(value, "nan" if value != value else repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


@given(
    settings_=st.dictionaries(st.sampled_from(KEYS + ["retrieval.kk", "nosuch.key", "finetune"]), VALUES, max_size=6),
    pipelines=st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "", "rag"]),
            st.sampled_from(["rag", "ft", "rag+ft", "prompt", "ragg"]),
            st.dictionaries(
                st.sampled_from([k for k in KEYS if k.split(".")[0] in PIPELINE_SECTIONS]), VALUES, max_size=3
            ),
        ),
        max_size=2,
    ),
    garbage=st.sampled_from(["", "[[pipelines]]\n", "[retrieval\n", "x = = 1\n", "\x00", "[data]\ncorpus = 3\n"]),
)
def test_random_toml_configs_load_or_name_the_key(settings_, pipelines, garbage):
    sections: dict[str, list[str]] = {}
    for key, value in settings_.items():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(f"{name or section} = {_toml_value(value)}")
    text = "".join(
        f"[{s}]\n" + "\n".join(lines) + "\n\n" if s else "\n".join(lines) + "\n" for s, lines in sections.items()
    )
    for name, base, overrides in pipelines:
        text += f'[[pipelines]]\nname = "{name}"\nbase = "{base}"\n'
        text += "".join(f"{k} = {_toml_value(v)}\n" for k, v in overrides.items())
    text += garbage
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exp.toml"
        path.write_text(text, encoding="utf-8")
        config = _allowed(lambda: load_config(path))
        if isinstance(config, RagftError):
            assert str(path) in str(config)
            return
        from ragft.settings import resolve_pipelines

        _allowed(lambda: resolve_pipelines(config))
        for pipeline in config.pipelines:
            _allowed(lambda p=pipeline: pipeline_settings(config, p))


@given(
    overrides=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={_toml_value(kv[1])}"),
            st.text(max_size=30),
            st.tuples(st.sampled_from(KEYS), st.text(max_size=10)).map("=".join),
        ),
        max_size=4,
    )
)
def test_random_overrides_load_or_name_the_override(overrides):
    result = _allowed(lambda: load_config(None, overrides))
    if isinstance(result, RagftError):
        assert "override" in str(result) or "experiment.presets" in str(result)


# --- the SQL sandbox: statements from a grammar, and the hostile table ----------------------

COLUMNS = ["id", "name", "price", "nosuch", "*", "rowid"]
EXPRS = st.recursive(
    st.one_of(
        st.sampled_from(COLUMNS[:4] + ["1", "NULL", "'x'", "-1e308", "9223372036854775807", "x'00ff'"]),
        st.integers().map(str),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%", "||", "=", "<", "AND", "OR", "LIKE"]), inner).map(
            " ".join
        ),
        st.tuples(
            st.sampled_from(
                [
                    "abs",
                    "length",
                    "upper",
                    "hex",
                    "randomblob",
                    "zeroblob",
                    "typeof",
                    "count",
                    "max",
                    "sum",
                    "group_concat",
                ]
            ),
            inner,
        ).map(lambda f: f"{f[0]}({f[1]})"),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"(SELECT {e} FROM item)"),
    ),
    max_leaves=6,
)
STATEMENTS = st.one_of(
    st.builds(
        lambda e, t, w, tail: f"SELECT {e} FROM {t}{w}{tail}",
        st.lists(EXPRS, min_size=1, max_size=3).map(", ".join),
        st.sampled_from(["item", "item a, item b", "item a, item b, item c", "sqlite_master", "nosuch", "(SELECT 1)"]),
        st.one_of(st.just(""), EXPRS.map(lambda e: f" WHERE {e}")),
        st.sampled_from(["", " ORDER BY 1", " GROUP BY 1", " LIMIT 5", " LIMIT -1", "; DROP TABLE item", " --", "'"]),
    ),
    st.sampled_from(
        [
            "DROP TABLE item",
            "DELETE FROM item",
            "UPDATE item SET price = 0",
            "INSERT INTO item (name) VALUES ('x')",
            "ATTACH DATABASE 'other.db' AS other",
            "PRAGMA writable_schema=1",
            "VACUUM INTO 'copy.db'",
            "SELECT load_extension('/tmp/evil.so')",
            "WITH x AS (SELECT 1) DELETE FROM item",
            "SELECT length(randomblob(1000000000))",
            "CREATE TEMP TABLE t AS SELECT * FROM item",
            "REPLACE INTO item VALUES (1, 'x', 1)",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        ]
    ),
    st.text(max_size=60),
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    from helpers import shop_database

    return shop_database(tmp_path_factory.mktemp("sandbox") / "shop.sqlite", 50)


@given(sql=STATEMENTS)
def test_generated_statements_never_raise_and_never_change_the_database(shop, sql):
    from ragft.sql.sandbox import ERROR_KINDS, Sandbox

    before = sha256_file(shop)
    with Sandbox(shop, timeout_s=0.2, max_rows=1000, max_value_bytes=1 << 20, max_memory_bytes=32 << 20) as box:
        result = box.run(sql)
        assert result.ok or (result.error_kind in ERROR_KINDS and result.error), result
        assert box.run("SELECT count(*) FROM item").rows == [(50,)]
    assert sha256_file(shop) == before
    assert sorted(p.name for p in shop.parent.iterdir()) == ["shop.sqlite"]
