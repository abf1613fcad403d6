"""Document loaders. Each returns Documents with stable ids (the path inside the corpus)."""

from __future__ import annotations

import logging
from pathlib import Path

from ragft.errors import InputError
from ragft.io import read_text
from ragft.types import Document

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")


def load_folder(folder: str | Path, suffixes: tuple[str, ...] = TEXT_SUFFIXES) -> list[Document]:
    """Load every text file below `folder`; ids are paths relative to it, without suffix.

    Empty files are skipped with a warning; a folder with no usable file is an error.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("corpus folder not found (or not a folder)", folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    docs, empty = [], 0
    for path in files:
        text = read_text(path)
        if not text.strip():
            empty += 1
            log.warning("%s: empty file skipped", path)
            continue
        doc_id = path.relative_to(folder).with_suffix("").as_posix()
        docs.append(Document(id=doc_id, text=text, source=str(path)))
    if not docs:
        found = f"{len(files)} empty file(s)" if files else f"no {'/'.join(suffixes)} files"
        raise InputError(f"corpus folder has no documents ({found})", folder)
    return docs
