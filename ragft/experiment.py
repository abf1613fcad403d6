"""Runs the ladder's variants over one task as a controlled experiment.

Every variant sees the same test examples, base model, decoding and machine. Finished
predictions are appended to `predictions/<variant>.jsonl` batch by batch, and an
interrupted run picks up where it stopped; adapters and the index are reused when their
manifests match what this run would build.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragft.config import Config
from ragft.corpus import chunk_documents, load_folder
from ragft.errors import ArtifactError, RagftError
from ragft.finetune.adapter import adapter_manifest, load_adapter, save_adapter
from ragft.finetune.data import gold_chunk, make_record, raft_passages
from ragft.generation import Generator
from ragft.io import append_jsonl, read_jsonl, sha256_file, sha256_json, write_json_atomic
from ragft.metrics import recall_at_k
from ragft.models import model_id
from ragft.monitor import PeakMemory
from ragft.prompts import get_template
from ragft.report import build_report, environment, write_report
from ragft.retrieval import DenseRetriever, Embedder, VectorIndex, build_index
from ragft.retrieval.index import corpus_hash
from ragft.tasks.qa import load_examples, score
from ragft.types import Chunk, Example, Hit, Prediction

FEWSHOT = 3
"""Solved training examples shown by the `fewshot` variant."""


@dataclass
class Arm:
    """How one variant builds prompts and whether it trains an adapter."""

    template: str
    context: bool
    shots: bool
    trained: bool


ARMS = {
    "prompt": Arm("qa", context=False, shots=False, trained=False),
    "fewshot": Arm("qa", context=False, shots=True, trained=False),
    "rag": Arm("qa-context", context=True, shots=False, trained=False),
    "ft": Arm("qa", context=False, shots=False, trained=True),
    "rag+ft": Arm("qa-context", context=True, shots=False, trained=True),
}


def run_dir_for(config: Config) -> Path:
    return (config.path(config.experiment.output_dir) / config.experiment.name).resolve()


def compare(
    config: Config,
    run_dir: str | Path | None = None,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Run every configured variant and return the report (also written to the run folder)."""
    run = Path(run_dir) if run_dir is not None else run_dir_for(config)
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "config.json", config.to_dict())
    write_json_atomic(run / "environment.json", environment())

    # Data: corpus, chunks, index, examples.
    docs = load_folder(config.path(config.data.corpus))
    chunks = chunk_documents(docs, config.chunking.chunk_size, config.chunking.chunk_overlap)
    embedder = embedder or Embedder(config.models.embedder)
    index = _index(run / "index", chunks, embedder, config)
    retriever = DenseRetriever(embedder, index)
    examples_path = config.path(config.data.examples)
    examples = load_examples(examples_path)
    train = _limit([e for e in examples if e.split == "train"], config.data.train_limit)
    test = _limit([e for e in examples if e.split == "test"], config.data.test_limit)
    if not test:
        raise RagftError(f"{examples_path}: no test examples")
    k = config.retrieval.k
    test_hits = retriever.retrieve([e.question for e in test], k)

    generator = generator or Generator.load(
        config.models.generator,
        config.models.dtype,
        batch_size=config.generation.batch_size,
        max_new_tokens=config.generation.max_new_tokens,
        seed=config.experiment.seed,
    )
    base_id = model_id(config.models.generator)
    setup = TrainingSetup(config, generator, retriever, chunks, train, test, base_id)
    data_hash = sha256_file(examples_path)
    costs: dict[str, dict[str, Any]] = {}
    predictions: dict[str, list[Prediction]] = {}
    for variant in config.experiment.variants:
        arm = ARMS[variant]
        fingerprint = sha256_json(
            {
                "variant": variant,
                "arm": asdict(arm),
                "template": asdict(get_template(arm.template)),
                "generator": base_id,
                "dtype": config.models.dtype,
                "generation": asdict(config.generation),
                "examples": data_hash,
                "retrieval": [index.embedder, corpus_hash(chunks), k] if arm.context else None,
                "finetune": [asdict(config.finetune), config.data.train_limit, config.experiment.seed]
                if arm.trained
                else None,
            }
        )
        variant_costs: dict[str, Any] = {}
        with PeakMemory() as memory:
            if arm.trained:
                adapter_dir = run / "adapters" / variant.replace("+", "_")
                peft_model, variant_costs["training"] = _adapter(setup, arm, adapter_dir, fingerprint)
                generator.model = peft_model
                variant_costs["adapter_bytes"] = sum(f.stat().st_size for f in adapter_dir.iterdir())
            try:
                predictions[variant] = _predict(
                    run / "predictions" / f"{variant}.jsonl",
                    variant,
                    arm,
                    generator,
                    test,
                    test_hits,
                    train[:FEWSHOT],
                    fingerprint,
                )
            finally:
                if arm.trained:
                    generator.model = peft_model.unload()
                    generator.model.eval()
        variant_costs["peak_rss_bytes"] = memory.peak
        variant_costs["wall_seconds"] = memory.seconds
        costs[variant] = variant_costs

    retrieval = {
        f"recall@{k}": sum(recall_at_k([h.chunk.doc_id for h in hits], {e.doc_id}, k) for e, hits in zip(test, test_hits) if e.doc_id)
        / max(1, sum(1 for e in test if e.doc_id)),
        "chunks": len(chunks),
        "documents": len(docs),
    }
    report = build_report(config, predictions, costs, retrieval)
    write_report(run, report)
    return report


def _limit(items: list[Example], n: int) -> list[Example]:
    return items[:n] if n > 0 else items


def _index(folder: Path, chunks: list[Chunk], embedder: Embedder, config: Config) -> VectorIndex:
    """Reuse the run's index when it holds exactly these chunks from this embedder."""
    try:
        index = VectorIndex.load(folder, embedder.name)
        if index.meta.get("corpus_sha256") == corpus_hash(chunks):
            return index
    except ArtifactError:
        pass
    index = build_index(chunks, embedder, {"chunking": asdict(config.chunking)})
    index.save(folder)
    return index


def _prompt(generator: Generator, arm: Arm, example: Example, passages: Sequence[str], shots: Sequence[Example]) -> str:
    template = get_template(arm.template)
    pairs = [(s.question, s.answers[0]) for s in shots] if arm.shots else []
    return generator.render(template.messages(example.question, passages if arm.context else (), pairs))


def _predict(
    path: Path,
    variant: str,
    arm: Arm,
    generator: Generator,
    test: list[Example],
    hits: list[list[Hit]],
    shots: list[Example],
    fingerprint: str,
) -> list[Prediction]:
    """Generate for test examples not yet in `path`, appending each batch as it finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _load_predictions(path, fingerprint)
    todo = [i for i, e in enumerate(test) if e.id not in done]
    prompts = [_prompt(generator, arm, test[i], [h.chunk.text for h in hits[i]], shots) for i in todo]

    def save(batch: list[int], generations: list[Any]) -> None:
        rows = []
        for j, g in zip(batch, generations):
            e = test[todo[j]]
            retrieved = tuple(h.chunk.id for h in hits[todo[j]]) if arm.context else ()
            p = Prediction(e.id, variant, prompts[j], g.text, e.answers, retrieved, score(g.text, e.answers),
                           g.prompt_tokens, g.completion_tokens, g.seconds)
            done[e.id] = p
            rows.append({"fingerprint": fingerprint, **asdict(p)})
        append_jsonl(path, rows)

    if todo:
        generator.generate(prompts, desc=f"{variant}: answering", on_batch=save)
    return [done[e.id] for e in test]


def _load_predictions(path: Path, fingerprint: str) -> dict[str, Prediction]:
    """Predictions already made with the same fingerprint; stale files are set aside."""
    if not path.exists():
        return {}
    rows = [row for _, row in read_jsonl(path)]
    if any(row.get("fingerprint") != fingerprint for row in rows):
        path.replace(path.with_suffix(".stale.jsonl"))
        return {}
    out = {}
    for row in rows:
        row.pop("fingerprint")
        row["answers"], row["retrieved"] = tuple(row["answers"]), tuple(row["retrieved"])
        out[row["example_id"]] = Prediction(**row)
    return out


@dataclass(frozen=True)
class TrainingSetup:
    """What a trained arm needs beyond its own settings."""

    config: Config
    generator: Generator
    retriever: DenseRetriever
    chunks: list[Chunk]
    train: list[Example]
    test: list[Example]
    base_id: str


def _adapter(setup: TrainingSetup, arm: Arm, folder: Path, fingerprint: str) -> tuple[Any, dict[str, Any]]:
    """Load the variant's adapter if one was trained with this fingerprint, else train it."""
    generator, config = setup.generator, setup.config
    try:
        manifest = adapter_manifest(folder)
        if manifest.get("fingerprint") == fingerprint:
            return load_adapter(generator.model, folder, setup.base_id), manifest["training"]
    except ArtifactError:
        pass
    from ragft.finetune.lora import train_lora

    records = _train_records(setup, arm)
    peft_model, result = train_lora(
        generator.model, records, config.finetune, generator.tokenizer.pad_token_id, config.experiment.seed
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
    save_adapter(peft_model, folder, setup.base_id, {"fingerprint": fingerprint, "training": training, "losses": result.losses})
    return peft_model, training


def _train_records(setup: TrainingSetup, arm: Arm) -> list[Any]:
    """SFT records; `rag+ft` prompts carry RAFT context from the same retriever.

    Passages from the test examples' documents are kept out of training prompts.
    """
    generator, config, train = setup.generator, setup.config, setup.train
    ft = config.finetune
    rng = random.Random(config.experiment.seed)
    by_doc: dict[str, list[Chunk]] = {}
    for c in setup.chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    held_out = {e.doc_id for e in setup.test if e.doc_id}
    n_passages = ft.distractors + 1
    hits: list[list[Hit]] = [[] for _ in train]
    if arm.context:
        raw = setup.retriever.retrieve([e.question for e in train], n_passages + 8)
        hits = [[h for h in row if h.chunk.doc_id not in held_out] for row in raw]
    records = []
    eos = generator.tokenizer.eos_token_id
    for e, row in zip(train, hits):
        passages = []
        if arm.context:
            passages = [c.text for c in raft_passages(e, row, gold_chunk(e, by_doc), n_passages, ft.p_no_gold, rng)]
        prompt = _prompt(generator, arm, e, passages, [])
        records.append(make_record(e.id, generator.encode(prompt), generator.encode(e.answers[0]), eos, ft.max_length))
    return records
