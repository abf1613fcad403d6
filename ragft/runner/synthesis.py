"""`ragft synth` and `ragft.synthesize`: a corpus in, a training examples file out.

The corpus is chunked as a pipeline chunks it (`chunking.*`), documents that hold test
questions are left out (given the task's examples), and the pairs are written with the
`[synth]` settings and the `models`/`generation` generator. A killed synthesis keeps its
finished blocks in `<out>.journal` and the same command continues from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ragft.config import Config, SynthConfig
from ragft.corpus.chunking import chunk_for_embedder
from ragft.corpus.loaders import Corpus, JsonlFields, load_corpus
from ragft.errors import ConfigError, InputError
from ragft.keys import synthesis_key
from ragft.synth.synthesize import Synthesis, chunks_identity, held_out_documents, write_pairs
from ragft.types import Document, Example

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.retrieval import Embedder


def synthesize(
    corpus: Corpus | Sequence[Document] | str | Path,
    out: str | Path,
    *,
    test: Sequence[Example] = (),
    config: Config | None = None,
    settings: SynthConfig | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
) -> Synthesis:
    """Write training pairs from `corpus` into the examples file `out` (and its record,
    `train.synth.json` beside `train.jsonl`), leaving out the documents of the `test`
    examples and measuring how close the pairs come to them. Settings are `config`'s
    (`synth`, `chunking`, `models`, `generation`, `experiment.seed`), `settings`
    (`ragft.Synth(...)`) in place of its `synth`; a generator or embedder passed in is used
    instead of loading the one `synth.generator` (else `models`) names."""
    from ragft.generation import Generator
    from ragft.retrieval import Embedder

    c = config or Config()
    if settings is not None:
        c = dataclasses.replace(c, synth=settings)
    if c.synth.checker:
        raise ConfigError(
            f"synth.checker = {c.synth.checker!r} names a pipeline of an experiment, whose adapter checks the "
            "pairs; a synthesis on its own has none (run the pipeline with finetune.train_data = 'synth')",
            c.source or None,
        )
    out = Path(out)
    if isinstance(corpus, (str, Path)):
        corpus = load_corpus(corpus, fields=JsonlFields(c.data.text_field, c.data.id_field), skip_bad=c.data.skip_bad)
    docs = list(corpus)
    held_out = held_out_documents(docs, test)
    sources = [d for d in docs if d.id not in held_out]
    if not sources:
        raise InputError(f"every document holds test questions ({len(held_out)}); none is left to write pairs from")
    ch = c.chunking
    chunks = chunk_for_embedder(sources, c.models.embedder, ch.unit, ch.chunk_size, ch.chunk_overlap)
    if generator is None and c.synth.writer_runs:  # else no model runs: none loads
        generator = Generator.load(c.synth.generator or c.models.generator, c.models.dtype, c.models.device)
    if generator is not None:
        generator = generator.with_decoding(c.generation.batch_size, c.generation.max_new_tokens, c.experiment.seed)
    if embedder is None:
        embedder = Embedder(c.models.embedder, dtype=c.models.embedder_dtype, device=c.models.device)
    decoding = [c.generation.batch_size, c.generation.max_new_tokens]
    embedding = [embedder.name, embedder.dtype]
    writer = generator.identity() if generator is not None else {}
    key = synthesis_key(chunks_identity(chunks), writer, decoding, embedding, c.synth, c.experiment.seed)
    test_questions = [e.question for e in test]
    return write_pairs(
        out,
        chunks,
        generator,
        embedder,
        c.synth,
        key=key,
        seed=c.experiment.seed,
        test_questions=test_questions,
        held_out=len(held_out),
    )
