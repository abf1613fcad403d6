"""Execution accuracy: a prediction is right when its result equals the gold query's.

Results are compared as multisets of rows, in order only when the gold query sorts
(a top-level ORDER BY). Floats are compared to 6 decimals.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ragft.sql.sandbox import Sandbox, SqlResult


def _blank_strings(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", sql)


def ordered(sql: str) -> bool:
    """Whether the statement's outermost query has an ORDER BY."""
    depth, text = 0, _blank_strings(sql).lower()
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and text.startswith("order", i) and re.match(r"order\s+by\b", text[i:]):
            if i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"):
                return True
    return False


def _normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(round(v, 6) if isinstance(v, float) else v for v in row)


def same_result(gold: SqlResult, predicted: SqlResult, in_order: bool) -> bool:
    if not gold.ok or not predicted.ok:
        return False
    a, b = [_normal(r) for r in gold.rows or []], [_normal(r) for r in predicted.rows or []]
    return a == b if in_order else Counter(a) == Counter(b)


def extract_sql(text: str) -> str:
    """The SQL in a model's answer: inside a ```sql fence if there is one, else the text."""
    fence = re.search(r"```(?:sql|sqlite)?\s*(.*?)(?:```|$)", text, flags=re.S | re.I)
    sql = fence.group(1) if fence else text
    return sql.strip()


def execution_match(sandbox: Sandbox, gold_sql: str, predicted_sql: str) -> tuple[bool, SqlResult]:
    """(right?, the prediction's result with its error kind when it failed)."""
    gold = sandbox.run(gold_sql)
    if not gold.ok:
        raise ValueError(f"gold query fails ({gold.error_kind}: {gold.error}): {gold_sql}")
    predicted = sandbox.run(predicted_sql)
    return same_result(gold, predicted, ordered(gold_sql)), predicted
