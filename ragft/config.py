"""Experiment configuration: nested dataclasses, TOML files and `key.sub=value` overrides.

Precedence is defaults < file < command line. An unknown key fails with the closest valid
name. Each field's docstring is its help text (`ragft compare --help-config`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
import tomllib
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from ragft.errors import ConfigError, RenamedWarning

PRESETS = ("prompt", "fewshot", "rag", "dspy", "rag+dspy", "ft", "rag+ft")
"""The ladder presets: pipelines of fixed shape (`experiment.presets`, the base of a `[[pipelines]]` table)."""
RENAMED = {"experiment.variants": "experiment.presets"}
"""Keys an earlier release spelled otherwise: still read in this release, with a warning naming the new key."""
METHODS = ("lora", "ia3", "prompt_tuning", "full")
"""What `finetune.method` chooses from: peft's LoRA, IA3 and prompt tuning, or every weight."""
RECORDS = ("auto", "sft", "raft")
"""What `finetune.records` chooses from."""
OBJECTIVES = ("sft", "dpo", "kto")
"""What `finetune.objective` chooses from: supervised answers, or preferences from feedback."""
SYNTH_METHODS = ("answer_first", "passage", "rule")
"""How `ragft synth` makes pairs: an answer picked from the passage first, then the model
writes its question; the model writes both; or the question is formed from the sentence by rule."""


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting (each item of a list setting), declared on its field."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """The low end itself is not allowed."""
    high_open: bool = False

    def allows(self, value: float) -> bool:
        if value != value:  # NaN
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def __str__(self) -> str:
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {low}"
        if self.low is None:
            return f"{'below' if self.high_open else 'at most'} {high}"
        return f"within {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class OneOf:
    """The values a choice setting allows (each item of a list setting), declared on its field."""

    options: tuple[str, ...]

    def allows(self, value: str) -> bool:
        return value in self.options

    def __str__(self) -> str:
        return f"one of {', '.join(self.options)}"


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    """Name of the run; the run folder is `output_dir/name`."""
    presets: Annotated[list[str], OneOf(PRESETS)] = field(default_factory=lambda: ["prompt", "rag", "rag+ft"])
    """Ladder presets to run, before the `[[pipelines]]` tables, in ladder order: prompt, fewshot, rag, dspy,
    rag+dspy (few-shot prompts optimized with DSPy on the train split), ft, rag+ft. Formerly
    `experiment.variants`."""
    output_dir: str = "runs"
    """Folder that holds run folders (relative to the config file)."""
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    """Seed for training, sampling of distractors and the bootstrap."""
    seeds: Annotated[list[int], Range(0, 2**32 - 1)] = field(default_factory=list)
    """More training seeds: fine-tuned pipelines are also trained once per seed and the spread is reported."""
    bootstrap_samples: Annotated[int, Range(100)] = 2000
    """Resamples for the bootstrap confidence intervals."""
    general_examples: str = ""
    """QA JSONL of general questions outside the task (forgetting check): the base model and every
    fine-tuned pipeline answer them without context and the report shows the change; empty: off."""
    context_views: bool = True
    """Also score the base model and every fine-tuned pipeline with no context, oracle context and retrieved context."""
    pairs: list[str] = field(default_factory=list)
    """Pipelines to test against each other, as "from:to" (e.g. "rag:rag-hybrid"); empty: every pair."""


@dataclass
class ModelsConfig:
    generator: str = "smollm2-135m-instruct"
    """Generator: an offline alias (`ragft models`), a local folder, or a hub id."""
    embedder: str = "all-minilm-l6-v2"
    """Embedder for retrieval: an offline alias, a local folder, or a hub id."""
    dtype: Annotated[str, OneOf(("auto", "bfloat16", "float32"))] = "auto"
    """Generator weights: auto (bf16 where the CPU or GPU supports it), bfloat16 or float32."""
    embedder_dtype: Annotated[str, OneOf(("float32", "bfloat16"))] = "float32"
    """Embedder: float32, or bfloat16 autocast (2.2x faster on this CPU, cosine 0.99997 to fp32)."""
    device: str = "auto"
    """Where the generator, the embedder and a cross-encoder run: auto (CUDA when present, else CPU),
    cpu, cuda or cuda:N."""
    endpoint: str = ""
    """Base URL of an OpenAI-compatible chat completions API (e.g. http://127.0.0.1:8000/v1) whose
    model `generator` names the generator answers with; empty: the generator runs here. Untrained
    pipelines only (the endpoint owns its weights); `generation.batch_size` requests at a time."""
    endpoint_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (unset: no key is sent)."""
    endpoint_timeout_s: Annotated[float, Range(0.1)] = 60.0
    """Seconds a request to the endpoint may take before it is tried again."""
    endpoint_retries: Annotated[int, Range(0)] = 3
    """Tries again after a connection error, 408, 409, 429 or 5xx answer, with exponential backoff."""


@dataclass
class DataConfig:
    kind: Annotated[str, OneOf(("qa", "sql"))] = "qa"
    """Task kind: qa (questions over a corpus, scored by EM/F1) or sql (text-to-SQL, execution accuracy)."""
    corpus: str = ""
    """Documents to retrieve from (relative to the config file): a folder of .txt/.md/.html/.pdf files,
    a BEIR folder, a JSONL file or a SQuAD JSON file."""
    text_field: str = "text"
    """JSONL corpora: the field holding a document's text."""
    id_field: str = "id"
    """JSONL corpora: the field holding a document's id (rows without one get `file:line`)."""
    skip_bad: bool = False
    """Skip unreadable files (not UTF-8, broken PDF) with a warning instead of stopping."""
    examples: str = ""
    """qa: JSONL of id, question, answers, split (train/test), doc_id. sql: JSONL of question, query, split
    (with sql.database), or a Spider folder (train.json for training, dev.json for test)."""
    test_limit: Annotated[int, Range(0)] = 0
    """Score only the first N test examples (0 = all)."""
    train_limit: Annotated[int, Range(0)] = 0
    """Train on only the first N train examples (0 = all)."""


@dataclass
class ChunkingConfig:
    unit: Annotated[str, OneOf(("characters", "tokens"))] = "characters"
    """What chunk sizes count: characters, or tokens of the embedder's own tokenizer (no chunk gets truncated)."""
    chunk_size: Annotated[int, Range(1)] = 500
    """Largest chunk, in `unit`s (at most the embedder's limit, 254 for MiniLM, when counting tokens)."""
    chunk_overlap: Annotated[int, Range(0)] = 50
    """Characters (or tokens) shared by neighbouring chunks."""


@dataclass
class RetrievalConfig:
    k: Annotated[int, Range(1)] = 3
    """Passages put into the prompt of `rag` pipelines."""
    method: Annotated[str, OneOf(("dense", "bm25", "hybrid"))] = "dense"
    """First stage: dense (embeddings), bm25 (lexical) or hybrid (both, fused by reciprocal rank fusion)."""
    hybrid_weights: Annotated[list[float], Range(0.0)] = field(default_factory=lambda: [1.0, 1.0])
    """Hybrid only: RRF weights of the dense and the BM25 ranking."""
    hyde: bool = False
    """HyDE: the dense search uses the question plus a passage the generator drafts (costs a generation)."""
    multi_query: Annotated[int, Range(0)] = 0
    """Fuse the rankings of this many generated rewrites of each question (0 = off)."""
    rerank: str = ""
    """Rerank the first stage with 'generator' (pointwise yes/no judge) or a cross-encoder name or folder."""
    rerank_depth: Annotated[int, Range(1)] = 20
    """First-stage hits the reranker rescores."""
    index: Annotated[str, OneOf(("auto", "flat", "hnsw", "ivf", "ivfpq"))] = "auto"
    """FAISS index: flat (exact), hnsw, ivf, ivfpq, or auto (exact below 100k chunks, then HNSW, IVF-PQ from 5M)."""
    hnsw_m: Annotated[int, Range(2)] = 32
    """HNSW graph neighbours per node."""
    ef_construction: Annotated[int, Range(1)] = 200
    """HNSW candidate list while building: higher builds slower and searches closer to exact."""
    ef_search: Annotated[int, Range(1)] = 1024
    """HNSW candidate list per query: higher is slower and closer to exact."""
    nprobe: Annotated[int, Range(1)] = 32
    """Inverted lists an IVF index scans per query: higher is slower and closer to exact."""


@dataclass
class GenerationConfig:
    max_new_tokens: Annotated[int, Range(1)] = 32
    """Most tokens generated per answer (greedy decoding)."""
    batch_size: Annotated[int, Range(1)] = 8
    """Prompts generated together (left-padded)."""


@dataclass
class FinetuneConfig:
    method: Annotated[str, OneOf(METHODS)] = "lora"
    """lora, ia3 or prompt_tuning (through peft), or full: every weight trains (small models; fp32 memory)."""
    rank: Annotated[int, Range(1)] = 16
    """LoRA rank."""
    alpha: Annotated[int, Range(1)] = 32
    """LoRA scaling numerator (scale = alpha / rank)."""
    dropout: Annotated[float, Range(0.0, 1.0, high_open=True)] = 0.0
    """Dropout on the LoRA input (on CPUs its random masks cost about a fifth of a step)."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Linear layers that get adapters."""
    learning_rate: Annotated[float, Range(0.0, low_open=True)] = 1e-3
    """Peak AdamW learning rate (linear warm-up, then linear decay)."""
    epochs: Annotated[int, Range(1)] = 2
    """Passes over the training records."""
    max_steps: Annotated[int, Range(0)] = 0
    """Stop after this many optimiser steps (0 = run all epochs)."""
    batch_size: Annotated[int, Range(1)] = 8
    """Records per optimiser step."""
    checkpoint_every: Annotated[int, Range(1)] = 10
    """Save a resumable checkpoint every N steps (an interrupted run resumes from it)."""
    validation_fraction: Annotated[float, Range(0.0, 1.0, high_open=True)] = 0.0
    """Share of the training records held out for validation loss; the best check's adapter is kept (0 = none)."""
    eval_every: Annotated[int, Range(0)] = 0
    """Measure validation loss every N steps (0 = once an epoch)."""
    patience: Annotated[int, Range(0)] = 0
    """Stop after this many validation checks without a new best (0 = train to the end)."""
    max_length: Annotated[int, Range(16)] = 768
    """Longest training record in tokens; longer contexts are cut, answers never."""
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: much less
    memory for long records for one extra forward pass a step; the trained weights are the same."""
    virtual_tokens: Annotated[int, Range(1)] = 20
    """Prompt tuning: trained input embeddings put before every prompt."""
    quote: bool = False
    """rag+ft targets quote the gold passage's sentence that holds the answer before giving it
    (`Quote: "..."` then `Answer: ...`); raise generation.max_new_tokens to leave room for the quote."""
    distractors: Annotated[int, Range(0)] = 2
    """Retrieved non-gold passages put beside the gold one in `rag+ft` training prompts."""
    p_no_gold: Annotated[float, Range(0.0, 1.0)] = 0.2
    """Fraction of `rag+ft` training prompts whose gold passage is left out (RAFT)."""
    records: Annotated[str, OneOf(RECORDS)] = "auto"
    """Where training records come from: sft (the train split, prompts as at test time: retrieved
    top-k context where the pipeline retrieves), raft (the gold passage among distractors from the
    pipeline's own retriever; needs a retriever), or auto (raft where the pipeline retrieves, else sft)."""
    train_data: str = ""
    """What the pipeline fine-tunes on: empty for the task's train split; `synth` for question-answer
    pairs made from the training documents during the run (by rule or by the generator: the
    `[synth]` settings);
    `feedback` for the ratings and corrections `ragft serve` collected in this run folder (or a
    feedback.sqlite file elsewhere); or a QA JSONL file of training pairs (its `train` rows, e.g.
    written by `ragft synth`)."""
    init_from: str = ""
    """Another pipeline of the experiment whose trained adapter this one starts from and goes on
    training (same method and adapter settings); empty: a fresh adapter."""
    objective: Annotated[str, OneOf(OBJECTIVES)] = "sft"
    """sft: next-token loss on the target answers; dpo: prefer each corrected answer over the
    model's own (TRL's DPOTrainer); kto: thumbs up / down as desirable / undesirable answers
    (TRL's KTOTrainer). dpo and kto train on `train_data = "feedback"`, against the starting model."""
    beta: Annotated[float, Range(0.0, low_open=True)] = 0.1
    """dpo / kto: how far the trained model may move from the starting one (TRL's beta)."""


@dataclass
class OptimizeConfig:
    demos: Annotated[int, Range(1)] = 3
    """Most solved examples the optimized prompt shows: bootstrapped (the model's own right answers)
    or taken from the labels (DSPy's BootstrapFewShotWithRandomSearch)."""
    candidates: Annotated[int, Range(0)] = 4
    """Random demonstration sets tried beside zero-shot, labels only and plain bootstrapping."""
    train_questions: Annotated[int, Range(1)] = 60
    """Training questions demonstrations are bootstrapped from."""
    validation_questions: Annotated[int, Range(1)] = 40
    """Other training questions every candidate prompt is scored on; the best one is kept."""
    threshold: Annotated[float, Range(0.0, 1.0)] = 0.5
    """Primary-metric score (F1) a bootstrapped answer needs to become a demonstration."""


@dataclass
class SynthConfig:
    method: Annotated[str, OneOf(SYNTH_METHODS)] = "rule"
    """rule (an answer is picked from a sentence, a date, number, name or key phrase, and no model
    writes: the question is the sentence with the answer replaced by a question phrase, "The gauge
    cost how many crowns?"; measured best on the handbook and SQuAD), answer_first (the answer is
    picked the same way and the model writes its question) or passage (the model writes the
    question and its answer)."""
    per_chunk: Annotated[int, Range(1)] = 8
    """Pairs tried per chunk: answer-first, each sentence's best answer (dates, numbers, names before
    key phrases) before any sentence's second; the passage method, one a sentence."""
    max_chunks: Annotated[int, Range(0)] = 0
    """Chunks to write from: a seeded sample of the training documents' chunks (0: every chunk)."""
    max_question_words: Annotated[int, Range(1)] = 40
    """Longer questions are dropped."""
    max_answer_words: Annotated[int, Range(1)] = 10
    """Longer answers are dropped."""
    support_f1: Annotated[float, Range(0.0, 1.0)] = 0.8
    """An answer not found word for word in its passage is kept only if some stretch of the
    passage reaches this token F1 with it."""
    roundtrip: bool | None = None
    """Ask each question back (the chunk as its one passage, as `rag` asks) and keep the pair only
    if the reply agrees with the answer. Unset: on where the model writes the questions
    (answer_first, passage), off for rule, whose questions are sound by construction and which the
    round trip cost F1 on the handbook (it drops good questions a weak model cannot answer)."""
    roundtrip_f1: Annotated[float, Range(0.0, 1.0)] = 0.5
    """The reply agrees when the answer appears in it as whole words, or its token F1 reaches this."""
    dedupe_similarity: Annotated[float, Range(0.0, 1.0)] = 0.9
    """A question whose embedding's cosine with a question kept before reaches this is dropped (the
    rule method's questions about one sentence are alike by design: only word-for-word repeats go)."""
    max_new_tokens: Annotated[int, Range(1)] = 48
    """Most tokens the model writes for a question (and its answer)."""
    question_word: bool = True
    """Answer-first: the model's question starts with a question word that fits the answer (When for
    a date or time, How for a number, Who for a person's name, What otherwise), written before it
    goes on (measured better on the handbook and SQuAD than a question the model begins itself)."""
    generator: str = ""
    """The model that writes and checks the pairs (an alias, local path or hub id, loaded with
    models.dtype and models.device): a larger writer for a small pipeline. Empty: the pipeline's
    own generator."""
    checker: str = ""
    """A trained pipeline of the same experiment and base model whose fine-tuned model asks the round
    trip back in place of the writer (its adapter is trained first): a pipeline trained on a first
    round of synthetic pairs checks the next round, keeping good questions a weak base model
    cannot answer. Empty: the writer checks its own pairs."""

    @property
    def asks_back(self) -> bool:
        """Whether the round trip runs: `roundtrip` where it is set, else on unless the method is rule."""
        return self.method != "rule" if self.roundtrip is None else self.roundtrip

    @property
    def writer_runs(self) -> bool:
        """Whether the writing model runs: it writes the questions, or asks them back where no
        checker does (else none need be loaded)."""
        return self.method != "rule" or (self.asks_back and not self.checker)


FINETUNE_METHOD_KEYS = {
    "lora": ("rank", "alpha", "dropout", "target_modules"),
    "ia3": (),
    "prompt_tuning": ("virtual_tokens",),
    "full": (),
}
"""finetune keys each method reads (another method's are not part of its adapter's key, and a
pipeline goes on training another's adapter only where these agree)."""


def reads_feedback(train_data: str) -> bool:
    """`finetune.train_data` names feedback: this run's store, or a feedback.sqlite file."""
    return train_data == "feedback" or train_data.endswith(".sqlite")


@dataclass
class SqlConfig:
    database: str = ""
    """SQLite file the JSONL examples ask about (not needed for a Spider folder)."""
    sample_rows: Annotated[int, Range(0)] = 0
    """Rows of each table shown under the schema in prompts (0 = schema only)."""
    timeout_s: Annotated[float, Range(0.0, low_open=True)] = 5.0
    """Longest a generated query may run before it is stopped and scored as a timeout."""
    max_rows: Annotated[int, Range(1)] = 100_000
    """Most rows fetched from a generated query; more is scored as a failure."""


@dataclass
class TrackingConfig:
    mlflow_uri: str = ""
    """MLflow tracking URI to log finished runs to (e.g. sqlite:///mlruns/mlflow.db); empty: off."""
    mlflow_experiment: str = "ragft"
    """MLflow experiment name the runs are logged under."""


@dataclass
class PricesConfig:
    cpu_hour: Annotated[float, Range(0.0)] = 0.0
    """Dollars per hour of the machine a pipeline runs on when it runs on the CPU (0: not priced;
    the report then counts machine seconds)."""
    gpu_hour: Annotated[float, Range(0.0)] = 0.0
    """Dollars per hour of the machine when a pipeline runs on a GPU (0: not priced)."""
    million_input_tokens: Annotated[float, Range(0.0)] = 0.0
    """Dollars per million prompt tokens a generator behind `models.endpoint` is sent (what the
    endpoint bills; with the output price it prices an endpoint pipeline, 0 for both: not priced)."""
    million_output_tokens: Annotated[float, Range(0.0)] = 0.0
    """Dollars per million tokens a generator behind `models.endpoint` writes."""


PIPELINE_SECTIONS = (
    "models",
    "chunking",
    "retrieval",
    "generation",
    "finetune",
    "optimize",
    "synth",
    "sql",
    "prices",
)
"""Sections a `[[pipelines]]` table may override; data and experiment settings are the
experiment's own, so every pipeline answers the same test examples."""


@dataclass
class PipelineConfig:
    """One `[[pipelines]]` table: a named pipeline built from a ladder preset with its own settings."""

    name: str
    base: str
    """The ladder preset it starts from: prompt, fewshot, rag, ft or rag+ft."""
    template: str | dict[str, str] = ""
    """A named prompt template, or a table with system and user (user holds {question}, and {context}
    where passages are shown); empty: the preset's."""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per section, the settings that differ from the experiment's."""
    line: int | None = None
    """Line of its `[[pipelines]]` header in the config file, for errors."""


@dataclass
class Config:
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    sql: SqlConfig = field(default_factory=SqlConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    prices: PricesConfig = field(default_factory=PricesConfig)
    pipelines: list[PipelineConfig] = field(default_factory=list, metadata={"internal": True})
    """`[[pipelines]]` tables: pipelines beyond the ladder presets named in experiment.presets."""
    source: str = field(default="", metadata={"internal": True})
    """The config file, for errors."""
    base_dir: str = field(default=".", metadata={"internal": True})
    """Folder that relative paths are resolved against (the config file's folder)."""

    def path(self, value: str) -> Path:
        """Resolve a path from the config against the config file's folder."""
        return resolve_path(self.base_dir, value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_path(base_dir: str, value: str) -> Path:
    """A path from a config, resolved against `base_dir` (the config file's folder) unless absolute."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Build a Config from defaults, an optional TOML file, then `key.sub=value` overrides."""
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    pipelines: list[PipelineConfig] = []
    text = ""
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError("config file not found", path) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"invalid TOML: {e}", path) from None
        base_dir = path.resolve().parent
        _rename_keys(data, str(path), text)
        pipelines = _pipeline_tables(data, path, text)
        try:
            _check_keys(Config, data, source=str(path))
        except ConfigError as e:
            line = _key_line(text, e.key) if e.key else None
            raise ConfigError(str(e).split(": ", 1)[1], path, line) from None
    given: dict[str, str] = {}
    for item in overrides or []:
        key, value = _parse_override(item)
        if key in RENAMED:
            _warn_renamed(key, f"override {item!r}")
            key = RENAMED[key]
        _check_keys(Config, _nest(key, value), source=f"override {item!r}")
        _deep_set(data, key.split("."), value)
        given[key] = item
    try:
        config = _build(Config, data, prefix="")
        _validate(config)
    except ConfigError as e:
        if e.key in given:
            raise _keyed(ConfigError(f"override {given[e.key]!r}: {e}"), e.key) from None
        if path is not None:
            raise _keyed(ConfigError(str(e), path, _key_line(text, e.key) if e.key else None), e.key) from None
        raise
    config.base_dir = str(base_dir)
    config.source = str(path) if path is not None else ""
    config.pipelines = pipelines
    return config


def _pipeline_tables(data: dict[str, Any], path: Path, text: str) -> list[PipelineConfig]:
    """Take the `[[pipelines]]` tables out of a parsed file, checking every key they hold.

    Without `experiment.presets` in the file, a file with pipelines runs only those.
    """
    tables = data.pop("pipelines", [])
    if not tables:
        return []
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("'pipelines' must be [[pipelines]] tables", path)
    if "presets" not in data.get("experiment", {}):
        data.setdefault("experiment", {})["presets"] = []
    headers = [n for n, line in enumerate(text.splitlines(), start=1) if line.strip().startswith("[[pipelines")]
    out = []
    for i, table in enumerate(tables):
        line = headers[i] if i < len(headers) else None
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a [[pipelines]] table needs a name", path, line)
        who = f"pipeline {name!r}"
        if "base" not in table:
            raise ConfigError(f"{who}: needs a base preset ({', '.join(PRESETS)})", path, line)
        base = table["base"]
        if base not in PRESETS:
            close = difflib.get_close_matches(str(base), PRESETS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{who}: unknown base {base!r}{hint} (known: {', '.join(PRESETS)})", path, line)
        template = table.get("template", "")
        if isinstance(template, dict):
            unknown = sorted(set(template) - {"name", "system", "user"})
            if unknown or "user" not in template:
                raise ConfigError(f"{who}: a template table holds system and user (and a name)", path, line)
        elif not isinstance(template, str):
            raise ConfigError(f"{who}: template must be a name or a table with system and user", path, line)
        overrides: dict[str, dict[str, Any]] = {}
        for key, value in table.items():
            if key in ("name", "base", "template"):
                continue
            valid = ["name", "base", "template", *PIPELINE_SECTIONS]
            if key not in PIPELINE_SECTIONS:
                nested = [f"{s}.{f.name}" for s in PIPELINE_SECTIONS for f in _public_fields(_SECTIONS[s])]
                close = difflib.get_close_matches(key, valid + nested, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
                raise ConfigError(f"{who}: unknown key {key!r}{hint}", path, line)
            if not isinstance(value, dict):
                raise ConfigError(f"{who}: {key!r} must be a table of settings", path, line)
            try:
                _check_keys(_SECTIONS[key], value, source=who, prefix=key + ".")
            except ConfigError as e:
                raise ConfigError(str(e), path, line) from None
            overrides[key] = value
        out.append(PipelineConfig(name, base, template, overrides, line))
    return out


def _rename_keys(data: dict[str, Any], source: str, text: str = "", warn: bool = True) -> None:
    """Move keys an earlier release spelled otherwise (`RENAMED`) to their new spelling, in place."""
    for old, new in RENAMED.items():
        section, key = old.split(".")
        table = data.get(section, {})
        if key not in table:
            continue
        line = _key_line(text, old) if text else None
        if new.split(".")[1] in table:
            raise ConfigError(f"both {old} and {new} are set; keep {new} only", source, line)
        if warn:
            _warn_renamed(old, f"{source}:{line}" if line else source)
        table[new.split(".")[1]] = table.pop(key)


def _warn_renamed(old: str, where: str) -> None:
    warnings.warn(
        f"{where}: {old} is now spelled {RENAMED[old]}; the old key still works in this release",
        RenamedWarning,
        stacklevel=3,
    )


def saved_config(data: dict[str, Any]) -> Config:
    """A Config written into a run folder (`Config.to_dict`), read back: settings this
    version does not know are dropped, the others checked as in a file; keys an earlier
    release spelled otherwise are read under their new names."""
    data = {**data, "experiment": dict(data.get("experiment", {}))}
    _rename_keys(data, "config.json", warn=False)
    config = _build(Config, data, prefix="")
    _validate(config)
    config.pipelines = [PipelineConfig(**table) for table in data.get("pipelines", [])]
    config.source = data.get("source", "")
    config.base_dir = data.get("base_dir", ".")
    return config


def saved_section(section: str, values: dict[str, Any]) -> Any:
    """One pipeline section (`models`, `finetune`, ...) as a run folder's pipelines.json holds it."""
    return _build(_SECTIONS[section], values, prefix=section + ".")


def check_settings(cls: type, values: dict[str, Any], section: str, source: str) -> Any:
    """One section's settings dataclass from keyword values, checked like a config file's
    section: unknown keys named with the closest valid one, types and choices checked."""
    _check_keys(cls, values, source=source, prefix=section + ".")
    built = _build(cls, values, prefix=section + ".")
    try:
        _validate(dataclasses.replace(Config(), **{section: built}))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return built


def pipeline_settings(config: Config, pipeline: PipelineConfig) -> Config:
    """The experiment's settings with one pipeline's overrides applied, checked like a file's."""
    where = dict(path=config.source or None, line=pipeline.line)
    sections = {}
    for section, values in pipeline.overrides.items():
        merged = {**dataclasses.asdict(getattr(config, section)), **values}
        try:
            sections[section] = _build(_SECTIONS[section], merged, prefix=section + ".")
        except ConfigError as e:
            raise ConfigError(f"pipeline {pipeline.name!r}: {e}", **where) from None
    resolved = dataclasses.replace(config, pipelines=[], **sections)
    try:
        _validate(resolved)
    except ConfigError as e:
        raise ConfigError(f"pipeline {pipeline.name!r}: {e}", **where) from None
    return resolved


def field_help(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass: the string literal right after each field."""
    return dict(_field_docs(cls))


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every leaf setting, for `--help-config`."""
    rows = []
    docs = field_help(cls)
    hints = get_type_hints(cls, include_extras=True)
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            rows += describe(type(value), prefix + f.name + ".")
        else:
            rules = get_args(hints[f.name])[1:] if get_origin(hints[f.name]) is Annotated else ()
            allowed = "".join(f" Allowed: {rule}." for rule in rules)
            rows.append((prefix + f.name, repr(value), docs.get(f.name, "") + allowed))
    return rows


@cache
def _field_docs(cls: type) -> tuple[tuple[str, str], ...]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out = []
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out.append((node.target.id, " ".join(nxt.value.value.split())))
    return tuple(out)


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _check_keys(cls: type, data: dict[str, Any], source: str, prefix: str = "") -> None:
    names = {f.name: f for f in _public_fields(cls)}
    hints = get_type_hints(cls)
    for key, value in data.items():
        if key not in names:
            valid = [prefix + n for n in names]
            close = difflib.get_close_matches(prefix + key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
            error = ConfigError(f"{source}: unknown key {prefix + key!r}{hint}")
            error.key = prefix + key
            raise error
        sub = hints[key]
        if dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {prefix + key!r} must be a table of settings")
            _check_keys(sub, value, source, prefix + key + ".")


def _key_line(text: str, dotted: str) -> int | None:
    """Line number of a dotted key in TOML text (under its [table] header), if found."""
    *tables, key = dotted.split(".")
    section: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            section = [p.strip() for p in stripped.strip("[]").split(".")]
            if section == tables + [key]:
                return number
        elif section == tables and stripped.split("=", 1)[0].strip() == key and "=" in stripped:
            return number
    return None


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls, include_extras=True)
    kwargs = {}
    for f in _public_fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, value, prefix + f.name + ".")
        else:
            kwargs[f.name] = _coerce(value, hint, prefix + f.name)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` as the field's type, within what the field declares it allows; else an error naming
    the key, the value and what is allowed."""
    if get_origin(hint) is Annotated:
        hint, *rules = get_args(hint)
        value = _coerce(value, hint, key)
        for rule in rules:
            for item in value if isinstance(value, list) else [value]:
                if not rule.allows(item):
                    raise _keyed(_not_allowed(key, item, rule), key)
        return value
    if get_origin(hint) in (Union, UnionType):  # `bool | None`: None stands for "unset"
        if value is None:
            return None
        (hint,) = (a for a in get_args(hint) if a is not type(None))
    origin = getattr(hint, "__origin__", hint)
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list:
        (item,) = hint.__args__
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if item is float and isinstance(value, list):
            value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise _keyed(ConfigError(f"{key} must be a list of {item.__name__}, got {value!r}"), key)
        return value
    if origin is int and isinstance(value, bool):
        raise _keyed(ConfigError(f"{key} must be an int, got {value!r}"), key)
    if not isinstance(value, origin):
        raise _keyed(ConfigError(f"{key} must be {origin.__name__}, got {type(value).__name__} {value!r}"), key)
    return value


def _not_allowed(key: str, value: Any, rule: Range | OneOf) -> ConfigError:
    if isinstance(rule, OneOf):
        close = difflib.get_close_matches(str(value), rule.options, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"{key}: unknown value {value!r}{hint} (choose {rule})")
    return ConfigError(f"{key} = {value!r} is out of range: must be {rule}")


def _keyed(error: ConfigError, key: str | None) -> ConfigError:
    error.key = key
    return error


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string such as generator=my-model
    return key, value


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _deep_set(out, key.split("."), value)
    return out


def _deep_set(data: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


_SECTIONS = {
    "models": ModelsConfig,
    "chunking": ChunkingConfig,
    "retrieval": RetrievalConfig,
    "generation": GenerationConfig,
    "finetune": FinetuneConfig,
    "optimize": OptimizeConfig,
    "synth": SynthConfig,
    "sql": SqlConfig,
    "prices": PricesConfig,
}


def _validate(config: Config) -> None:
    """Rules across settings; each setting's own range or choices are checked where it is declared."""
    device = config.models.device
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise _keyed(ConfigError(f"models.device must be auto, cpu, cuda or cuda:N, got {device!r}"), "models.device")
    if len(config.retrieval.hybrid_weights) != 2:
        raise _keyed(
            ConfigError("retrieval.hybrid_weights must be two numbers: [dense, bm25]"), "retrieval.hybrid_weights"
        )
    if config.chunking.chunk_overlap >= config.chunking.chunk_size:
        raise _keyed(
            ConfigError(
                f"chunking.chunk_overlap ({config.chunking.chunk_overlap}) must be smaller than "
                f"chunking.chunk_size ({config.chunking.chunk_size})"
            ),
            "chunking.chunk_overlap",
        )


def check_pairs(pairs: list[str], names: list[str], source: str | None = None) -> list[tuple[str, str]]:
    """experiment.pairs as (from, to) names of pipelines the experiment runs."""
    out = []
    for pair in pairs:
        a, sep, b = pair.partition(":")
        if not sep:
            raise ConfigError(f"experiment.pairs: {pair!r} is not of the form 'from:to'", source)
        for name in (a, b):
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (pipelines: {', '.join(names)})"
                raise ConfigError(f"experiment.pairs: no pipeline named {name!r}{hint}", source)
        out.append((a, b))
    return out
