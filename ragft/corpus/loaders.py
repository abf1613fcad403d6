"""Document loaders. Every document gets a stable id; two sources with one id are an error naming both.

`load_corpus` picks the loader from the path: a BEIR folder (`corpus.jsonl[.gz]` inside),
a folder of .txt/.md/.html/.pdf files (ids are paths relative to it, without suffix), a
JSONL file (configurable id, text and title fields; ids are `path:line` when a row has
none), or a SQuAD JSON file (one document per paragraph, id `title/n`). LangChain
`Document` lists come in through `ragft.retrieval.langchain.from_langchain`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ragft.corpus.html import html_to_text
from ragft.errors import InputError
from ragft.io import read_json, read_jsonl, read_text
from ragft.types import Document

log = logging.getLogger(__name__)

FOLDER_SUFFIXES = (".txt", ".md", ".html", ".htm", ".pdf")


@dataclass(frozen=True)
class Corpus:
    """Loaded documents (iterate it like a list) and what was left out, by source."""

    documents: list[Document]
    empty: list[str] = field(default_factory=list)
    """Sources skipped because they hold no text."""
    skipped: list[str] = field(default_factory=list)
    """`source: reason` for each unreadable source skipped under `skip_bad`."""

    def __iter__(self) -> Iterator[Document]:
        return iter(self.documents)

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, i: int) -> Document:
        return self.documents[i]

    def summary(self) -> str:
        parts = [f"{len(self.documents)} documents"]
        if self.empty:
            parts.append(f"{len(self.empty)} empty skipped")
        if self.skipped:
            parts.append(f"{len(self.skipped)} unreadable skipped (first: {self.skipped[0]})")
        return ", ".join(parts)


class _Collector:
    """Gathers documents, refusing a second source for an id and counting what is left out."""

    def __init__(self, where: Path, skip_bad: bool):
        self.where, self.skip_bad = where, skip_bad
        self.docs: list[Document] = []
        self.sources: dict[str, str] = {}
        self.empty: list[str] = []
        self.skipped: list[str] = []

    def add(self, doc_id: str, text: str, source: str, metadata: dict | None = None) -> None:
        if not text.strip():
            self.empty.append(source)
            log.warning("%s: empty document skipped", source)
            return
        if doc_id in self.sources:
            raise InputError(f"document id {doc_id!r} is used by both {self.sources[doc_id]} and {source}")
        self.sources[doc_id] = source
        self.docs.append(Document(doc_id, text, source, metadata or {}))

    def bad(self, error: InputError) -> None:
        if not self.skip_bad:
            raise error
        self.skipped.append(str(error))
        log.warning("skipped: %s", error)

    def corpus(self) -> Corpus:
        if not self.docs:
            found = f"{len(self.empty)} empty, {len(self.skipped)} unreadable" if self.empty or self.skipped else "none"
            raise InputError(f"no documents found (sources: {found})", self.where)
        return Corpus(self.docs, self.empty, self.skipped)


@dataclass(frozen=True)
class JsonlFields:
    """Where JSONL rows keep a document's text, id and (optional) title."""

    text: str = "text"
    id: str = "id"
    title: str = "title"


JSONL = JsonlFields()
BEIR = JsonlFields(id="_id")


def load_corpus(path: str | Path, *, fields: JsonlFields = JSONL, skip_bad: bool = False) -> Corpus:
    """Load documents from a folder, a BEIR folder, a JSONL file or a SQuAD JSON file."""
    path = Path(path)
    if path.is_dir():
        if any((path / name).is_file() for name in ("corpus.jsonl", "corpus.jsonl.gz")):
            corpus = path / "corpus.jsonl" if (path / "corpus.jsonl").is_file() else path / "corpus.jsonl.gz"
            return load_jsonl(corpus, BEIR, skip_bad=skip_bad)
        return load_folder(path, skip_bad=skip_bad)
    if not path.is_file():
        raise InputError("corpus not found", path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return load_jsonl(path, fields, skip_bad=skip_bad)
    if path.name.endswith((".json", ".json.gz")):
        return load_squad(path)
    raise InputError("corpus must be a folder, a .jsonl file or a SQuAD .json file", path)


def load_folder(folder: str | Path, suffixes: tuple[str, ...] = FOLDER_SUFFIXES, skip_bad: bool = False) -> Corpus:
    """Every .txt/.md/.html/.pdf file below `folder`; ids are relative paths without suffix.

    Empty files are skipped with a warning and counted; an unreadable file (not UTF-8, a
    broken PDF) is an error naming it, or skipped and counted with `skip_bad`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("corpus folder not found (or not a folder)", folder)
    found = _Collector(folder, skip_bad)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    for path in files:
        try:
            text, metadata = _read_file(path)
        except InputError as e:
            found.bad(e)
            continue
        found.add(path.relative_to(folder).with_suffix("").as_posix(), text, str(path), metadata)
    if not files:
        raise InputError(f"no documents found (no {'/'.join(suffixes)} files)", folder)
    return found.corpus()


def _read_file(path: Path) -> tuple[str, dict]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return _read_pdf(path), {}
    text = read_text(path)
    if suffix in (".html", ".htm"):
        return html_to_text(text)
    return text, {}


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        raise InputError("reading PDF files needs the pdf extra: pip install 'ragft[pdf]'", path) from None
    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError) as e:
        raise InputError(f"unreadable PDF ({e})", path) from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def load_jsonl(path: str | Path, fields: JsonlFields = JSONL, *, skip_bad: bool = False) -> Corpus:
    """One document per JSONL row: `title text` when the title field is set; rows without an id get `path:line`."""
    path = Path(path)
    found = _Collector(path, skip_bad)
    for number, row in read_jsonl(path):
        source = f"{path}:{number}"
        text = row.get(fields.text)
        if not isinstance(text, str):
            found.bad(InputError(f"row has no string field {fields.text!r} (fields: {', '.join(row)})", path, number))
            continue
        title = row.get(fields.title) or ""
        doc_id = str(row[fields.id]) if row.get(fields.id) is not None else source
        found.add(doc_id, f"{title} {text}".strip() if title else text, source, {"title": title} if title else {})
    return found.corpus()


def load_squad(path: str | Path) -> Corpus:
    """SQuAD v1/v2 JSON: one document per paragraph, id `title/n`."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise InputError("not SQuAD JSON (expected {'data': [{'title', 'paragraphs'}]})", path)
    found = _Collector(path, skip_bad=False)
    for article in data["data"]:
        title = article.get("title", "")
        for n, paragraph in enumerate(article.get("paragraphs", [])):
            found.add(f"{title}/{n}", paragraph.get("context", ""), f"{path}#{title}/{n}", {"title": title})
    return found.corpus()
