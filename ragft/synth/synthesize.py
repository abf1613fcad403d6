"""Training pairs made from a corpus's chunks, by rule or by the generator, filtered, with provenance.

    chunks ──candidates──> (sentence, picked answer) ──write or form──> question (and answer)
           ──checks: form, support, round trip──> journal ──near duplicates──> pairs

Generation runs in fixed blocks of candidates, batched by the generator; each finished
block is appended to a journal (keyed by everything the pairs depend on), so a killed
synthesis continues with the first unfinished block and writes the same pairs an
uninterrupted one would. With a checker (another model asking the round trip back, such as
a pipeline fine-tuned on an earlier round), every block is written first and the round
trips follow, in blocks journaled the same way, with the checker loaded once.

Pairs come out in the examples format ragft reads (id, question, answers, split `train`,
doc_id), each with its provenance: the chunk and sentence it was written from, the method,
the answer's kind, the support and round-trip scores.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import InputError
from ragft.io import (
    append_jsonl,
    read_json,
    read_jsonl,
    sha256_file,
    sha256_json,
    write_json_atomic,
    write_jsonl_atomic,
)
from ragft.progress import progress
from ragft.synth import filters, writing
from ragft.synth.spans import answer_spans
from ragft.types import Chunk, Document, Example

if TYPE_CHECKING:
    from ragft.config import SynthConfig
    from ragft.generation import Generator
    from ragft.retrieval import Embedder

RULES = 2
"""Version of the rules that pick answers (`spans`) and drop pairs (`filters`): part of every
synthesis key, so raise it when a change to either changes which pairs come out."""
BLOCK_BATCHES = 4
"""Generator batches per journaled block: what a killed synthesis can lose."""


class NoPairs(InputError):
    """No written pair survived the filters; `stats` holds the counts per filter."""

    def __init__(self, message: str, stats: dict[str, Any]):
        super().__init__(message)
        self.stats = stats


@dataclass(frozen=True)
class Candidate:
    """One pair to try: a sentence of a chunk and, answer-first, the answer picked from it."""

    id: str
    doc_id: str
    chunk_id: str
    passage: str
    sentence: str
    answer: str
    """The picked answer (answer-first); empty where the model writes it."""
    kind: str
    """The picked answer's kind (date, time, quantity, name, keyphrase), or `model`."""


@dataclass(frozen=True)
class Synthesis:
    """The pairs kept (as examples-file rows) and what making them took and dropped."""

    rows: list[dict[str, Any]]
    stats: dict[str, Any]

    def examples(self) -> list[Example]:
        return [Example(r["id"], r["question"], tuple(r["answers"]), "train", r["doc_id"]) for r in self.rows]


def held_out_documents(documents: Iterable[Document], test: Sequence[Example]) -> set[str]:
    """Documents that hold test questions: a test question's document, and every document of
    an article (a SQuAD title, a `group`) that test questions come from."""
    docs = {e.doc_id for e in test if e.doc_id}
    groups = {e.group for e in test if e.group}
    return {d.id for d in documents if d.id in docs or (groups and d.metadata.get("title") in groups)}


def chunks_identity(chunks: Sequence[Chunk]) -> str:
    """Content hash of the chunks pairs are written from, in their order (candidates, journal
    blocks and near-duplicate checks follow it)."""
    return sha256_json([(c.id, c.text) for c in chunks])


def candidates(chunks: Sequence[Chunk], settings: SynthConfig, seed: int = 0) -> list[Candidate]:
    """Up to `per_chunk` candidates a chunk (of a seeded sample of `max_chunks` chunks).

    Answer-first, a candidate is a sentence and one answer picked from it: every sentence's
    best answer comes before any sentence's second, and dates, numbers and names before key
    phrases. The passage method tries each sentence once (greedy decoding writes one pair)."""
    chosen = list(chunks)
    if settings.max_chunks and len(chosen) > settings.max_chunks:
        picked = set(random.Random(seed).sample(range(len(chosen)), settings.max_chunks))
        chosen = [c for i, c in enumerate(chosen) if i in picked]
    out = []
    for chunk in chosen:
        ranked = []
        for n, sentence in enumerate(writing.sentences(chunk.text)):
            spans = answer_spans(sentence)
            if settings.method == "passage":
                c = Candidate(f"{chunk.id}~{n}", chunk.doc_id, chunk.id, chunk.text, sentence, "", "model")
                ranked.append(((0 if spans else 1, 0, n), c))
                continue
            for j, span in enumerate(spans):
                rank = (int(span.kind == "keyphrase"), j, n)
                c = Candidate(f"{chunk.id}~{n}.{j}", chunk.doc_id, chunk.id, chunk.text, sentence, span.text, span.kind)
                ranked.append((rank, c))
        ranked.sort(key=lambda r: r[0])
        out += [c for _, c in sorted(ranked[: settings.per_chunk], key=lambda r: (r[0][2], r[0][1]))]
    return out


def pairs_from_chunks(
    chunks: Sequence[Chunk],
    generator: Generator | None,
    embedder: Embedder,
    settings: SynthConfig,
    *,
    seed: int = 0,
    journal: Path | None = None,
    key: str = "",
    test_questions: Sequence[str] = (),
    held_out: int = 0,
    block: int = 0,
    checker: Callable[[], AbstractContextManager[Generator]] | None = None,
    checker_name: str = "",
) -> Synthesis:
    """Write, check and deduplicate pairs from `chunks` (leave test documents out before:
    `held_out_documents`); `journal` keeps finished blocks of `block` candidates (default:
    `BLOCK_BATCHES` generator batches) under `key` for a resumed run. `checker` opens the
    model that asks the round trip back (`checker_name` names it in the record); without one,
    the writer asks. `generator` may be None only where no model runs (`settings.writer_runs`
    false: rule questions that no one, or only `settings.checker`, asks back).

    Raises NoPairs (an InputError) with the count per filter when no pair survives."""
    writes = settings.writer_runs
    if generator is None and writes:
        raise TypeError(f"synth.method = {settings.method!r} needs a generator to write or ask back its pairs")
    todo = candidates(chunks, settings, seed)
    rows = _journaled(journal, key)
    size = block or (generator.batch_size if generator is not None else 1) * BLOCK_BATCHES
    deferred = checker is not None and settings.asks_back
    bar = progress(total=len(todo), desc="synthesizing", unit="pair")
    for start in range(0, len(todo), size):
        part = todo[start : start + size]
        if not all(c.id in rows for c in part):
            fresh = _write_block(part, generator, settings, roundtrip=not deferred)
            _journal(journal, key, fresh)
            rows.update((r["id"], r) for r in fresh)
        bar.update(len(part))
    bar.close()
    if deferred:
        assert checker is not None
        _check_deferred(todo, rows, checker, settings, size, journal, key)
    done = [rows[c.id] for c in todo]
    passed = [r for r in done if not r["drop"]]
    if passed:
        questions = [r["question"] for r in passed]
        if settings.method == "rule":
            duplicates = filters.repeated(questions)
        else:
            duplicates = filters.near_duplicates(embedder.embed(questions), settings.dedupe_similarity)
        for r, dup in zip(passed, duplicates):
            if dup:
                r["drop"] = "duplicate"
    by_id = {c.id: c for c in todo}
    kept = [_example_row(by_id[r["id"]], r, settings) for r in done if not r["drop"]]
    writer = generator.name if writes and generator is not None else "-"  # "-": no model ran
    stats = {**_stats(todo, done, kept, settings, held_out, chunks), "generator": writer}
    if deferred:
        stats["checker"] = checker_name or "checker"
    if test_questions and kept:
        stats["test_overlap"] = filters.ngram_overlap([r["question"] for r in kept], test_questions)
    if not kept:
        counts = ", ".join(f"{reason} {n}" for reason, n in stats["dropped"].items() if n)
        other = "answer_first" if settings.method == "rule" else "rule"
        raise NoPairs(
            f"no training pair survived the filters ({len(todo)} tried: {counts or 'no candidates'}); try larger "
            f"chunks (chunking.chunk_size), the other method (synth.method = {other!r}), more pairs per chunk "
            "(synth.per_chunk) or a looser round trip (synth.roundtrip_f1, synth.roundtrip = false)",
            stats,
        )
    return Synthesis(kept, stats)


def write_pairs(
    out: Path,
    chunks: Sequence[Chunk],
    generator: Generator | None,
    embedder: Embedder,
    settings: SynthConfig,
    *,
    key: str,
    seed: int = 0,
    test_questions: Sequence[str] = (),
    held_out: int = 0,
    checker: Callable[[], AbstractContextManager[Generator]] | None = None,
    checker_name: str = "",
) -> Synthesis:
    """`pairs_from_chunks` into the examples file `out` and its record, journaling finished blocks
    under `key` in `<out>.journal` (a killed run continues from it; removed once `out` is written)."""
    journal = out.with_name(out.name + ".journal")
    out.parent.mkdir(parents=True, exist_ok=True)
    synthesis = pairs_from_chunks(
        chunks,
        generator,
        embedder,
        settings,
        seed=seed,
        journal=journal,
        key=key,
        test_questions=test_questions,
        held_out=held_out,
        checker=checker,
        checker_name=checker_name,
    )
    write_synthesis(out, synthesis)
    journal.unlink(missing_ok=True)
    return synthesis


def stats_path(examples: Path) -> Path:
    """Where a written examples file's synthesis record lives (`train.jsonl` -> `train.synth.json`)."""
    return examples.with_name(examples.name.removesuffix(".jsonl") + ".synth.json")


def write_synthesis(path: Path, synthesis: Synthesis) -> None:
    """The pairs as an examples JSONL file, and beside it what made them (`stats_path`), both atomically."""
    write_jsonl_atomic(path, synthesis.rows)
    write_json_atomic(stats_path(path), {"examples_sha256": sha256_file(path), **synthesis.stats})


def recorded_stats(path: Path) -> dict[str, Any] | None:
    """The synthesis record beside an examples file, when it describes this very file."""
    try:
        stats = read_json(stats_path(path))
    except (OSError, InputError):
        return None
    if not isinstance(stats, dict) or stats.pop("examples_sha256", None) != sha256_file(path):
        return None
    return stats


def _journaled(journal: Path | None, key: str) -> dict[str, dict[str, Any]]:
    if journal is None or not journal.is_file():
        return {}
    out = {}
    for _, row in read_jsonl(journal, torn_tail_ok=True):  # a kill mid-append tears the last line
        if row.pop("key", None) == key:
            out[row["id"]] = row
    return out


def _journal(journal: Path | None, key: str, rows: Sequence[dict[str, Any]]) -> None:
    """Append finished rows under `key` (a row journaled again replaces the earlier one)."""
    if journal is not None:
        append_jsonl(journal, [{"key": key, **r} for r in rows])


def _check_deferred(
    todo: Sequence[Candidate],
    rows: dict[str, dict[str, Any]],
    checker: Callable[[], AbstractContextManager[Generator]],
    settings: SynthConfig,
    size: int,
    journal: Path | None,
    key: str,
) -> None:
    """Ask the checker the round trips of the written rows that reach it, in fixed journaled
    blocks of `size`; a block not wholly checked (a kill tore its journal lines) is asked again
    whole, so its batches are an uninterrupted run's. The checker is opened only when a block waits."""
    reaching = [c for c in todo if rows[c.id]["drop"] in ("", "roundtrip")]
    blocks = [reaching[i : i + size] for i in range(0, len(reaching), size)]
    waiting = [b for b in blocks if not all("roundtrip_f1" in rows[c.id] for c in b)]
    if not waiting:
        return
    with checker() as reader:
        bar = progress(total=sum(map(len, waiting)), desc="round trips", unit="pair")
        for part in waiting:
            began = time.perf_counter()
            checked = [rows[c.id] for c in part]
            for r in checked:
                r["drop"] = ""  # asked again with its block
            _round_trip(part, checked, reader, settings)
            seconds = (time.perf_counter() - began) / len(part)
            for r in checked:
                r["roundtrip_seconds"] = seconds
            _journal(journal, key, checked)
            bar.update(len(part))
        bar.close()


def _write_block(
    block: Sequence[Candidate], generator: Generator | None, settings: SynthConfig, roundtrip: bool = True
) -> list[dict[str, Any]]:
    """Write and check one block of candidates: a row each, `drop` naming why it failed ('' kept);
    without `roundtrip`, the round trip is left for a checker."""
    start = time.perf_counter()
    if settings.method == "rule":
        rows = [_written_row(c, writing.rule_question(c.sentence, c.answer, c.kind)) for c in block]
    else:
        assert generator is not None  # `pairs_from_chunks` checked
        rows = _written(block, generator, settings)
    for c, row in zip(block, rows):
        if not row["drop"]:
            row["drop"] = filters.shape_problem(row["question"], row["answer"], c.passage, settings) or ""
        if not row["drop"]:
            row["support"] = filters.support(row["answer"], c.passage)
            if row["support"] < settings.support_f1:
                row["drop"] = "unsupported"
    if settings.asks_back and roundtrip:
        assert generator is not None
        _round_trip(block, rows, generator, settings)
    seconds = (time.perf_counter() - start) / max(1, len(block))
    for r in rows:
        r["seconds"] = seconds
    return rows


def _written(block: Sequence[Candidate], generator: Generator, settings: SynthConfig) -> list[dict[str, Any]]:
    """The generator's question (answer-first) or question and answer (passage) for each candidate."""
    starts = [""] * len(block)
    if settings.method == "answer_first":
        prompts = [writing.question_messages(c.sentence, c.answer) for c in block]
        if settings.question_word:
            starts = [writing.question_word(c.kind, c.answer) for c in block]
    else:
        prompts = [writing.pair_messages(c.sentence) for c in block]
    rows = []
    for c, g, start_with in zip(block, _generate(generator, prompts, settings.max_new_tokens, starts), starts):
        reply = f"{start_with} {g.text}".strip()
        row = _written_row(c, "", reply, g.prompt_tokens, g.completion_tokens)
        if settings.method == "answer_first":
            row["question"] = writing.read_question(reply)
        else:
            pair = writing.read_pair(reply)
            if pair is None:
                row["drop"] = "unparsed"
            else:
                row["question"], row["answer"] = pair
        rows.append(row)
    return rows


def _written_row(
    c: Candidate, question: str, reply: str = "", prompt_tokens: int = 0, completion_tokens: int = 0
) -> dict[str, Any]:
    """A candidate's row before the checks: its question (read from the reply later where a model writes)."""
    return {
        "id": c.id,
        "reply": reply,
        "question": question,
        "answer": c.answer,
        "drop": "",
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
    }


def _round_trip(
    block: Sequence[Candidate], rows: Sequence[dict[str, Any]], reader: Generator, settings: SynthConfig
) -> None:
    """Ask `reader` each question not yet dropped, with its chunk as the passage; a reply that
    does not agree with the answer drops the pair (`roundtrip`)."""
    asked = [(c, r) for c, r in zip(block, rows) if not r["drop"]]
    replies = _generate(reader, [writing.roundtrip_messages(r["question"], c.passage) for c, r in asked])
    for (_, r), g in zip(asked, replies):
        agrees, f1 = filters.agreement(g.text, r["answer"])
        r.update(roundtrip_answer=g.text, roundtrip_f1=f1)
        r.update(roundtrip_prompt_tokens=g.prompt_tokens, roundtrip_completion_tokens=g.completion_tokens)
        if not (agrees or f1 >= settings.roundtrip_f1):
            r["drop"] = "roundtrip"


def _generate(
    generator: Generator,
    messages: Sequence[list[dict[str, str]]],
    max_new_tokens: int | None = None,
    starts: Sequence[str] = (),
) -> list[Any]:
    """The generator's greedy replies to chat messages, in order (batched by length); a reply
    goes on from its `starts` text where one is given (the text itself is not returned)."""
    prompts = [generator.render(m) + (starts[i] if starts else "") for i, m in enumerate(messages)]
    out: dict[int, Any] = {}
    for batch in generator.plan(prompts):
        out.update(zip(batch, generator.generate_batch([prompts[i] for i in batch], max_new_tokens)))
    return [out[i] for i in range(len(prompts))]


def _example_row(c: Candidate, row: dict[str, Any], settings: SynthConfig) -> dict[str, Any]:
    provenance = {
        "method": settings.method,
        "chunk": c.chunk_id,
        "sentence": c.sentence,
        "answer_kind": c.kind,
        "support": row.get("support"),
        "roundtrip_answer": row.get("roundtrip_answer"),
        "roundtrip_f1": row.get("roundtrip_f1"),
    }
    return {
        "id": f"synth-{c.id}",
        "question": row["question"],
        "answers": [row["answer"]],
        "split": "train",
        "doc_id": c.doc_id,
        "provenance": provenance,
    }


def _stats(
    todo: Sequence[Candidate],
    done: Sequence[dict[str, Any]],
    kept: Sequence[dict[str, Any]],
    settings: SynthConfig,
    held_out: int,
    chunks: Sequence[Chunk],
) -> dict[str, Any]:
    dropped = Counter(r["drop"] for r in done if r["drop"])
    reaching, passing = len(done), {}
    for reason in filters.DROPS:
        if reason == "roundtrip" and not settings.asks_back:
            continue
        passing[reason] = 1 - dropped[reason] / reaching if reaching else 0.0
        reaching -= dropped[reason]
    seconds = sum(r["seconds"] + r.get("roundtrip_seconds", 0.0) for r in done)
    return {
        "method": settings.method,
        "documents": len({c.doc_id for c in chunks}),
        "held_out_documents": held_out,
        "chunks": len({c.chunk_id for c in todo}),
        "candidates": len(todo),
        "dropped": {reason: dropped[reason] for reason in filters.DROPS},
        "pass_rate": passing,
        "kept": len(kept),
        "answer_kinds": dict(Counter(r["provenance"]["answer_kind"] for r in kept)),
        "prompt_tokens": sum(r["prompt_tokens"] + r.get("roundtrip_prompt_tokens", 0) for r in done),
        "completion_tokens": sum(r["completion_tokens"] + r.get("roundtrip_completion_tokens", 0) for r in done),
        "seconds": seconds,
        "pairs_per_second": len(kept) / seconds if seconds else 0.0,
    }
