"""Making a pipeline's predictions batch by batch, appended as each batch finishes, and
reading back the ones a previous (perhaps interrupted) run made with the same key."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ragft.io import append_jsonl, read_jsonl
from ragft.progress import progress
from ragft.types import Prediction, prediction_from_row

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.settings import PipelineSettings


class PredictableTask(Protocol):
    """The part of a task the prediction loop needs (a task run, or the forgetting check's set)."""

    test_ids: list[str]

    def prompts(self, pipeline: PipelineSettings, generator: Generator) -> list[str]: ...

    def answers(self, i: int) -> tuple[str, ...]: ...

    def retrieved(self, pipeline: PipelineSettings, i: int) -> tuple[str, ...]: ...

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]: ...


def predict(
    path: Path,
    label: str,
    pipeline: PipelineSettings,
    generator: Generator,
    task: PredictableTask,
    done: dict[str, Prediction],
    key: str,
) -> None:
    """Generate the batches not yet in `path`, appending each batch when it finishes.

    Batches are planned over the whole test set, so a resumed run regenerates exactly the
    batches an uninterrupted one would have; `done` is filled in place.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = task.test_ids
    prompts = task.prompts(pipeline, generator)
    plan = generator.plan(prompts)
    todo = [batch for batch in plan if not all(ids[i] in done for i in batch)]
    bar = progress(total=len(ids), initial=len(ids) - sum(map(len, todo)), desc=f"{label}: answering", unit="q")
    for batch in todo:
        rows = []
        for i, g in zip(batch, generator.generate_batch([prompts[i] for i in batch])):
            scores, error = task.score(i, g.text)
            p = Prediction(
                ids[i],
                label,
                prompts[i],
                g.text,
                task.answers(i),
                task.retrieved(pipeline, i),
                scores,
                g.prompt_tokens,
                g.completion_tokens,
                g.seconds,
                error,
            )
            done[ids[i]] = p
            rows.append({"fingerprint": key, **asdict(p)})
        append_jsonl(path, rows)
        bar.update(len(batch))
    bar.close()


def load_predictions(path: Path, key: str, set_aside: bool = True) -> dict[str, Prediction]:
    """Predictions already made with the same key; a file made with another is set aside
    (`.stale.jsonl`) unless `set_aside` is off (a run that only reads it). A line cut short
    by a kill mid-write is dropped (its batch is generated again; the next append cuts it off)."""
    if not path.exists():
        return {}
    rows = [row for _, row in read_jsonl(path, torn_tail_ok=True)]
    if any(row.get("fingerprint") != key for row in rows):
        if set_aside:
            path.replace(path.with_suffix(".stale.jsonl"))
        return {}
    return {row["example_id"]: prediction_from_row(row) for row in rows}
