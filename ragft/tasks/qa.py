"""Question answering over a corpus: examples JSONL, scored by exact match and token F1."""

from __future__ import annotations

from pathlib import Path

from ragft.errors import InputError
from ragft.io import read_jsonl
from ragft.metrics import exact_match, token_f1
from ragft.types import Example

SPLITS = ("train", "dev", "test")


def load_examples(path: str | Path) -> list[Example]:
    """Read examples: one JSON object a line with id, question, answers (list), split,
    and optionally doc_id (the document that holds the answer)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("examples file not found", path)
    examples, seen = [], {}
    for line, row in read_jsonl(path):
        for key in ("id", "question", "answers", "split"):
            if key not in row:
                raise InputError(f"missing key {key!r}", path, line)
        answers = row["answers"]
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise InputError("'answers' must be a non-empty list of strings", path, line)
        if row["split"] not in SPLITS:
            raise InputError(f"split must be one of {', '.join(SPLITS)}, got {row['split']!r}", path, line)
        ex_id = str(row["id"])
        if ex_id in seen:
            raise InputError(f"duplicate id {ex_id!r} (first on line {seen[ex_id]})", path, line)
        seen[ex_id] = line
        examples.append(Example(ex_id, str(row["question"]), tuple(answers), row["split"], row.get("doc_id")))
    if not examples:
        raise InputError("no examples in file", path)
    return examples


def score(prediction: str, answers: tuple[str, ...]) -> dict[str, float]:
    return {"em": exact_match(prediction, answers), "f1": token_f1(prediction, answers)}
