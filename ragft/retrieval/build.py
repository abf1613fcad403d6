"""Building indexes, and bringing saved ones up to date without re-embedding what they hold."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import ArtifactError
from ragft.retrieval.index import IndexSettings, VectorIndex, corpus_hash, text_key
from ragft.types import Chunk

if TYPE_CHECKING:
    from ragft.retrieval.embedder import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncStats:
    """What bringing an index up to date did."""

    added: int
    removed: int
    embedded: int
    """Texts sent to the embedder (the rest came from the cache of stored vectors)."""
    reused: int


def embed_checked(embedder: Embedder, texts: list[str]) -> Any:
    """Embed with a progress bar on long work, warning when texts pass the encoder's limit."""
    cut = embedder.count_truncated(texts)
    if cut:
        log.warning(
            "%d of %d texts are longer than %s's %d-token limit and are embedded truncated; "
            'chunk by tokens (chunking.unit = "tokens", or `ragft index --unit tokens`) to make them fit',
            cut,
            len(texts),
            embedder.name,
            embedder.max_tokens,
        )
    return embedder.embed(texts, progress=len(texts) > 256)


def build_index(
    chunks: Sequence[Chunk],
    embedder: Embedder,
    meta: dict[str, Any] | None = None,
    kind: str = "auto",
    settings: IndexSettings | None = None,
) -> VectorIndex:
    """Embed the chunks (with a progress bar on long work) and index them."""
    vectors = embed_checked(embedder, [c.text for c in chunks])
    return VectorIndex(chunks, vectors, embedder.name, meta, kind, settings)


def sync_index(
    folder: str | Path | None,
    chunks: Sequence[Chunk],
    embedder_id: str,
    embedder: Callable[[], Embedder],
    meta: dict[str, Any] | None = None,
    kind: str = "auto",
    settings: IndexSettings | None = None,
) -> tuple[VectorIndex, SyncStats]:
    """The index in `folder` brought to exactly these chunks, then saved there.

    Chunks whose text the saved index already holds reuse their stored vectors, so an
    unchanged corpus embeds nothing and loads no model (`embedder()` is called only when
    some text is new) and a changed file re-embeds only its own chunks.
    """
    import numpy as np

    old = None
    if folder is not None and Path(folder).exists():
        try:
            old = VectorIndex.load(folder, embedder_id)
        except ArtifactError as e:
            log.warning("%s; building a new index", e)
    settings = settings or IndexSettings()
    if old is not None and old.corpus_sha256 == corpus_hash(chunks):
        if (old.requested, old.settings) == (kind, settings) and (meta is None or old.meta == meta):
            return old, SyncStats(0, 0, 0, len(chunks))
    cache = old.cached_vectors() if old is not None else {}
    wanted = {c.id: c for c in chunks}
    if old is None:
        stale, new = [], list(chunks)
    else:
        held = {c.id: c for c in old.chunks}
        stale = [c.id for c in old.chunks if wanted.get(c.id) != c]
        new = [c for c in chunks if held.get(c.id) != c]
    missing = list(dict.fromkeys(text_key(c.text) for c in new if text_key(c.text) not in cache))
    embedded = set(missing)
    reused = len(chunks) - sum(text_key(c.text) in embedded for c in new)
    if missing:
        texts = {text_key(c.text): c.text for c in new}
        for key, vector in zip(missing, embed_checked(embedder(), [texts[k] for k in missing])):
            cache[key] = vector
    dim = old.dim if old is not None else (len(next(iter(cache.values()))) if cache else 0)
    vectors = np.stack([cache[text_key(c.text)] for c in new]) if new else np.zeros((0, dim), np.float32)
    if old is None:
        index = VectorIndex(new, vectors, embedder_id, meta, kind, settings)
    else:
        index = old
        index.delete(stale)
        index.add(new, vectors)
        if meta is not None:
            index.meta = dict(meta)
        if (index.requested, index.settings) != (kind, settings):
            index.rebuild(kind, settings)
    if folder is not None:
        index.save(folder)
    return index, SyncStats(len(new), len(stale), len(missing), reused)
