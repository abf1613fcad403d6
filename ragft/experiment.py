"""Runs the ladder's variants over one task as a controlled experiment.

Every variant sees the same test examples, base model, decoding and machine. Finished
predictions are appended to `predictions/<variant>.jsonl` batch by batch, and an
interrupted run picks up where it stopped; adapters and the index are reused when their
manifests match what this run would build.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from ragft.arms import ARMS, FEWSHOT, Arm, build_prompt
from ragft.config import Config
from ragft.corpus import Corpus, load_corpus
from ragft.corpus.chunking import chunk_for_embedder
from ragft.errors import ArtifactError, RagftError
from ragft.finetune.adapter import adapter_manifest, load_adapter, save_adapter
from ragft.finetune.data import gold_chunk, make_record, raft_passages
from ragft.generation import Generator
from ragft.io import (
    append_jsonl,
    read_json,
    read_jsonl,
    sha256_file,
    sha256_json,
    write_json_atomic,
    write_text_atomic,
)
from ragft.metrics import recall_at_k
from ragft.models import model_id
from ragft.monitor import PeakMemory
from ragft.progress import progress
from ragft.prompts import get_template
from ragft.report import build_report, environment, seed_spread, write_report
from ragft.retrieval import DenseRetriever, Embedder, Retriever, VectorIndex
from ragft.retrieval.build import sync_index
from ragft.retrieval.compose import QuerySide, make_retriever
from ragft.runs import prediction_from_row
from ragft.tasks.qa import load_examples, score
from ragft.types import Chunk, Example, Hit, Prediction


def run_dir_for(config: Config) -> Path:
    return (config.path(config.experiment.output_dir) / config.experiment.name).resolve()


class Resources:
    """The models a run shares, loaded on first use: a re-run with everything cached
    loads neither. Passing them in (tests, notebooks) skips loading altogether."""

    def __init__(self, config: Config, generator: Generator | None = None, embedder: Embedder | None = None):
        self.config = config
        if generator is not None:
            self.generator = generator
        if embedder is not None:
            self.embedder = embedder

    @cached_property
    def generator(self) -> Generator:
        c = self.config
        return Generator.load(
            c.models.generator,
            c.models.dtype,
            batch_size=c.generation.batch_size,
            max_new_tokens=c.generation.max_new_tokens,
            seed=c.experiment.seed,
        )

    @cached_property
    def embedder(self) -> Embedder:
        return Embedder(self.config.models.embedder, dtype=self.config.models.embedder_dtype)


@dataclass(frozen=True)
class Task:
    """The data every variant shares."""

    chunks: list[Chunk]
    index: VectorIndex
    retriever: Retriever
    train: list[Example]
    test: list[Example]
    test_hits: list[list[Hit]]
    corpus: Corpus
    examples_sha256: str


def compare(
    config: Config,
    run_dir: str | Path | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Run every configured variant and return the report (also written to the run folder).

    Whatever a previous run of the same settings finished (index, retrieval, adapters,
    predictions) is reused; an interrupted run continues where it stopped.
    """
    run = Path(run_dir) if run_dir is not None else run_dir_for(config)
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "config.json", config.to_dict())
    write_json_atomic(run / "environment.json", environment())
    resources = Resources(config, generator, embedder)
    task = _task(run, config, resources)

    costs: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[Prediction]] = {}
    spread: dict[str, dict[int, list[Prediction]]] = {}
    for variant in config.experiment.variants:
        predictions[variant], costs[variant] = _variant(run, variant, config, resources, task)
        extra = [s for s in dict.fromkeys(config.experiment.seeds) if s != config.experiment.seed]
        if ARMS[variant].trained and extra:
            spread[variant] = {config.experiment.seed: predictions[variant]}
            for seed in extra:
                seeded = replace(config, experiment=replace(config.experiment, seed=seed))
                spread[variant][seed], _ = _variant(
                    run, variant, seeded, resources, task, label=f"{variant}@seed{seed}"
                )

    k = config.retrieval.k
    scored = [(e, hits) for e, hits in zip(task.test, task.test_hits) if e.doc_id]
    retrieval = {
        f"recall@{k}": sum(recall_at_k([h.chunk.doc_id for h in hits], {e.doc_id}, k) for e, hits in scored)
        / max(1, len(scored)),
        "chunks": len(task.chunks),
        "documents": len(task.corpus),
        "empty_documents": len(task.corpus.empty),
        "unreadable_skipped": task.corpus.skipped,
        "index_bytes": sum(f.stat().st_size for f in (run / "index").iterdir()),
    }
    report = build_report(config, predictions, costs, retrieval)
    if spread:
        report["seed_spread"] = seed_spread(spread)
    write_report(run, report, predictions, {c.id: c.text for c in task.chunks})
    if config.tracking.mlflow_uri:
        from ragft.tracking import log_to_mlflow

        uri = config.tracking.mlflow_uri
        report["mlflow_run_id"] = log_to_mlflow(uri, config.tracking.mlflow_experiment, run, config, report)
        write_json_atomic(run / "report.json", report)
    return report


def _task(run: Path, config: Config, resources: Resources) -> Task:
    data = config.data
    docs = load_corpus(
        config.path(data.corpus), text_field=data.text_field, id_field=data.id_field, skip_bad=data.skip_bad
    )
    c = config.chunking
    chunks = chunk_for_embedder(docs, config.models.embedder, c.unit, c.chunk_size, c.chunk_overlap)
    index, _ = sync_index(
        run / "index",
        chunks,
        model_id(config.models.embedder),
        lambda: resources.embedder,
        {"chunking": asdict(config.chunking)},
        config.retrieval.index,
        config.retrieval.index_settings(),
    )
    examples_path = config.path(config.data.examples)
    examples = load_examples(examples_path)
    train = _limit([e for e in examples if e.split == "train"], config.data.train_limit)
    test = _limit([e for e in examples if e.split == "test"], config.data.test_limit)
    if not test:
        raise RagftError(f"{examples_path}: no test examples")
    retriever = _retriever(config, chunks, index, resources)
    key = sha256_json([index.embedder, index.corpus_sha256, _retrieval_key(config)])  # as _retrieval_identity
    hits = _test_hits(run / "retrieval" / "test_hits.jsonl", test, index, retriever, key, config.retrieval.k)
    return Task(chunks, index, retriever, train, test, hits, docs, sha256_file(examples_path))


class _Lazy:
    """A retriever built on first use, so a fully cached re-run loads no model."""

    def __init__(self, build: Callable[[], Retriever]):
        self.build = build

    @cached_property
    def inner(self) -> Retriever:
        return self.build()

    def retrieve(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        return self.inner.retrieve(queries, k)


def _retriever(config: Config, chunks: list[Chunk], index: VectorIndex, resources: Resources) -> Retriever:
    """The retriever `retrieval.*` describes, shared by test questions and RAFT training contexts."""
    r = config.retrieval
    query_side = QuerySide(r.hyde, r.multi_query, r.rerank, r.rerank_depth)
    needs_generator = r.hyde or r.multi_query or r.rerank == "generator"
    return _Lazy(
        lambda: make_retriever(
            r.method,
            chunks,
            DenseRetriever(resources.embedder, index) if r.method != "bm25" else None,
            resources.generator if needs_generator else None,
            query_side,
            (r.hybrid_weights[0], r.hybrid_weights[1]),
        )
    )


def _retrieval_key(config: Config) -> dict[str, Any]:
    """Retrieval settings that change which passages come back."""
    r = asdict(config.retrieval)
    for name in ("index", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
        r.pop(name)  # approximate-search settings: part of the index's own identity below
    if config.retrieval.hyde or config.retrieval.multi_query or config.retrieval.rerank == "generator":
        r["generator"] = model_id(config.models.generator)
    return r


def _limit(items: list[Example], n: int) -> list[Example]:
    return items[:n] if n > 0 else items


def _test_hits(
    path: Path, test: list[Example], index: VectorIndex, retriever: Retriever, key: str, k: int
) -> list[list[Hit]]:
    """Top-k passages for every test question, cached beside the run by what made them (`key`)."""
    by_id = {c.id: c for c in index.chunks}
    cached: dict[str, list[Hit]] = {}
    if path.is_file():
        for _, row in read_jsonl(path):
            if row["key"] == key and all(cid in by_id for cid in row["chunks"]):
                cached[row["question"]] = [
                    Hit(by_id[cid], score, rank) for rank, (cid, score) in enumerate(zip(row["chunks"], row["scores"]))
                ]
    missing = sorted({e.question for e in test} - cached.keys())
    if missing:
        fresh = dict(zip(missing, retriever.retrieve(missing, k)))
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"key": key, "question": q, "chunks": [h.chunk.id for h in hits], "scores": [h.score for h in hits]}
            for q, hits in fresh.items()
        ]
        append_jsonl(path, rows)
        cached.update(fresh)
    return [cached[e.question] for e in test]


def _fingerprint(variant: str, arm: Arm, config: Config, task: Task) -> str:
    """Everything a variant's predictions depend on; a change re-runs only that variant."""
    return sha256_json(
        {
            "variant": variant,
            "arm": asdict(arm),
            "template": asdict(get_template(arm.template)),
            "generator": model_id(config.models.generator),
            "dtype": config.models.dtype,
            "generation": asdict(config.generation),
            "examples": task.examples_sha256,
            "retrieval": _retrieval_identity(config, task) if arm.context else None,
            "finetune": _training_key(config, task) if arm.trained else None,
        }
    )


def _retrieval_identity(config: Config, task: Task) -> list[Any]:
    return [task.index.embedder, task.index.corpus_sha256, _retrieval_key(config)]


def _training_key(config: Config, task: Task) -> Any:
    ft = {k: v for k, v in asdict(config.finetune).items() if k != "checkpoint_every"}
    return [ft, config.data.train_limit, config.experiment.seed, task.index.corpus_sha256, _retrieval_key(config)]


def _variant(
    run: Path, variant: str, config: Config, resources: Resources, task: Task, label: str | None = None
) -> tuple[list[Prediction], dict[str, Any]]:
    """Predictions and costs of one variant: read back when finished, else made now.

    `label` names its files when one variant runs more than once (another training seed).
    """
    arm = ARMS[variant]
    label = label or variant
    fingerprint = _fingerprint(variant, arm, config, task)
    path = run / "predictions" / f"{label}.jsonl"
    costs_path = path.with_suffix(".costs.json")
    done = _load_predictions(path, fingerprint)
    if all(e.id in done for e in task.test) and costs_path.is_file():
        saved = read_json(costs_path)
        if saved.get("fingerprint") == fingerprint:
            return [done[e.id] for e in task.test], saved["costs"]

    costs: dict[str, Any] = {"resumed_predictions": len(done)} if done else {}
    generator = resources.generator
    with PeakMemory() as memory:
        if arm.trained:
            adapter_dir = run / "adapters" / label.replace("+", "_").replace("@", "_")
            generator.model, costs["training"] = _adapter(run, adapter_dir, arm, config, resources, task, fingerprint)
            costs["adapter_bytes"] = sum(f.stat().st_size for f in adapter_dir.iterdir())
        try:
            _predict(path, variant, arm, generator, task, done, fingerprint)
        finally:
            if arm.trained:
                generator.model = generator.model.unload()
                generator.model.eval()
    costs["peak_rss_bytes"] = memory.peak
    if memory.gpu_peak is not None:
        costs["peak_gpu_bytes"] = memory.gpu_peak
    costs["wall_seconds"] = memory.seconds
    write_json_atomic(costs_path, {"fingerprint": fingerprint, "costs": costs})
    return [done[e.id] for e in task.test], costs


def _predict(
    path: Path, variant: str, arm: Arm, generator: Generator, task: Task, done: dict[str, Prediction], fingerprint: str
) -> None:
    """Generate the batches not yet in `path`, appending each batch when it finishes.

    Batches are planned over the whole test set, so a resumed run regenerates exactly the
    batches an uninterrupted one would have; `done` is filled in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    test, shots = task.test, task.train[:FEWSHOT]
    prompts = [
        build_prompt(generator, arm, e, [h.chunk.text for h in hits], shots) for e, hits in zip(test, task.test_hits)
    ]
    plan = generator.plan(prompts)
    todo = [batch for batch in plan if not all(test[i].id in done for i in batch)]
    bar = progress(total=len(test), initial=len(test) - sum(map(len, todo)), desc=f"{variant}: answering", unit="q")
    for batch in todo:
        rows = []
        for i, g in zip(batch, generator.generate_batch([prompts[i] for i in batch])):
            e = test[i]
            retrieved = tuple(h.chunk.id for h in task.test_hits[i]) if arm.context else ()
            p = Prediction(
                e.id,
                variant,
                prompts[i],
                g.text,
                e.answers,
                retrieved,
                score(g.text, e.answers),
                g.prompt_tokens,
                g.completion_tokens,
                g.seconds,
            )
            done[e.id] = p
            rows.append({"fingerprint": fingerprint, **asdict(p)})
        append_jsonl(path, rows)
        bar.update(len(batch))
    bar.close()


def _load_predictions(path: Path, fingerprint: str) -> dict[str, Prediction]:
    """Predictions already made with the same fingerprint; stale files are set aside.

    A line cut short by a kill mid-write is dropped (its batch is generated again).
    """
    if not path.exists():
        return {}
    rows = [row for _, row in read_jsonl(path, torn_tail_ok=True)]
    if any(row.get("fingerprint") != fingerprint for row in rows):
        path.replace(path.with_suffix(".stale.jsonl"))
        return {}
    if not path.read_bytes().endswith(b"\n"):  # drop the torn line before appending again
        write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return {row["example_id"]: prediction_from_row(row) for row in rows}


def _adapter(
    run: Path, folder: Path, arm: Arm, config: Config, resources: Resources, task: Task, fingerprint: str
) -> tuple[Any, dict[str, Any]]:
    """Load the variant's adapter if one was trained with this fingerprint, else train it
    (resuming from its checkpoint after an interruption)."""
    generator = resources.generator
    base_id = model_id(config.models.generator)
    try:
        manifest = adapter_manifest(folder)
        if manifest.get("fingerprint") == fingerprint:
            return load_adapter(generator.model, folder, base_id), manifest["training"]
    except ArtifactError:
        pass
    from ragft.finetune.lora import train_lora

    records = _train_records(arm, config, resources, task)
    checkpoint = folder.with_name(folder.name + ".checkpoint")
    peft_model, result = train_lora(
        generator.model,
        records,
        config.finetune,
        generator.tokenizer.pad_token_id,
        config.experiment.seed,
        checkpoint=checkpoint,
        fingerprint=fingerprint,
    )
    training = {
        "records": len(records),
        "steps": result.steps,
        "seconds": result.seconds,
        "tokens": result.tokens,
        "padding_fraction": 1 - result.tokens / max(1, result.padded_tokens),
        "first_loss": result.losses[0],
        "last_loss": sum(result.losses[-5:]) / len(result.losses[-5:]),
        "truncated_records": result.truncated,
    }
    save_adapter(
        peft_model, folder, base_id, {"fingerprint": fingerprint, "training": training, "losses": result.losses}
    )
    shutil.rmtree(checkpoint, ignore_errors=True)
    return peft_model, training


def _train_records(arm: Arm, config: Config, resources: Resources, task: Task) -> list[Any]:
    """SFT records; `rag+ft` prompts carry RAFT context from the same retriever.

    Passages from the test examples' documents are kept out of training prompts.
    """
    generator, ft = resources.generator, config.finetune
    rng = random.Random(config.experiment.seed)
    by_doc: dict[str, list[Chunk]] = {}
    for c in task.chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    held_out = {e.doc_id for e in task.test if e.doc_id}
    n_passages = ft.distractors + 1
    hits: list[list[Hit]] = [[] for _ in task.train]
    if arm.context:
        raw = task.retriever.retrieve([e.question for e in task.train], n_passages + 8)
        hits = [[h for h in row if h.chunk.doc_id not in held_out] for row in raw]
    records = []
    eos = generator.tokenizer.eos_token_id
    for e, row in zip(task.train, hits):
        passages = []
        if arm.context:
            passages = [c.text for c in raft_passages(e, row, gold_chunk(e, by_doc), n_passages, ft.p_no_gold, rng)]
        prompt = build_prompt(generator, arm, e, passages, [])
        records.append(make_record(e.id, generator.encode(prompt), generator.encode(e.answers[0]), eos, ft.max_length))
    return records
