"""Prompt optimization with DSPy, in process with the real offline generator: the prompt
DSPy scores is the prompt the pipeline shows, its cost is counted, and it is made once."""

import json

import pytest
from helpers import ROOT, TINY

from ragft.config import load_config
from ragft.errors import ConfigError
from ragft.experiment import compare
from ragft.metrics import qa_scores as score
from ragft.optimize import most_calls
from ragft.resources import Resources
from ragft.runner.run import Run
from ragft.settings import resolve_pipelines

DSPY = [
    *TINY,
    'experiment.presets=["prompt","rag+dspy"]',
    "optimize.demos=2",
    "optimize.candidates=0",  # zero-shot, labels only and plain bootstrapping
    "optimize.train_questions=6",
    "optimize.validation_questions=4",
]


@pytest.fixture(scope="module")
def optimized_run(tmp_path_factory, generator, embedder):
    run = tmp_path_factory.mktemp("dspy") / "run"
    config = load_config(ROOT / "configs" / "handbook.toml", DSPY)
    return run, config, compare(config, run, generator=generator, embedder=embedder).data


def test_the_validation_score_dspy_kept_is_what_the_chosen_prompt_scores(optimized_run, generator, embedder):
    run, config, report = optimized_run
    saved = json.loads((run / "prompts" / "rag_dspy" / "prompt.json").read_text())
    cost = report["pipelines"]["rag+dspy"]["costs"]["optimization"]
    assert cost["calls"] >= 4 * cost["candidates"] and cost["prompt_tokens"] > cost["calls"] * 100
    assert cost["calls"] <= most_calls(config.optimize, 6, 4)  # the progress bar's total
    assert len(saved["demos"]) <= 2 and cost["demos"] == len(saved["demos"])
    pipeline = next(a for a in resolve_pipelines(config) if a.name == "rag+dspy")
    task = Run(run, config, Resources([generator], [embedder])).task(pipeline)
    _, validation = task.optimizer_questions(pipeline)
    shots = [(d["question"], d["answer"], d["passages"]) for d in saved["demos"]]
    decode = generator.with_decoding(1, config.generation.max_new_tokens, config.experiment.seed)
    scores = []
    for q in validation:  # the chosen prompt, rendered by the pipeline's own template, answered one by one
        prompt = decode.render(pipeline.template.messages(q.question, q.passages, shots))
        scores.append(score(decode.generate_batch([prompt])[0].text, q.answers)["f1"])
    assert saved["validation_score"] == pytest.approx(sum(scores) / len(scores))
    assert all(len(q.passages) == config.retrieval.k for q in validation)  # shown context, as at test time


def test_test_prompts_show_the_chosen_demonstrations_and_a_rerun_optimizes_nothing(optimized_run, generator, embedder):
    run, config, report = optimized_run
    saved = json.loads((run / "prompts" / "rag_dspy" / "prompt.json").read_text())
    rows = [json.loads(line) for line in (run / "predictions" / "rag+dspy.jsonl").read_text().splitlines()]
    assert all(d["question"] in r["prompt"] and d["answer"] in r["prompt"] for d in saved["demos"] for r in rows)
    assert "Prompt optimization (DSPy" in (run / "report.md").read_text()
    stamp = (run / "prompts" / "rag_dspy" / "prompt.json").stat().st_mtime_ns
    again = compare(config, run, generator=generator, embedder=embedder).data
    assert (run / "prompts" / "rag_dspy" / "prompt.json").stat().st_mtime_ns == stamp
    assert again["pipelines"]["rag+dspy"]["metrics"] == report["pipelines"]["rag+dspy"]["metrics"]


def test_prompt_optimization_is_refused_on_a_sql_task_before_anything_loads():
    config = load_config(ROOT / "configs" / "tidewatch-sql.toml", ['experiment.presets=["prompt","dspy"]'])
    with pytest.raises(ConfigError, match="dspy: prompt optimization with DSPy runs on qa tasks, not sql"):
        resolve_pipelines(config)
