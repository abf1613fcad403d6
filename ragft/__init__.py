"""ragft: what prompting, retrieval and LoRA fine-tuning each buy on your task.

Build pipelines in Python and compare them on one task:

    import ragft

    docs = ragft.load_corpus("corpora/handbook/docs")
    task = ragft.QATask.from_jsonl("corpora/handbook/qa.jsonl", corpus=docs)
    index = ragft.Index.build(docs)
    gen = ragft.Generator.load("smollm2-135m-instruct")
    report = ragft.Experiment(task, [
        ragft.Pipeline("prompt", gen),
        ragft.Pipeline("rag", gen, template="qa-context", retriever=index.dense(k=3)),
    ], run_dir="runs/mine").run()
    print(report.table())
    ragft.write_html(report, "runs/mine/report.html")

or run a TOML experiment config: `ragft.compare(ragft.load_config("configs/handbook.toml"))`.
Importing ragft loads no heavy library; torch, transformers and faiss load where used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ragft.config import Config, load_config
from ragft.types import Chunk, Document, Example, Generation, Hit, Prediction

__version__ = "0.1.0"

_LAZY = {
    "compare": "ragft.experiment",
    "plan": "ragft.runner.run",
    "load_corpus": "ragft.corpus.loaders",
    "Corpus": "ragft.corpus.loaders",
    "QATask": "ragft.tasks.qa",
    "SQLTask": "ragft.tasks.sql",
    "SolvedExamples": "ragft.parts",
    "Index": "ragft.parts",
    "Retrieval": "ragft.parts",
    "FineTune": "ragft.parts",
    "DSPy": "ragft.parts",
    "Synth": "ragft.parts",
    "Prices": "ragft.parts",
    "synthesize": "ragft.runner.synthesis",
    "LoRA": "ragft.parts",
    "RAFT": "ragft.parts",
    "SFT": "ragft.parts",
    "Generator": "ragft.generation",
    "EndpointGenerator": "ragft.endpoint",
    "Embedder": "ragft.retrieval.embedder",
    "PromptTemplate": "ragft.prompts",
    "TEMPLATES": "ragft.prompts",
    "Pipeline": "ragft.pipeline",
    "Experiment": "ragft.experiment",
    "write_html": "ragft.experiment",
    "Report": "ragft.report.results",
}
"""Public names loaded on first use, so `import ragft` stays light."""

__all__ = [
    "RAFT",
    "SFT",
    "TEMPLATES",
    "Chunk",
    "Config",
    "Corpus",
    "DSPy",
    "Document",
    "Embedder",
    "EndpointGenerator",
    "Example",
    "Experiment",
    "FineTune",
    "Generation",
    "Generator",
    "Hit",
    "Index",
    "LoRA",
    "Pipeline",
    "Prediction",
    "Prices",
    "PromptTemplate",
    "QATask",
    "SQLTask",
    "Report",
    "Retrieval",
    "SolvedExamples",
    "Synth",
    "compare",
    "load_config",
    "load_corpus",
    "plan",
    "synthesize",
    "write_html",
]

if TYPE_CHECKING:
    from ragft.corpus.loaders import Corpus, load_corpus
    from ragft.endpoint import EndpointGenerator
    from ragft.experiment import Experiment, compare, write_html
    from ragft.generation import Generator
    from ragft.parts import RAFT, SFT, DSPy, FineTune, Index, LoRA, Prices, Retrieval, SolvedExamples, Synth
    from ragft.pipeline import Pipeline
    from ragft.prompts import TEMPLATES, PromptTemplate
    from ragft.report.results import Report
    from ragft.retrieval.embedder import Embedder
    from ragft.runner.run import plan
    from ragft.runner.synthesis import synthesize
    from ragft.tasks.qa import QATask
    from ragft.tasks.sql import SQLTask


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ragft' has no attribute {name!r}")
