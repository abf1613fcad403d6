"""The verdict: which pipeline to use. Cost in money where prices are set, the pipelines on
the quality-cost Pareto frontier, the best one, the cheapest one not significantly worse
than the best (Holm-adjusted), the queries after which a fine-tuned pipeline's training
is repaid, and a sentence per step up the ladder saying what it buys and costs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ragft.metrics import label
from ragft.stats import ALPHA

ONE_OFF = ("training", "optimization", "synthesis")
"""What a pipeline spends once, before its first query: training an adapter, optimizing a
prompt, writing its training pairs."""
TIMING_NOISE = 0.05
"""A per-query saving under this share of the replaced pipeline's cost is not counted for a
break-even: measured seconds per query vary by about this much between runs."""
SHORT_TRAINING = 0.25
"""A fine-tuned pipeline trained fewer optimiser steps than this share of the longest-trained
one's is flagged: the gap between them mixes training length with training data."""
MONEY = (
    "dollars_per_hour",
    "dollars_per_million_input_tokens",
    "dollars_per_million_output_tokens",
    "dollars_per_1000_queries",
    *(f"{stage}_dollars" for stage in ONE_OFF),
)
"""The cost entries `money` adds: priced afresh whenever a report is made."""


def money(costs: dict[str, Any], prices: dict[str, float] | None, endpoint: bool = False) -> dict[str, float]:
    """Dollars per 1,000 queries and the one-off cost (empty: no price set).

    A local pipeline is priced by the machine time measured and the hourly price of the
    device it ran on; a pipeline whose generator sits behind an endpoint by the tokens it
    sent and got back at the endpoint's prices per million (what the endpoint bills; the
    machine waiting for it is not charged)."""
    prices = prices or {}
    if endpoint:
        per_in, per_out = prices.get("million_input_tokens", 0.0), prices.get("million_output_tokens", 0.0)
        if per_in <= 0 and per_out <= 0:
            return {}

        def billed(prompt_tokens: float, completion_tokens: float) -> float:
            return (prompt_tokens * per_in + completion_tokens * per_out) / 1e6

        out = {
            "dollars_per_million_input_tokens": per_in,
            "dollars_per_million_output_tokens": per_out,
            "dollars_per_1000_queries": 1000
            * billed(costs["prompt_tokens_per_query"], costs["completion_tokens_per_query"]),
        }
        if "optimization" in costs:  # an endpoint pipeline trains nothing; its prompt search is billed calls
            o = costs["optimization"]
            out["optimization_dollars"] = billed(o["prompt_tokens"], o["completion_tokens"])
        return out
    rate = prices.get("gpu_hour", 0.0) if "peak_gpu_bytes" in costs else prices.get("cpu_hour", 0.0)
    if rate <= 0:
        return {}
    out = {
        "dollars_per_hour": rate,
        "dollars_per_1000_queries": 1000 * costs["seconds_per_query_mean"] * rate / 3600,
    }
    for stage in ONE_OFF:
        if stage in costs:
            out[f"{stage}_dollars"] = costs[stage]["seconds"] * rate / 3600
    return out


def _per_query(costs: dict[str, Any], priced: bool) -> float:
    return costs["dollars_per_1000_queries"] / 1000 if priced else costs["seconds_per_query_mean"]


def one_off_seconds(costs: dict[str, Any]) -> float:
    """Machine seconds a pipeline spends once, before its first query (`ONE_OFF`)."""
    return sum(costs[stage]["seconds"] for stage in ONE_OFF if stage in costs)


def one_off(costs: dict[str, Any], priced: bool) -> float:
    """A pipeline's one-off cost: dollars where priced, else machine seconds."""
    if not priced:
        return one_off_seconds(costs)
    return sum(costs.get(f"{stage}_dollars", 0.0) for stage in ONE_OFF)


def frontier(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names whose (quality, cost) no other point beats: as good or better and as cheap or
    cheaper, better in one of the two."""
    return [
        n
        for n, (q, c) in points.items()
        if not any((q2 >= q and c2 <= c) and (q2 > q or c2 < c) for m, (q2, c2) in points.items() if m != n)
    ]


def break_even(training_cost: float, saved_per_query: float) -> float | None:
    """Queries after which a one-off training cost (beyond what the pipeline replaced spent
    once) is repaid by what each query saves (None where it saves nothing)."""
    return training_cost / saved_per_query if saved_per_query > 0 else None


def _row(rows: Sequence[dict[str, Any]], a: str, b: str) -> tuple[dict[str, Any], float]:
    """The paired test of b against a, and the sign that turns its difference into b - a."""
    for r in rows:
        if (r["from"], r["to"]) == (a, b):
            return r, 1.0
        if (r["from"], r["to"]) == (b, a):
            return r, -1.0
    raise KeyError((a, b))


def _p_value(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def dollars(d: float | None, sign: bool = False) -> str:
    """An amount of dollars for reports: cents above a dime, four decimals below; '-' for none."""
    if d is None:
        return "-"
    text = f"${abs(d):,.2f}" if abs(d) >= 0.1 else f"${abs(d):.4f}"
    return ("-" if d < 0 else "+" if sign else "") + text


def verdict(
    pipelines: dict[str, Any],
    pairwise: Sequence[dict[str, Any]],
    steps: Sequence[dict[str, Any]],
    metrics: Sequence[str],
    baseline: dict[str, Any] | None,
    warnings: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The verdict block of a report. `pairwise` is every pair's primary-metric test with
    its Holm-adjusted p-value (`p_holm`); costs are in dollars when every pipeline is priced,
    else in machine seconds."""
    primary = metrics[0]
    names = list(pipelines)
    priced = all("dollars_per_1000_queries" in v["costs"] for v in pipelines.values())
    quality = {n: pipelines[n]["metrics"][primary]["mean"] for n in names}
    costs = {n: pipelines[n]["costs"] for n in names}
    per_query = {n: _per_query(costs[n], priced) for n in names}
    best = max(names, key=lambda n: quality[n])
    close = [best] + [n for n in names if n != best and _row(pairwise, best, n)[0]["p_holm"] >= ALPHA]
    cheapest = min(close, key=lambda n: (per_query[n], -quality[n]))
    on_frontier = frontier({n: (quality[n], per_query[n]) for n in names})
    unit = "dollars per 1,000 queries" if priced else "machine seconds per query"
    lines = [
        f"Best: {best} ({label(primary)} {100 * quality[best]:.1f}).",
        f"Cheapest not significantly worse than {best} (Holm-adjusted p >= {ALPHA} against it): "
        + (f"{cheapest} ({label(primary)} {100 * quality[cheapest]:.1f})." if cheapest != best else f"{best} itself."),
        f"On the quality-cost frontier ({unit}): {', '.join(on_frontier)}.",
    ]
    detect = [r["detectable"] for r in pairwise if not math.isnan(r.get("detectable", math.nan))]
    if detect:
        lines.append(
            f"Smallest differences these test questions can show (80% power, alpha 0.05, paired): "
            f"{100 * min(detect):.1f} to {100 * max(detect):.1f} {label(primary)} points; "
            "smaller true differences may go unseen."
        )
    flags = [w["message"] + "." for w in warnings]
    for n in names:
        rates = {side: costs[n].get(f"dollars_per_million_{side}_tokens") for side in ("input", "output")}
        free = [side for side, rate in rates.items() if rate == 0.0]
        if free:
            flags.append(
                f"{n} is billed for its {'input' if free == ['output'] else 'output'} tokens only: "
                f"prices.million_{free[0]}_tokens is 0."
            )
    flags += _short_training(costs)
    unpriced = [n for n in names if "dollars_per_1000_queries" not in costs[n]]
    if unpriced and len(unpriced) < len(names):
        flags.append(
            f"Costs are compared in machine seconds, not dollars: no price applies to {', '.join(unpriced)} "
            "(prices.cpu_hour or gpu_hour for the machine it runs on; prices.million_input_tokens and "
            "million_output_tokens for a generator behind an endpoint)."
        )
    if baseline is not None:
        below = [r["pipeline"] for r in baseline["comparisons"] if not r["above"]]
        b = baseline["metrics"][primary]["mean"]
        if below:
            flags.append(
                f"Not significantly above answering {baseline['answer']!r} to every question "
                f"({label(primary)} {100 * b:.1f}, the most frequent training answer): {', '.join(below)}."
            )
    evens = []
    for t in names:
        if not one_off_seconds(costs[t]):
            continue
        for u in names:
            if u == t:
                continue
            extra = one_off(costs[t], priced) - one_off(costs[u], priced)  # u's own one-off cost is spent too
            saved = per_query[u] - per_query[t]
            if saved < TIMING_NOISE * per_query[u]:
                continue  # no saving, or one within what timings vary by between runs
            queries = break_even(max(0.0, extra), saved)  # 0: cheaper once and per query, from the first
            if queries is None:
                continue
            row, sign = _row(pairwise, u, t)
            if sign * row["mean"] < 0 and row["p_holm"] < ALPHA:
                continue  # significantly worse: it cannot replace u
            evens.append(
                {
                    "pipeline": t,
                    "replaces": u,
                    "queries": queries,
                    "saved_per_query": per_query[u] - per_query[t],
                    "saved_prompt_tokens_per_query": costs[u]["prompt_tokens_per_query"]
                    - costs[t]["prompt_tokens_per_query"],
                    "unit": "dollars" if priced else "seconds",
                    "points": 100 * sign * row["mean"],
                    "p_holm": row["p_holm"],
                }
            )
    return {
        "best": best,
        "cheapest_not_worse": cheapest,
        "frontier": on_frontier,
        "cost_unit": unit,
        "lines": lines,
        "flags": flags,
        "steps": [_step_sentence(s, pipelines, metrics, priced) for s in steps],
        "break_even": evens,
    }


def _short_training(costs: dict[str, dict[str, Any]]) -> list[str]:
    """A flag naming the fine-tuned pipelines trained under `SHORT_TRAINING` of the steps of the
    longest-trained one (supervised training from the base model only: a feedback pipeline
    continues from its start's adapter)."""
    trained = {n: c["training"] for n, c in costs.items() if "steps" in c.get("training", {})}
    steps = {n: t["steps"] for n, t in trained.items() if "init_from" not in t and t.get("objective", "sft") == "sft"}
    if len(steps) < 2:
        return []
    longest = max(steps, key=lambda n: steps[n])
    short = [n for n in steps if steps[n] < SHORT_TRAINING * steps[longest]]
    if not short:
        return []
    named = ", ".join(f"{n} ({steps[n]})" for n in short)
    return [
        f"Trained under {SHORT_TRAINING:.0%} of {longest}'s {steps[longest]} optimiser steps: {named}. Their gaps "
        f"to {longest} mix training length with training data (finetune.epochs and finetune.max_steps set the steps)."
    ]


def _step_sentence(step: dict[str, Any], pipelines: dict[str, Any], metrics: Sequence[str], priced: bool) -> str:
    """One sentence: what a step up the ladder buys (and whether content or form) and costs."""
    primary, by = metrics[0], step["by_metric"]
    g = by[primary]
    up = g["p_holm"] < ALPHA and g["points"] > 0
    down = g["p_holm"] < ALPHA and g["points"] < 0
    gain = f"{g['points']:+.1f} {label(primary)} ({g['low']:+.1f} to {g['high']:+.1f}, Holm {_p_value(g['p_holm'])})"
    if up:
        buys = f"buys {gain}"
    elif down:
        buys = f"costs quality: {gain}"
    else:
        buys = f"buys no significant change: {gain}"
    if "acc" in by and (up or down or by["acc"]["p_holm"] < ALPHA):
        a = by["acc"]
        moved = a["p_holm"] < ALPHA
        lenient = f"lenient match {a['points']:+.1f} (Holm {_p_value(a['p_holm'])})"
        if up and moved and a["points"] > 0:
            buys += f": more right answers, {lenient}"
        elif up:
            buys += (
                f": the form of the answer more than its content (the {lenient} did not rise significantly: "
                "the right words were mostly in the answers before)"
            )
        elif moved and a["points"] > 0:
            buys += f", though the right answer appears more often ({lenient}) in a form {label(primary)} misses"
        elif moved:
            buys += f"; {lenient}"
    cb, ca = pipelines[step["to"]]["costs"], pipelines[step["from"]]["costs"]
    seconds, tokens = step["added_seconds_per_query"], step["added_prompt_tokens_per_query"]
    cost = f"{seconds:+.3f} s/query, {tokens:+.0f} prompt tokens/query"
    if priced:
        extra = cb["dollars_per_1000_queries"] - ca["dollars_per_1000_queries"]
        cost += f" ({dollars(extra, sign=True)} per 1,000 queries)"
    if step["added_training_seconds"] > 0:
        what = "training" if "training" in cb else "prompt optimization"
        if "synthesis" in cb:
            what = "writing training pairs and training"
        cost += f", {step['added_training_seconds']:.0f} s of {what}"
        if priced:
            cost += f" ({dollars(one_off(cb, priced))})"
    return f"{step['from']} -> {step['to']} {buys}; it costs {cost}."
