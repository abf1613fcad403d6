"""What the experiment runner needs from a task, whatever its kind (QA over a corpus, text-to-SQL).

A task run holds its train and test examples and the retrieval of one setup (a pipeline's
retrieval settings); the runner asks it for prompts, scores, training records and the
identities its stages' cache keys are made of (`ragft.keys.KeyedTask`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ragft.keys import KeyedTask

if TYPE_CHECKING:
    from ragft.finetune.data import SFTRecord
    from ragft.generation import Generator
    from ragft.settings import PipelineSettings


class TaskRun(KeyedTask, Protocol):
    metrics: tuple[str, ...]
    """Metric names, primary first; each prediction gets a score for every one."""
    test_ids: list[str]
    oracle: str
    """What a pipeline with oracle context is shown, in words for the report."""

    def prompts(self, pipeline: PipelineSettings, generator: Generator) -> list[str]:
        """The rendered prompt of every test example for this pipeline."""
        ...

    def answers(self, i: int) -> tuple[str, ...]: ...

    def groups(self) -> tuple[dict[str, str], str]:
        """Each test example's cluster (its document, its database, or its `group` field) by
        id, and what the clusters are, in a word: the bootstrap resamples clusters."""
        ...

    def train_answers(self) -> list[tuple[str, str]]:
        """Each training example's answer, (normalised, as written): the constant-answer baseline's source."""
        ...

    def retrieved(self, pipeline: PipelineSettings, i: int) -> tuple[str, ...]:
        """Ids of what retrieval put into test example i's prompt (empty without context)."""
        ...

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        """(a score per metric, the kind of failure or '') for test example i's output."""
        ...

    def train_records(self, pipeline: PipelineSettings, generator: Generator) -> list[SFTRecord]: ...

    def preference_rows(self, pipeline: PipelineSettings) -> list[dict[str, Any]]:
        """DPO (prompt, chosen, rejected) or KTO (prompt, completion, label) rows from feedback,
        for a pipeline whose `finetune.objective` is dpo or kto."""
        ...

    def training_data(self, pipeline: PipelineSettings) -> dict[str, Any] | None:
        """What made a trained pipeline's synthetic training pairs (None: none were synthesized)."""
        ...

    def prepare(self, pipeline: PipelineSettings) -> None:
        """Build and save what the pipeline's training reads from the run folder (the index),
        so that the processes of a distributed training only read it."""
        ...

    def summary(self, retrieves: bool = True) -> dict[str, Any]:
        """The report's retrieval block; without `retrieves` (no pipeline retrieves), nothing
        that needs an index."""
        ...

    def passages(self) -> dict[str, str]:
        """Retrieved item id to its text, for the HTML report."""
        ...
