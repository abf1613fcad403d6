"""Rows of a Hugging Face `datasets.Dataset` or `DatasetDict` as a task reads them: each
column the task reads found under the name the user gives it (a missing one is named beside
the columns the dataset has), and each row's split taken from a split column or from the
`DatasetDict`'s keys."""

from __future__ import annotations

import difflib
from typing import Any

from ragft.errors import InputError

SPLIT_NAMES = {"train": "train", "test": "test", "dev": "dev", "validation": "dev"}
"""A `DatasetDict`'s split names as ragft's splits (override with `splits=`)."""


def dataset_rows(
    data: Any,
    columns: dict[str, str | None],
    required: tuple[str, ...],
    split: str | None = "split",
    splits: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every row of `data` as {field: value, "split": ..., "row": n}, reading each field
    from the column `columns[field]` names (None: not read). Fields in `required` must have
    their column; the split comes from the column `split` names (a `Dataset`) or from the
    `DatasetDict`'s keys, renamed by `splits` (default `SPLIT_NAMES`)."""
    parts = _splits(data, splits)
    out = []
    for split_name, part in parts:
        names = list(part.column_names)
        wanted = {field: column for field, column in columns.items() if column is not None}
        if split_name is None:
            if split is None:
                raise InputError("a Dataset without splits needs its split column named (split='...')", "dataset")
            wanted["split"] = split
        for field, column in wanted.items():
            if column not in names and (field in required or field == "split" or columns.get(field) != field):
                raise InputError(_missing(column, field, names), "dataset")
        read = {field: column for field, column in wanted.items() if column in names}
        for n, row in enumerate(part):
            values = {field: row[column] for field, column in read.items()}
            if split_name is not None:
                values["split"] = split_name
            values["row"] = n
            out.append(values)
    return out


def _splits(data: Any, splits: dict[str, str] | None) -> list[tuple[str | None, Any]]:
    """(ragft split name, rows) for a DatasetDict; (None, the rows) for a Dataset."""
    if hasattr(data, "column_names") and not isinstance(data.column_names, dict):  # a Dataset
        return [(None, data)]
    if not hasattr(data, "items"):
        raise InputError(f"expected a datasets.Dataset or DatasetDict, got {type(data).__name__}", "dataset")
    names = {**SPLIT_NAMES, **(splits or {})}
    unknown = [k for k in data if k not in names]
    if unknown:
        known = ", ".join(f"{k} -> {v}" for k, v in names.items())
        raise InputError(
            f"split {unknown[0]!r} of the DatasetDict is not one ragft knows ({known}); "
            f"name it with splits={{{unknown[0]!r}: 'train' or 'test'}}",
            "dataset",
        )
    return [(names[k], part) for k, part in data.items()]


def _missing(column: str, field: str, names: list[str]) -> str:
    close = difflib.get_close_matches(column, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no column {column!r} (the {field}){hint}; the dataset's columns: {', '.join(names)}"
