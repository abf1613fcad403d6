"""Report figures (matplotlib, rendered off-screen to PNG bytes).

Figures are made with `matplotlib.figure.Figure`, not pyplot, so rendering a report never
touches the caller's pyplot state or backend (a notebook's inline plots keep working).
"""

from __future__ import annotations

import io
from typing import Any

from ragft.metrics import label as metric_label
from ragft.metrics import metric_names


def _figure(width: float = 6.0, height: float = 3.6) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _primary(report: dict[str, Any]) -> tuple[list[str], list[float], list[list[float]]]:
    names = list(report["pipelines"])
    primary = metric_names(report)[0]
    scores = [report["pipelines"][n]["metrics"][primary] for n in names]
    means = [100 * m["mean"] for m in scores]
    err = [[100 * (m["mean"] - m["low"]) for m in scores], [100 * (m["high"] - m["mean"]) for m in scores]]
    return names, means, err


def quality(report: dict[str, Any]) -> bytes:
    """Each metric per pipeline (F1 and EM for QA) with 95% bootstrap intervals."""
    names = list(report["pipelines"])
    fig, ax = _figure()
    metrics = metric_names(report)
    width = 0.76 / len(metrics)
    for j, metric in enumerate(metrics):
        offset = (j - (len(metrics) - 1) / 2) * width
        m = [report["pipelines"][n]["metrics"][metric] for n in names]
        ax.bar(
            [i + offset for i in range(len(names))],
            [100 * x["mean"] for x in m],
            width,
            yerr=[[100 * (x["mean"] - x["low"]) for x in m], [100 * (x["high"] - x["mean"]) for x in m]],
            capsize=4,
            label=metric_label(metric),
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("score on the test split (%)")
    ax.set_title("Quality per pipeline (95% bootstrap intervals)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def quality_vs(report: dict[str, Any], cost: str, label: str) -> bytes:
    """The primary metric with intervals against one per-query cost (e.g. latency, prompt tokens)."""
    names, means, err = _primary(report)
    x = [report["pipelines"][n]["costs"][cost] for n in names]
    fig, ax = _figure()
    ax.errorbar(x, means, yerr=err, fmt="o", capsize=4)
    for xi, yi, name in zip(x, means, names):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel(label)
    ax.set_ylabel(f"{metric_label(metric_names(report)[0])} (%)")
    ax.set_title(f"Quality against {label}")
    ax.grid(alpha=0.3)
    return _png(fig)


def frontier_plot(report: dict[str, Any]) -> bytes:
    """The primary metric against cost per query (dollars where priced, else machine seconds),
    with the Pareto frontier of the verdict drawn through its pipelines."""
    names, means, err = _primary(report)
    v = report["verdict"]
    priced = v["cost_unit"].startswith("dollars")
    costs = [report["pipelines"][n]["costs"] for n in names]
    x = [c["dollars_per_1000_queries"] if priced else c["seconds_per_query_mean"] for c in costs]
    fig, ax = _figure()
    on = set(v["frontier"])
    for xi, yi, lo, hi, name in zip(x, means, *err, names):
        ax.errorbar([xi], [yi], yerr=[[lo], [hi]], fmt="o", capsize=4, color="#2a9d8f" if name in on else "#999999")
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(6, 6))
    line = sorted((xi, yi) for xi, yi, name in zip(x, means, names) if name in on)
    ax.plot([p[0] for p in line], [p[1] for p in line], "-", color="#2a9d8f", alpha=0.6, label="Pareto frontier")
    ax.set_xlabel(v["cost_unit"])
    ax.set_ylabel(f"{metric_label(metric_names(report)[0])} (%)")
    ax.set_title(f"Quality against cost; best {v['best']}, cheapest as good {v['cheapest_not_worse']}")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def win_loss(a: str, b: str, wins: int, losses: int, ties: int, metric: str = "F1") -> bytes:
    """How many examples `b` scores better, worse or the same as `a` on (by `metric`)."""
    fig, ax = _figure(6.0, 1.6)
    left = 0
    for count, name, color in (
        (wins, f"{b} better", "#2a9d8f"),
        (ties, "same", "#bbbbbb"),
        (losses, f"{a} better", "#e76f51"),
    ):
        ax.barh([0], [count], left=left, color=color, label=f"{name}: {count}")
        left += count
    ax.set_yticks([])
    ax.set_xlim(0, max(1, left))
    ax.set_title(f"{b} against {a}: test examples won, tied, lost ({metric})")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    return _png(fig)
