"""Text-to-SQL as an experiment task: schema + question in, one SQLite query out, scored
by execution accuracy in the sandbox.

`rag` shows the k training questions most similar to the test question with their SQL
(with `retrieval.hyde`, also those whose SQL is most similar to a draft the model writes
zero-shot, fused by reciprocal rank). `ft` and `rag+ft` train LoRA on the training pairs,
`rag+ft` with retrieved examples in the prompt as at test time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.errors import InputError
from ragft.finetune.data import SFTRecord, make_record
from ragft.io import read_json, sha256_file, sha256_json, write_json_atomic
from ragft.keys import hits_key
from ragft.models import model_id
from ragft.settings import PipelineSettings
from ragft.sql.data import SqlData, SqlExample, load_spider, load_sqlite_task, sample_rows, schema_from_sqlite
from ragft.sql.sandbox import Sandbox
from ragft.sql.score import execution_match, extract_sql

if TYPE_CHECKING:
    from ragft.config import RetrievalConfig, SqlConfig
    from ragft.generation import Generator
    from ragft.resources import Models

SYSTEM = "You write SQLite queries. Answer with one SQL query and nothing else."


def stratified(examples: list[SqlExample], n: int, seed: int) -> list[SqlExample]:
    """A fixed slice of n examples spread evenly over databases (all when n is 0)."""
    if n <= 0 or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    groups: dict[str, list[SqlExample]] = {}
    for e in examples:
        groups.setdefault(e.db_id, []).append(e)
    for group in groups.values():
        rng.shuffle(group)
    out: list[SqlExample] = []
    while len(out) < n:
        for db in sorted(groups):
            if groups[db] and len(out) < n:
                out.append(groups[db].pop())
    return out


def normal_sql(sql: str) -> str:
    return " ".join(sql.strip().rstrip(";").split())


@dataclass(frozen=True)
class SQLTask:
    """Text-to-SQL over SQLite databases: the train and test pairs (a question, its gold SQL
    and its database), the schemas the prompts show and the database files generated queries
    run on in the read-only sandbox; scored by execution accuracy.

        task = ragft.SQLTask.from_sqlite("tidewatch.sqlite", "pairs.jsonl")
        task = ragft.SQLTask.from_spider("spider/")
    """

    train: tuple[SqlExample, ...]
    test: tuple[SqlExample, ...]
    schemas: dict[str, str]
    """Database id to its CREATE TABLE text."""
    databases: dict[str, Path]
    """Database id to its SQLite file, for the databases that are present."""
    fingerprint: tuple[str, ...]
    """Content hashes of the files the pairs and databases came from."""
    source: str = ""
    """Where the pairs came from, for errors and the report."""

    @classmethod
    def from_sqlite(
        cls, database: str | Path, pairs: str | Path, test_limit: int = 0, train_limit: int = 0, seed: int = 0
    ) -> SQLTask:
        """One SQLite file and a JSONL of {id?, question, query, split, group?} rows (split:
        train or test); `test_limit` test pairs and `train_limit` training pairs (0: all)."""
        database, pairs = Path(database), Path(pairs)
        data = load_sqlite_task(database, pairs)
        fingerprint = (sha256_file(pairs), sha256_file(database))
        return cls._split(data, "test", fingerprint, pairs, test_limit, train_limit, seed)

    @classmethod
    def from_spider(cls, folder: str | Path, test_limit: int = 0, train_limit: int = 0, seed: int = 0) -> SQLTask:
        """A Spider folder: train.json to train on, dev.json to test on, tables.json and
        database/<db_id>/<db_id>.sqlite; `test_limit` test pairs spread evenly over the
        databases and `train_limit` training pairs (0: all)."""
        folder = Path(folder)
        data = load_spider(folder, ("train", "dev"))
        fingerprint = tuple(sha256_file(folder / f) for f in ("train.json", "dev.json", "tables.json"))
        return cls._split(data, "dev", fingerprint, folder, test_limit, train_limit, seed)

    @classmethod
    def from_dataset(
        cls,
        data: Any,
        database: str | Path,
        *,
        question: str = "question",
        query: str = "query",
        id: str | None = "id",  # noqa: A002 (the column's name)
        db_id: str | None = None,
        group: str | None = "group",
        split: str | None = "split",
        splits: dict[str, str] | None = None,
        test_limit: int = 0,
        train_limit: int = 0,
        seed: int = 0,
    ) -> SQLTask:
        """Question/SQL pairs from a Hugging Face `datasets.Dataset` (its split in the column
        `split` names) or `DatasetDict` (train, test, and validation as dev; `splits` renames
        others, e.g. {"validation": "test"}), over the SQLite file `database`, or, with a
        `db_id` column, over a folder holding `<db_id>/<db_id>.sqlite` (Spider's layout);
        `group` names each pair's cluster for the bootstrap where it is not its database.
        Test pairs are the `test` split, else `dev` (Spider's validation). Without an id
        column, ids are `<split>-<row>`."""
        from ragft.tasks.dataset_rows import dataset_rows

        database = Path(database)
        columns = {"question": question, "query": query, "id": id, "db_id": db_id, "group": group}
        rows = dataset_rows(data, columns, ("question", "query", "db_id"), split, splits)
        if db_id is None:
            if not database.is_file():
                raise InputError("SQLite database not found", database)
            files = {database.stem: database}
        else:
            if not database.is_dir():
                raise InputError("with a db_id column, database names the folder of <db_id>/<db_id>.sqlite", database)
            files = {str(r["db_id"]): database / str(r["db_id"]) / f"{r['db_id']}.sqlite" for r in rows}
            missing = sorted(name for name, path in files.items() if not path.is_file())
            if missing:
                raise InputError(f"no database file for {', '.join(missing[:3])}", database)
        examples: list[SqlExample] = []
        seen: dict[str, str] = {}
        for r in rows:
            where = f"row {r['row']} ({r['split']})"
            if r["split"] not in ("train", "test", "dev"):
                raise InputError(f"split must be train, dev or test, got {r['split']!r}", "dataset", where)
            name = str(r["db_id"]) if db_id is not None else database.stem
            ex_id = str(r["id"]) if r.get("id") is not None else f"{r['split']}-{r['row']}"
            if ex_id in seen:
                raise InputError(f"duplicate id {ex_id!r} (first at {seen[ex_id]})", "dataset", where)
            seen[ex_id] = where
            kept = None if r.get("group") is None else str(r["group"])
            examples.append(SqlExample(ex_id, str(r["question"]), str(r["query"]), name, r["split"], kept))
        data_set = SqlData(examples, {n: schema_from_sqlite(p) for n, p in files.items()}, files)
        pairs = sha256_json([[e.id, e.question, e.query, e.db_id, e.split] for e in examples])
        fingerprint = (pairs, *(sha256_file(p) for p in sorted(files.values())))
        test_split = "test" if any(e.split == "test" for e in examples) else "dev"
        return cls._split(data_set, test_split, fingerprint, Path("dataset"), test_limit, train_limit, seed)

    @classmethod
    def _split(
        cls,
        data: SqlData,
        test_split: str,
        fingerprint: tuple[str, ...],
        source: Path,
        test_limit: int,
        train_limit: int,
        seed: int,
    ) -> SQLTask:
        """The training pairs shuffled by `seed` and cut to `train_limit`; `test_limit` test
        pairs spread evenly over databases (0: all)."""
        train = data.split("train")
        random.Random(seed).shuffle(train)
        train = train[:train_limit] if train_limit > 0 else train
        test = stratified(data.split(test_split), test_limit, seed)
        if not test:
            raise InputError(f"no {test_split} examples", source)
        missing = sorted({e.db_id for e in test} - data.databases.keys())
        if missing:
            raise InputError(f"test databases missing: {', '.join(missing)}", source)
        return cls(tuple(train), tuple(test), data.schemas, data.databases, fingerprint, str(source))


class SqlRun:
    """A text-to-SQL task prepared for one run folder and one pipeline's retrieval settings."""

    metrics = ("ex", "valid")
    oracle = "the training examples whose SQL is closest to the gold query"

    def __init__(self, run: Path, data: SQLTask, retrieval: RetrievalConfig, sql: SqlConfig, models: Models):
        self.run = run
        self.retrieval_settings = retrieval
        self.sql = sql
        self.models = models
        self.task = data
        self.train = list(data.train)
        self.test = list(data.test)
        self.test_ids = [e.id for e in self.test]
        self.data_identity = [
            list(data.fingerprint),
            [e.id for e in self.test],
            [e.id for e in self.train],
            sql.sample_rows,
        ]
        self._sandboxes: dict[str, Sandbox] = {}

    # Identities: what each stage's key is made of (see ragft.keys).

    def _embedding(self) -> dict[str, Any]:
        m = self.models.settings
        return {"embedder": model_id(m.embedder), "embedder_dtype": m.embedder_dtype}

    def index_identity(self) -> Any:
        return None  # solved examples are ranked by exact similarity, no saved index

    def retriever_identity(self) -> Any:
        out = {"data": self.data_identity, **self._embedding()}
        if self.retrieval_settings.hyde:
            out["hyde"] = self.models.generator_identity()
        return out

    def oracle_identity(self) -> Any:
        return {"data": self.data_identity, "k": self.retrieval_settings.k, **self._embedding()}

    def training_identity(self, pipeline: PipelineSettings) -> Any:
        out: dict[str, Any] = {"data": self.data_identity, "system": SYSTEM, "context": pipeline.context}
        if pipeline.context:  # each training question is shown its k nearest other training pairs
            out.update(k=self.retrieval_settings.k, **self._embedding())
        return out

    def prompt_identity(self, pipeline: PipelineSettings) -> Any:
        return {"data": self.data_identity, "system": SYSTEM, "shots": pipeline.shots}

    def scoring_identity(self) -> Any:
        return {"timeout_s": self.sql.timeout_s, "max_rows": self.sql.max_rows}

    # Prompts.

    def schema(self, db_id: str) -> str:
        text = self.task.schemas[db_id]
        rows = self.sql.sample_rows
        if rows > 0 and db_id in self.task.databases:
            text += "\n" + sample_rows(self.task.databases[db_id], rows)
        return text

    def messages(self, e: SqlExample, shots: list[SqlExample]) -> list[dict[str, str]]:
        solved = "".join(f"Question: {s.question}\nSQL: {normal_sql(s.query)}\n\n" for s in shots)
        user = f"Database schema:\n{self.schema(e.db_id)}\n\n"
        if solved:
            user += f"Solved examples from other questions:\n{solved}"
        user += f"Question: {e.question}\nSQL:"
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]

    def shots(self, pipeline: PipelineSettings, i: int) -> list[SqlExample]:
        if pipeline.context:
            return [self._train_by_id[t] for t in self.context_ids(pipeline)[i]]
        return self.train[: pipeline.shots]

    def context_ids(self, pipeline: PipelineSettings) -> list[list[str]]:
        return self.oracle_ids if pipeline.oracle else self.retrieved_ids

    def prompts(self, pipeline: PipelineSettings, generator: Generator) -> list[str]:
        return [generator.render(self.messages(e, self.shots(pipeline, i))) for i, e in enumerate(self.test)]

    # Retrieval of solved examples.

    @cached_property
    def _train_by_id(self) -> dict[str, SqlExample]:
        return {e.id: e for e in self.train}

    @cached_property
    def retrieved_ids(self) -> list[list[str]]:
        """The k training examples shown to each test question, cached by what chose them."""
        key = hits_key(self, self.retrieval_settings.k)
        cache = self.run / "retrieval" / f"sql_examples-{key[:12]}.json"
        if cache.is_file():
            saved = read_json(cache)
            if saved.get("key") == key:
                return saved["ids"]
        import numpy as np

        from ragft.retrieval.hybrid import rrf
        from ragft.types import Chunk, Hit

        k = self.retrieval_settings.k
        embed = self.models.embedder().embed
        by_question = np.argsort(-(embed([e.question for e in self.test]) @ self._train_questions.T), axis=1)[
            :, : k * 4
        ]
        rankings = [[list(row)] for row in by_question]
        if self.retrieval_settings.hyde:
            generator = self.models.generator()
            drafts = generator.generate([generator.render(self.messages(e, [])) for e in self.test], "HyDE SQL drafts")
            by_sql = np.argsort(-(embed([extract_sql(d.text) for d in drafts]) @ self._train_sql.T), axis=1)[:, : k * 4]
            for ranking, row in zip(rankings, by_sql):
                ranking.append(list(row))
        ids = []
        for ranking in rankings:
            hits = [[Hit(Chunk(str(j), "", "", 0), 0.0, r) for r, j in enumerate(row)] for row in ranking]
            ids.append([self.train[int(h.chunk.id)].id for h in rrf(hits, [1.0] * len(hits))[:k]])
        write_json_atomic(cache, {"key": key, "ids": ids})
        return ids

    @cached_property
    def _train_questions(self) -> Any:
        """Embeddings of the training questions (shared by retrieval and the rag+ft neighbours)."""
        return self.models.embedder().embed([e.question for e in self.train])

    @cached_property
    def _train_sql(self) -> Any:
        """Embeddings of the training queries (shared by HyDE retrieval and the oracle view)."""
        return self.models.embedder().embed([normal_sql(e.query) for e in self.train])

    @cached_property
    def oracle_ids(self) -> list[list[str]]:
        """For each test question, the k training examples whose SQL is most similar to its gold SQL."""
        import numpy as np

        gold = self.models.embedder().embed([normal_sql(e.query) for e in self.test])
        order = np.argsort(-(gold @ self._train_sql.T), axis=1)[:, : self.retrieval_settings.k]
        return [[self.train[int(j)].id for j in row] for row in order]

    def _train_neighbours(self) -> list[list[SqlExample]]:
        """For each training example, the k most similar other ones (by question)."""
        import numpy as np

        k = self.retrieval_settings.k
        vectors = self._train_questions
        sims = vectors @ vectors.T
        np.fill_diagonal(sims, -np.inf)
        order = np.argsort(-sims, axis=1)[:, :k]
        return [[self.train[int(j)] for j in row] for row in order]

    # What the runner asks for.

    def answers(self, i: int) -> tuple[str, ...]:
        return (self.test[i].query,)

    def groups(self) -> tuple[dict[str, str], str]:
        by = "group" if any(e.group for e in self.test) else "database"
        return {e.id: e.group or e.db_id for e in self.test}, by

    def train_answers(self) -> list[tuple[str, str]]:
        return [(normal_sql(e.query).lower(), e.query) for e in self.train]

    def retrieved(self, pipeline: PipelineSettings, i: int) -> tuple[str, ...]:
        return tuple(self.context_ids(pipeline)[i]) if pipeline.context else ()

    def sandbox(self, db_id: str) -> Sandbox:
        if db_id not in self._sandboxes:
            s = self.sql
            self._sandboxes[db_id] = Sandbox(self.task.databases[db_id], s.timeout_s, s.max_rows)
        return self._sandboxes[db_id]

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        e = self.test[i]
        right, result = execution_match(self.sandbox(e.db_id), e.query, extract_sql(output))
        error = result.error_kind or ("" if right else "wrong_result")
        return {"ex": float(right), "valid": float(result.ok)}, error

    def train_records(self, pipeline: PipelineSettings, generator: Generator) -> list[SFTRecord]:
        neighbours = self._train_neighbours() if pipeline.context else [[] for _ in self.train]
        eos = generator.tokenizer.eos_token_id
        records = []
        for e, shots in zip(self.train, neighbours):
            prompt = generator.render(self.messages(e, shots))
            answer = generator.encode(normal_sql(e.query))
            records.append(make_record(e.id, generator.encode(prompt), answer, eos, pipeline.finetune.max_length))
        return records

    def training_data(self, pipeline: PipelineSettings) -> dict[str, Any] | None:
        return None  # text-to-SQL trains on its train split only

    def prepare(self, pipeline: PipelineSettings) -> None:
        """Nothing: training neighbours are computed in memory, nothing is read from the run folder."""

    def summary(self, retrieves: bool = True) -> dict[str, Any]:
        databases = sorted({e.db_id for e in self.test})
        how = "by question similarity" + (" and HyDE draft-SQL similarity" if self.retrieval_settings.hyde else "")
        return {
            "databases": len(databases),
            "train_examples": len(self.train),
            "line": (
                f"Text-to-SQL over {len(databases)} database(s), {len(self.train)} training pairs; "
                f"rag shows the {self.retrieval_settings.k} training examples closest {how}."
            ),
        }

    def passages(self) -> dict[str, str]:
        return {e.id: f"Question: {e.question}\nSQL: {e.query}" for e in self.train}
