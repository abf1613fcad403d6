"""What stops a wrong conclusion, on predictions whose right answer is known: the constant
baseline and the collapse warning, money and break-even arithmetic, and the verdict."""

import pytest

from ragft.metrics import qa_scores as score
from ragft.render.markdown import markdown
from ragft.report.aggregate import aggregate
from ragft.report.sanity import collapse_warnings, constant_answer
from ragft.report.verdict import break_even, frontier, money
from ragft.types import Prediction

IDS = [f"q{i}" for i in range(60)]
GOLD = {i: ("yes", "no", "maybe")[n % 3] if n < 30 else f"answer {n}" for n, i in enumerate(IDS)}
GROUPS = {i: f"doc{n // 6}" for n, i in enumerate(IDS)}


def _predictions(name: str, answer, seconds: float = 0.2, prompt_tokens: int = 100) -> list[Prediction]:
    out = []
    for n, i in enumerate(IDS):
        text = answer(n, i)
        out.append(
            Prediction(i, name, "prompt", text, (GOLD[i],), (), score(text, (GOLD[i],)), prompt_tokens, 3, seconds)
        )
    return out


def _always_yes(n, i):
    return "yes"


def _right_then_sentences(n, i):
    return GOLD[i] if n % 2 == 0 else f"I would say {GOLD[i]} here"


def test_collapse_warning_names_an_arm_that_always_gives_one_answer_and_not_a_varied_one():
    runs = {"rag+ft": [_predictions("rag+ft", _always_yes)], "rag": [_predictions("rag", _right_then_sentences)]}
    warnings = collapse_warnings(runs, trained=["rag+ft"])
    assert {(w["pipeline"], w["kind"]) for w in warnings} == {("rag+ft", "one_output"), ("rag+ft", "low_variety")}
    one = next(w for w in warnings if w["kind"] == "one_output")
    assert one["share"] == 1.0 and "60 of 60 test questions (100%)" in one["message"]


def test_constant_answer_baseline_flags_an_arm_no_better_than_it():
    train = [(a, a) for a in ["yes"] * 5 + ["no"] * 3 + ["Maybe"]]
    baseline = constant_answer(train, IDS, lambda n, text: (score(text, (GOLD[IDS[n]],)), ""))
    assert baseline["answer"] == "yes" and baseline["train_count"] == 5
    assert constant_answer([("a", "a"), ("b", "b")], IDS, lambda n, t: ({}, "")) is None  # nothing repeats
    predictions = {"rag": _predictions("rag", _right_then_sentences), "rag+ft": _predictions("rag+ft", _always_yes)}
    costs = {"rag+ft": {"training": {"seconds": 100.0}}}
    report = aggregate(
        predictions, costs, 500, 0, ("f1", "em", "acc"), groups=GROUPS, baseline=baseline, trained=["rag+ft"]
    )
    assert report["baseline"]["metrics"]["f1"]["mean"] == pytest.approx(10 / 60)
    above = {r["pipeline"]: r["above"] for r in report["baseline"]["comparisons"]}
    assert above == {"rag": True, "rag+ft": False}
    flags = " ".join(report["verdict"]["flags"])
    assert "Not significantly above answering 'yes' to every question" in flags and "rag+ft" in flags
    assert "constant 'yes' (baseline)" in markdown(_whole(report))


def test_money_and_break_even_arithmetic():
    costs = {"seconds_per_query_mean": 0.2, "training": {"seconds": 300.0}}
    priced = money(costs, {"cpu_hour": 3.6, "gpu_hour": 10.0})  # a dollar every 1,000 seconds
    assert priced["dollars_per_1000_queries"] == pytest.approx(0.2)
    assert priced["training_dollars"] == pytest.approx(0.3)
    assert money({**costs, "peak_gpu_bytes": 1}, {"cpu_hour": 3.6, "gpu_hour": 36.0})["training_dollars"] == 3.0
    assert money(costs, {"cpu_hour": 0.0}) == {}
    assert break_even(0.3, 0.0001) == pytest.approx(3000)
    assert break_even(0.3, 0.0) is None and break_even(0.3, -1.0) is None
    assert frontier({"a": (0.5, 1.0), "b": (0.6, 2.0), "c": (0.4, 1.5), "d": (0.6, 3.0)}) == ["a", "b"]


def test_verdict_names_best_cheapest_as_good_break_even_and_what_a_step_bought():
    predictions = {
        "prompt": _predictions("prompt", lambda n, i: f"It might be {GOLD[i]} I think", 0.2, 50),
        "rag": _predictions("rag", lambda n, i: f"It might be {GOLD[i]} I think", 0.3, 300),
        "rag+ft": _predictions("rag+ft", lambda n, i: GOLD[i], 0.1, 300),
    }
    costs = {"rag+ft": {"training": {"seconds": 360.0}}}
    report = aggregate(
        predictions,
        costs,
        500,
        0,
        ("f1", "em", "acc"),
        groups=GROUPS,
        trained=["rag+ft"],
        prices={n: {"cpu_hour": 3.6} for n in predictions},
    )
    v = report["verdict"]
    assert v["best"] == "rag+ft" and v["cheapest_not_worse"] == "rag+ft" and v["frontier"] == ["rag+ft"]
    assert v["cost_unit"] == "dollars per 1,000 queries"
    even = {e["replaces"]: e for e in v["break_even"]}
    # $0.36 of training; rag costs $0.0003 a query, rag+ft $0.0001: repaid after 1,800 queries.
    assert even["rag"]["queries"] == pytest.approx(1800) and even["prompt"]["queries"] == pytest.approx(3600)
    step = v["steps"][1]
    assert step.startswith("rag -> rag+ft buys +") and "the form of the answer more than its content" in step
    assert report["clustering"] == {"by": "group", "clusters": 10, "examples": 60, "groups": GROUPS}
    assert all("mcnemar_p" not in c for c in report["comparisons"])  # clustered: McNemar would ignore clusters
    text = markdown(_whole(report))
    assert text.index("## Verdict") < text.index("Quality with 95% bootstrap intervals")
    assert "Break-even" in text and "clustered" in text


def test_an_endpoint_pipeline_is_priced_by_its_tokens_and_a_fine_tuned_one_repays_against_it():
    costs = {"prompt_tokens_per_query": 1000.0, "completion_tokens_per_query": 10.0, "seconds_per_query_mean": 2.0}
    prices = {"cpu_hour": 3.6, "million_input_tokens": 0.15, "million_output_tokens": 0.6}
    searched = {"optimization": {"prompt_tokens": 2_000_000, "completion_tokens": 100_000, "seconds": 900.0}}
    billed = money({**costs, **searched}, prices, endpoint=True)
    assert billed["dollars_per_1000_queries"] == pytest.approx(0.156)  # 1000 x (1000 x 0.15 + 10 x 0.6) / 1e6
    assert billed["optimization_dollars"] == pytest.approx(0.36)  # 2M x 0.15 + 0.1M x 0.6, per million
    assert "dollars_per_hour" not in billed  # the machine waiting for the endpoint is not charged
    assert money(costs, {"cpu_hour": 3.6}, endpoint=True) == {}  # no token price: not priced
    api, tokens = {"million_input_tokens": 1.0, "million_output_tokens": 2.0}, {"prompt_tokens": 100_000}
    tokens["completion_tokens"] = 10_000
    predictions = {
        "api": _predictions("api", lambda n, i: GOLD[i], 2.0, 1000),
        "rag+ft": _predictions("rag+ft", lambda n, i: GOLD[i], 0.1, 300),
    }
    report = aggregate(
        predictions,
        {"rag+ft": {"training": {"seconds": 360.0}}},
        500,
        0,
        ("f1",),
        trained=["rag+ft"],
        prices={"api": api, "rag+ft": {"cpu_hour": 3.6}},
        endpoints=["api"],
    )
    # api: 1000 x (1000 x $1 + 3 x $2) / 1e6 = $1.006 per 1,000 queries; rag+ft: 0.1 s at $1 per 1,000 s
    # = $0.1 per 1,000; $0.36 of training repaid after 0.36 / (0.001006 - 0.0001) = 397.4 queries.
    assert report["pipelines"]["api"]["costs"]["dollars_per_1000_queries"] == pytest.approx(1.006)
    (even,) = report["verdict"]["break_even"]
    assert (even["pipeline"], even["replaces"]) == ("rag+ft", "api")
    assert even["queries"] == pytest.approx(0.36 / (0.001006 - 0.0001))
    searched = {**predictions, "api+dspy": _predictions("api+dspy", lambda n, i: GOLD[i], 2.0, 1200)}
    costs = {"rag+ft": {"training": {"seconds": 360.0}}, "api+dspy": {"optimization": {"seconds": 1.0, **tokens}}}
    prices = {"api": api, "api+dspy": api, "rag+ft": {"cpu_hour": 3.6}}
    both = aggregate(searched, costs, 500, 0, ("f1",), prices=prices, endpoints=["api", "api+dspy"])
    even = {e["replaces"]: e for e in both["verdict"]["break_even"]}
    # api+dspy's search: 100,000 x $1 + 10,000 x $2 per million = $0.12 spent once, so rag+ft's
    # training costs $0.24 more; api+dspy answers at $1.206 per 1,000: repaid after 0.24 / 0.001106.
    assert even["api+dspy"]["queries"] == pytest.approx(0.24 / (0.001206 - 0.0001))
    cheap = {**costs, "rag+ft": {"training": {"seconds": 36.0}}}  # $0.036 of training, under the $0.12 search
    both = aggregate(searched, cheap, 500, 0, ("f1",), prices=prices, endpoints=["api", "api+dspy"])
    assert {e["replaces"]: e["queries"] for e in both["verdict"]["break_even"]}["api+dspy"] == 0.0
    half = {**prices, "api": {"million_input_tokens": 1.0}}
    flags = aggregate(searched, costs, 200, 0, ("f1",), prices=half, endpoints=["api", "api+dspy"])["verdict"]["flags"]
    assert "api is billed for its input tokens only: prices.million_output_tokens is 0." in flags
    assert "tokens at the endpoint's price per million" in markdown(_whole({**report, "metric_names": ["f1"]}))
    assert not any("machine seconds, not dollars" in f for f in report["verdict"]["flags"])
    close = {"a": _predictions("a", _right_then_sentences, 0.2), "b": _predictions("b", _right_then_sentences, 0.195)}
    noise = aggregate(close, {"b": {"training": {"seconds": 10.0}}}, 200, 0, ("f1",), trained=["b"])
    assert noise["verdict"]["break_even"] == []  # 2.5% faster: within timing noise, no break-even
    unpriced = aggregate(predictions, {}, 200, 0, ("f1",), prices={"rag+ft": {"cpu_hour": 3.6}}, endpoints=["api"])
    assert unpriced["verdict"]["cost_unit"] == "machine seconds per query"
    assert any("no price applies to api" in f for f in unpriced["verdict"]["flags"])


def _whole(report):
    return {
        "name": "t",
        "generator": "g",
        "test_examples": 60,
        "metric_names": ["f1", "em", "acc"],
        "retrieval": {"line": ""},
        **report,
    }


def test_too_few_resamples_for_the_holm_family_are_named():
    predictions = {n: _predictions(n, _right_then_sentences) for n in ("a", "b", "c")}
    flags = aggregate(predictions, {}, 40, 0, ("f1",))["verdict"]["flags"]
    assert any("no Holm-adjusted p-value can fall below 0.075" in f for f in flags)
    assert not any("bootstrap resamples" in f for f in aggregate(predictions, {}, 2000, 0, ("f1",))["verdict"]["flags"])


def test_ragft_report_resamples_in_the_runs_order_and_gives_its_numbers(tmp_path):
    """Saved predictions come back sorted by id; the run resampled them in its own order.
    `ragft report` must use that order, or the same bootstrap seed draws other examples."""
    import json
    import random
    from dataclasses import asdict

    from ragft.runs import rerender

    order = random.Random(1).sample(IDS, len(IDS))
    made = {"a": _predictions("a", _right_then_sentences), "b": _predictions("b", _always_yes)}
    (tmp_path / "predictions").mkdir()
    for name, preds in made.items():
        rows = [json.dumps({"fingerprint": "k", **asdict(p)}) for p in preds]  # sorted, as files are
        (tmp_path / "predictions" / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    shuffled = {n: [next(p for p in preds if p.example_id == i) for i in order] for n, preds in made.items()}
    before = _whole(aggregate(shuffled, {}, 200, 0, ("f1",), groups=GROUPS))
    (tmp_path / "report.json").write_text(json.dumps({**before, "metric_names": ["f1"]}))
    (tmp_path / "config.json").write_text(json.dumps({"experiment": {"bootstrap_samples": 200, "seed": 0}}))
    rerender(tmp_path)
    after = json.loads((tmp_path / "report.json").read_text())
    assert after["example_order"] == order
    assert after["comparisons"] == before["comparisons"] and after["verdict"] == before["verdict"]
    assert {n: v["metrics"] for n, v in after["pipelines"].items()} == {
        n: v["metrics"] for n, v in before["pipelines"].items()
    }


def test_a_pipeline_trained_far_fewer_steps_is_flagged_and_the_report_shows_each_ones_training():
    def trained(steps: int, **extra) -> dict:
        t = {"records": steps * 4, "steps": steps, "tokens": steps * 900, "first_loss": 3.5, "last_loss": 0.5}
        return {"training": {**t, "truncated_records": 0, "seconds": steps * 9.0, **extra}}

    predictions = {n: _predictions(n, lambda n_, i: GOLD[i]) for n in ("rag+ft", "rag+ft-synth", "rag+ft-fb")}
    costs = {"rag+ft": trained(56), "rag+ft-synth": trained(8), "rag+ft-fb": trained(4, init_from="rag+ft")}
    report = aggregate(predictions, costs, 200, 0, ("f1", "em", "acc"), groups=GROUPS, trained=list(costs))
    short = [f for f in report["verdict"]["flags"] if f.startswith("Trained under 25% of")]
    # the feedback pipeline continues from rag+ft's adapter: its 4 steps are not its whole training
    assert short == [
        "Trained under 25% of rag+ft's 56 optimiser steps: rag+ft-synth (8). Their gaps to rag+ft mix "
        "training length with training data (finetune.epochs and finetune.max_steps set the steps)."
    ]
    text = markdown(_whole(report))
    assert "Fine-tuning: training records, optimiser steps" in text
    assert "| rag+ft-synth | 32 | 8 | 7,200 | 3.500 | 0.500 | 0 | 72 |" in text
    costs["rag+ft-synth"] = trained(20)
    report = aggregate(predictions, costs, 200, 0, ("f1", "em", "acc"), groups=GROUPS, trained=list(costs))
    assert not any(f.startswith("Trained under") for f in report["verdict"]["flags"])
