"""The forgetting check's questions and statistics: the base model and every fine-tuned
pipeline answer a small set of general questions outside the task, without context, and
the report shows the change (the runner makes and caches the answers like any pipeline's)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.io import sha256_file
from ragft.metrics import QA_SCORING, qa_scores
from ragft.settings import PipelineSettings
from ragft.stats import bootstrap, paired_difference
from ragft.tasks.qa import build_prompt, load_examples

if TYPE_CHECKING:
    from ragft.generation import Generator
    from ragft.types import Prediction


class GeneralSet:
    """General questions scored by F1/EM: the part of a task the prediction loop and the
    prediction key need."""

    metrics = ("f1", "em")

    def __init__(self, path: Path):
        self.path = path
        self.examples = load_examples(path)
        self.test_ids = [e.id for e in self.examples]
        self.sha256 = sha256_file(path)

    def prompt_identity(self, pipeline: PipelineSettings) -> Any:
        return {"general": self.sha256}

    def oracle_identity(self) -> Any:
        return None

    def scoring_identity(self) -> Any:
        return {"score": QA_SCORING}

    def prompts(self, pipeline: PipelineSettings, generator: Generator) -> list[str]:
        return [build_prompt(generator, pipeline, e, [], []) for e in self.examples]

    def answers(self, i: int) -> tuple[str, ...]:
        return self.examples[i].answers

    def retrieved(self, pipeline: PipelineSettings, i: int) -> tuple[str, ...]:
        return ()

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        return qa_scores(output, self.examples[i].answers), ""


def forgetting_block(
    general: GeneralSet, answers: dict[str, list[Prediction]], base_of: dict[str, str], samples: int, seed: int
) -> dict[str, Any]:
    """Scores of each model's `answers` to the general set with intervals, and each tuned
    model's paired difference to its base (`base_of`; negative: it forgot)."""
    return {
        "examples": str(general.path),
        "n": len(general.test_ids),
        "models": {
            m: {k: asdict(bootstrap([p.scores[k] for p in preds], samples, seed)) for k in GeneralSet.metrics}
            for m, preds in answers.items()
        },
        "changes": {
            m: {
                k: asdict(
                    paired_difference(
                        [p.scores[k] for p in answers[base_of[m]]], [p.scores[k] for p in preds], samples, seed
                    )
                )
                for k in GeneralSet.metrics
            }
            for m, preds in answers.items()
            if m in base_of
        },
    }
