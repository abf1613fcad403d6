"""The forgetting check: the base model and every fine-tuned arm answer a small set of
general questions outside the task, without context, and the report shows the change.

Predictions are cached in `predictions/general/` by what made them, like any variant's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragft.arms import ARMS, Arm, build_prompt
from ragft.io import sha256_file
from ragft.stats import bootstrap, paired_difference
from ragft.tasks.qa import load_examples, score

if TYPE_CHECKING:
    from ragft.config import Config
    from ragft.experiment import Resources
    from ragft.generation import Generator
    from ragft.tasks.base import TaskRun
    from ragft.types import Prediction


class GeneralSet:
    """General questions scored by F1/EM: the part of a task the prediction loop needs."""

    metrics = ("f1", "em")

    def __init__(self, path: Path):
        self.path = path
        self.examples = load_examples(path)
        self.test_ids = [e.id for e in self.examples]
        self.sha256 = sha256_file(path)

    def identity(self, arm: Arm) -> Any:
        return {"general": self.sha256}

    def prompts(self, arm: Arm, generator: Generator) -> list[str]:
        return [build_prompt(generator, arm, e, [], []) for e in self.examples]

    def answers(self, i: int) -> tuple[str, ...]:
        return self.examples[i].answers

    def retrieved(self, arm: Arm, i: int) -> tuple[str, ...]:
        return ()

    def score(self, i: int, output: str) -> tuple[dict[str, float], str]:
        return score(output, self.examples[i].answers), ""


def forgetting(run: Path, config: Config, resources: Resources, task: TaskRun, general: GeneralSet) -> dict[str, Any]:
    """Scores of the base model and each fine-tuned variant on the general set, and each
    tuned model's paired difference to the base (negative: it forgot)."""
    from ragft.experiment import adapted, adapter_fingerprint, load_predictions, predict, predictions_fingerprint

    arm = ARMS["prompt"]
    scores: dict[str, list[Prediction]] = {}
    for model in ["base", *(v for v in config.experiment.variants if ARMS[v].trained)]:
        adapter = adapter_fingerprint(model, ARMS[model], config, task) if model != "base" else None
        fingerprint = predictions_fingerprint(arm, adapter, config, general)
        path = run / "predictions" / "general" / f"{model}.jsonl"
        done = load_predictions(path, fingerprint)
        if not all(i in done for i in general.test_ids):
            generator = resources.generator  # loaded only when something is missing
            if adapter is None:
                predict(path, "general/base", arm, generator, general, done, fingerprint)
            else:
                with adapted(run, model, ARMS[model], config, resources, task, adapter):
                    predict(path, f"general/{model}", arm, generator, general, done, fingerprint)
        scores[model] = [done[i] for i in general.test_ids]
    samples, seed = config.experiment.bootstrap_samples, config.experiment.seed
    base = scores["base"]
    return {
        "examples": str(general.path),
        "n": len(general.test_ids),
        "models": {
            m: {k: asdict(bootstrap([p.scores[k] for p in preds], samples, seed)) for k in GeneralSet.metrics}
            for m, preds in scores.items()
        },
        "changes": {
            m: {
                k: asdict(paired_difference([p.scores[k] for p in base], [p.scores[k] for p in preds], samples, seed))
                for k in GeneralSet.metrics
            }
            for m, preds in scores.items()
            if m != "base"
        },
    }
