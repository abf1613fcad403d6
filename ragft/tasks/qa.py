"""Question answering over a corpus: examples JSONL, scored by exact match and token F1."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.corpus.loaders import Corpus, load_corpus
from ragft.errors import InputError
from ragft.io import read_json, read_jsonl
from ragft.types import Document, Example

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.settings import PipelineSettings

SPLITS = ("train", "dev", "test")


def load_examples(path: str | Path) -> list[Example]:
    """Read examples: one JSON object a line with id, question, answers (list), split,
    and optionally doc_id (the document that holds the answer) and group (the cluster it was
    sampled in, when not its document); or a SQuAD JSON file (grouped by article)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("examples file not found", path)
    if path.name.endswith((".json", ".json.gz")):
        return load_squad_examples(path)
    examples, seen = [], {}
    for line, row in read_jsonl(path):
        examples.append(example_from_row(row, seen, path, line))
    if not examples:
        raise InputError("no examples in file", path)
    return examples


def example_from_row(row: dict[str, Any], seen: dict[str, Any], source: str | Path, where: Any) -> Example:
    """One example from a row of id, question, answers (a list of strings, a string, or
    SQuAD's {"text": [...]}), split, and optionally doc_id and group; `seen` holds the ids
    read so far (with where they were), `source` and `where` name the file and line (or the
    dataset and row) in errors."""
    for key in ("id", "question", "answers", "split"):
        if key not in row:
            raise InputError(f"missing key {key!r}", source, where)
    answers = row["answers"]
    if isinstance(answers, str):
        answers = [answers]
    elif isinstance(answers, dict) and "text" in answers:  # SQuAD's layout on the Hugging Face hub
        answers = list(answers["text"])
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise InputError("'answers' must be a non-empty list of strings", source, where)
    if row["split"] not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {row['split']!r}", source, where)
    ex_id = str(row["id"])
    if ex_id in seen:
        first = seen[ex_id]
        at = f"on line {first}" if isinstance(first, int) else f"at {first}"
        raise InputError(f"duplicate id {ex_id!r} (first {at})", source, where)
    seen[ex_id] = where
    group = row.get("group")
    group = None if group is None else str(group)
    return Example(ex_id, str(row["question"]), tuple(answers), row["split"], row.get("doc_id"), group)


@dataclass(frozen=True)
class QATask:
    """Question answering over a corpus: its documents and its train and test examples,
    scored by SQuAD exact match and token F1."""

    corpus: Corpus
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    source: str = ""
    """Where the examples came from, for errors and the report."""

    @classmethod
    def from_jsonl(
        cls,
        examples: str | Path,
        corpus: Corpus | Sequence[Document] | str | Path,
        test_limit: int = 0,
        train_limit: int = 0,
    ) -> QATask:
        """Examples from a JSONL (or SQuAD JSON) file over a corpus (loaded, or a path to load);
        keep the first `test_limit` test and `train_limit` train examples (0: all)."""
        return cls._of(corpus, load_examples(examples), test_limit, train_limit, str(examples))

    @classmethod
    def from_dataset(
        cls,
        data: Any,
        corpus: Corpus | Sequence[Document] | str | Path | None = None,
        *,
        question: str = "question",
        answers: str = "answers",
        id: str | None = "id",  # noqa: A002 (the column's name)
        doc_id: str | None = "doc_id",
        group: str | None = "group",
        context: str | None = None,
        split: str | None = "split",
        splits: dict[str, str] | None = None,
        test_limit: int = 0,
        train_limit: int = 0,
    ) -> QATask:
        """Examples from a Hugging Face `datasets.Dataset` (its split in the column `split`
        names) or `DatasetDict` (train, test, and validation as dev; `splits` renames others,
        e.g. {"validation": "test"}), each field read from the column named for it. The
        documents are `corpus`, or, with `context`, built from that column (one document per
        distinct text, SQuAD's layout); `group` names each example's cluster for the bootstrap
        where it is not its document. Without an id column, ids are `<split>-<row>`."""
        from ragft.tasks.dataset_rows import dataset_rows

        if (corpus is None) == (context is None):
            raise InputError(
                "QATask.from_dataset takes its documents from a corpus or from a context column: "
                f"give one of them ({'both were' if corpus is not None else 'neither was'} given)"
            )
        columns = {"question": question, "answers": answers, "id": id, "doc_id": doc_id, "group": group}
        columns["context"] = context
        rows = dataset_rows(data, columns, ("question", "answers", "context"), split, splits)
        documents: dict[str, Document] = {}
        if context is not None:
            for row in rows:
                text = str(row.pop("context"))
                row["doc_id"] = "context-" + hashlib.sha256(text.encode()).hexdigest()[:12]
                documents.setdefault(row["doc_id"], Document(row["doc_id"], text, "dataset"))
            corpus = Corpus(list(documents.values()))
        seen: dict[str, Any] = {}
        examples = []
        for row in rows:
            row.setdefault("id", f"{row['split']}-{row['row']}")
            if row.get("doc_id") is not None:
                row["doc_id"] = str(row["doc_id"])
            examples.append(example_from_row(row, seen, "dataset", f"row {row['row']} ({row['split']})"))
        assert corpus is not None
        return cls._of(corpus, examples, test_limit, train_limit, "dataset")

    @classmethod
    def _of(
        cls,
        corpus: Corpus | Sequence[Document] | str | Path,
        examples: list[Example],
        test_limit: int,
        train_limit: int,
        source: str,
    ) -> QATask:
        """The task of these examples over a corpus (loaded, or a path to load), keeping the
        first `test_limit` test and `train_limit` train examples (0: all)."""
        if isinstance(corpus, (str, Path)):
            corpus = load_corpus(corpus)
        elif not isinstance(corpus, Corpus):
            corpus = Corpus(list(corpus))
        train = [e for e in examples if e.split == "train"]
        test = [e for e in examples if e.split == "test"]
        train, test = train[:train_limit] if train_limit > 0 else train, test[:test_limit] if test_limit > 0 else test
        if not test:
            raise InputError("no test examples", source)
        return cls(corpus, tuple(train), tuple(test), source)


def squad_split(title: str) -> str:
    """An article's split: a quarter of the articles (by a hash of the title) are test."""
    return "test" if hashlib.sha256(title.encode()).digest()[0] % 4 == 0 else "train"


def load_squad_examples(path: str | Path) -> list[Example]:
    """SQuAD JSON questions, split by article (`squad_split`), doc_id `title/n` as in the
    SQuAD corpus loader. Examples come round-robin over articles, so a `data.test_limit`
    slice spreads over every test article."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError("not SQuAD JSON (expected {'data': [{'title', 'paragraphs'}]})", path)
    by_article: list[list[Example]] = []
    for article in data["data"]:
        title = article.get("title", "")
        rows = []
        for n, paragraph in enumerate(article.get("paragraphs", [])):
            for qa in paragraph.get("qas", []):
                answers = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a.get("text")))
                if answers:  # SQuAD 2.0's unanswerable questions have none
                    split, doc = squad_split(title), f"{title}/{n}"
                    rows.append(Example(str(qa["id"]), qa["question"], answers, split, doc, title))
        by_article.append(rows)
    examples = [row[i] for i in range(max(map(len, by_article), default=0)) for row in by_article if i < len(row)]
    if not examples:
        raise InputError("no answerable questions in SQuAD file", path)
    return examples


def build_prompt(
    generator: Generator,
    pipeline: PipelineSettings,
    example: Example,
    passages: Sequence[str],
    shots: Sequence[Example],
) -> str:
    """The prompt text a pipeline shows the model for one example: its fixed solved examples,
    or an optimized pipeline's demonstrations (each with its own passages)."""
    pairs: list[tuple[str, str] | tuple[str, str, Sequence[str]]] = [(s.question, s.answers[0]) for s in shots]
    pairs += [(d.question, d.answer, d.passages) for d in pipeline.demos]
    shown = passages if pipeline.context else ()
    return generator.render(pipeline.template.messages(example.question, shown, pairs))
