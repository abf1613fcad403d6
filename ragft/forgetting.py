"""The forgetting check: the base model and every fine-tuned pipeline answer a small set of
general questions outside the task, without context, and the report shows the change.

Predictions are cached in `predictions/general/` by their key, like any pipeline's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.arms import Arm, base_models, base_name, build_prompt
from ragft.io import sha256_file
from ragft.keys import predictions_key
from ragft.predict import load_predictions, predict
from ragft.stats import bootstrap, paired_difference
from ragft.tasks.qa import SCORING, load_examples, score

if TYPE_CHECKING:
    from ragft.experiment import Run
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

    def prompt_identity(self, pipeline: Arm) -> Any:
        return {"general": self.sha256}

    def oracle_identity(self) -> Any:
        return None

    def scoring_identity(self) -> Any:
        return {"score": SCORING}

    def prompts(self, pipeline: Arm, generator: Generator) -> list[str]:
        return [build_prompt(generator, pipeline, e, [], []) for e in self.examples]

    def answers(self, i: int) -> tuple[str, ...]:
        return self.examples[i].answers

    def retrieved(self, pipeline: Arm, i: int) -> tuple[str, ...]:
        return ()

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        return score(output, self.examples[i].answers), ""


def forgetting(run: Run, trained: list[Arm], general: GeneralSet, samples: int, seed: int) -> dict[str, Any]:
    """Scores of each base model and each fine-tuned pipeline on the general set, and each
    tuned model's paired difference to its base (negative: it forgot)."""
    generator_name = run.config.models.generator
    bases = base_models(trained, generator_name)
    scores: dict[str, list[Prediction]] = {}
    base_of: dict[str, str] = {}
    for name, model in [*bases.items(), *((p.name, p) for p in trained)]:
        view = model.with_context("none")
        generator_id = run.generator_identity(model)
        adapter = run.adapter_key(model) if model.trained else None
        key = predictions_key(view, general, generator_id, adapter, None)
        path = run.folder / "predictions" / "general" / f"{name}.jsonl"
        done = load_predictions(path, key)
        if not all(i in done for i in general.test_ids):
            generator = run.generator(model)  # loaded only when something is missing
            if adapter is None:
                predict(path, f"general/{name}", view, generator, general, done, key)
            else:
                with run.adapted(model, generator):
                    predict(path, f"general/{name}", view, generator, general, done, key)
        scores[name] = [done[i] for i in general.test_ids]
        if model.trained:
            base_of[name] = base_name(model, generator_name)
    return {
        "examples": str(general.path),
        "n": len(general.test_ids),
        "models": {
            m: {k: asdict(bootstrap([p.scores[k] for p in preds], samples, seed)) for k in GeneralSet.metrics}
            for m, preds in scores.items()
        },
        "changes": {
            m: {
                k: asdict(
                    paired_difference(
                        [p.scores[k] for p in scores[base_of[m]]], [p.scores[k] for p in preds], samples, seed
                    )
                )
                for k in GeneralSet.metrics
            }
            for m, preds in scores.items()
            if m in base_of
        },
    }
