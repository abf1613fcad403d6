"""The report as Markdown: the verdict, then tables of quality with bootstrap intervals,
paired differences, costs and the checks beside them (report.md, and what `ragft compare`
prints). `tables` gives the same tables to the HTML renderer."""

from __future__ import annotations

from typing import Any

from ragft.metrics import label, metric_names
from ragft.report.verdict import TIMING_NOISE, dollars, one_off, one_off_seconds


def _p_cell(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _ci(m: dict[str, float]) -> str:
    return f"{100 * m['mean']:.1f} ({100 * m['low']:.1f}-{100 * m['high']:.1f})"


def _mb(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.1f}" if n < 10 * 2**20 else f"{n / 2**20:.0f}"


FEW_CLUSTERS = 20
"""Below this many clusters a cluster bootstrap's intervals are rough (too few distinct resamples)."""

Table = tuple[str, list[str], list[list[str]]]
"""(caption, header, rows) of display strings, rendered as Markdown or HTML."""


def tables(report: dict[str, Any]) -> list[Table]:
    """The report's tables: quality and costs, paired differences, ladder steps."""
    names = metric_names(report)
    primary = label(names[0])
    priced = any("dollars_per_1000_queries" in v["costs"] for v in report["pipelines"].values())
    quality = []
    for name, v in report["pipelines"].items():
        c = v["costs"]
        train = one_off_seconds(c) or None
        once = one_off(c, priced=True)
        money = [dollars(c.get("dollars_per_1000_queries")), dollars(once if train else None)] if priced else []
        quality.append(
            [
                name,
                *(_ci(v["metrics"][m]) for m in names),
                f"{c['prompt_tokens_per_query']:.0f}",
                f"{c['completion_tokens_per_query']:.1f}",
                f"{c['seconds_per_query_p50']:.3f}",
                f"{c['seconds_per_query_p95']:.3f}",
                f"{c['queries_per_second']:.2f}",
                "-" if train is None else f"{train:.0f}",
                *money,
                _mb(c.get("adapter_bytes")),
                _mb(c.get("peak_rss_bytes")) + (f" (GPU {_mb(c['peak_gpu_bytes'])})" if "peak_gpu_bytes" in c else ""),
            ]
        )
    base = report.get("baseline")
    if base is not None:
        blank = ["-"] * (len(quality[0]) - 1 - len(names))
        quality.append([f"constant {base['answer']!r} (baseline)", *(_ci(base["metrics"][m]) for m in names), *blank])
    mcnemar = any("mcnemar_p" in d for d in report["comparisons"])
    diffs = [
        [
            d["from"],
            d["to"],
            label(d["metric"]),
            _diff(d),
            _p_cell(d["p_value"]),
            _p_cell(d["p_holm"]) if "p_holm" in d else "-",
            f"{100 * d['detectable']:.1f}" if "detectable" in d else "-",
            *([_p_cell(d["mcnemar_p"]) if "mcnemar_p" in d else "-"] if mcnemar else []),
        ]
        for d in report["comparisons"]
    ]
    steps = [
        [
            f"{st['from']} -> {st['to']}",
            f"{st['points']:+.1f} ({st['points_low']:+.1f} to {st['points_high']:+.1f})",
            _p_cell(st["p_holm"]) if "p_holm" in st else "-",
            f"{st['added_seconds_per_query']:+.3f}",
            f"{st['added_prompt_tokens_per_query']:+.0f}",
            f"{st['added_training_seconds']:+.0f}",
            _num(st["points_per_added_second"]),
            _num(st["points_per_100_added_tokens"]),
        ]
        for st in report.get("steps", [])
    ]
    spread = [
        [
            v,
            ", ".join(str(s) for s in e["seeds"]),
            ", ".join(f"{100 * x:.1f}" for x in e[names[0]]["per_seed"]),
            f"{100 * e[names[0]]['mean']:.1f} ± {100 * e[names[0]]['std']:.1f}",
            f"{100 * e[names[0]]['min']:.1f}-{100 * e[names[0]]['max']:.1f}",
        ]
        for v, e in report.get("seed_spread", {}).items()
    ]
    seeds_table: list[Table] = []
    if spread:
        seeds_table = [
            (
                f"Fine-tuned pipelines across training seeds ({primary})",
                ["pipeline", "seeds", f"{primary} per seed", "mean ± sd", "range"],
                spread,
            )
        ]
    clusters = report.get("clustering", {"by": "example"})
    resampled = (
        f"resampling whole clusters, each test example's {clusters['by']}: "
        f"{clusters['clusters']} clusters of {clusters['examples']} examples"
        if clusters["by"] != "example"
        else "resampling test examples"
    )
    if clusters["by"] != "example" and clusters["clusters"] < FEW_CLUSTERS:
        resampled += f"; with fewer than {FEW_CLUSTERS} clusters the intervals are rough"
    if "too_few" in clusters:
        few = clusters["too_few"]
        resampled += (
            f"; their {few['clusters']} {few['by']} cluster(s) are too few to resample, so where questions "
            "of one cluster succeed or fail together these intervals are too narrow"
        )
    billed = [n for n, v in report["pipelines"].items() if "dollars_per_million_input_tokens" in v["costs"]]
    rates = ""
    if priced:
        hourly = [n for n, v in report["pipelines"].items() if "dollars_per_hour" in v["costs"]]
        parts = ["machine time at its hourly price"] if hourly else []
        if billed:
            billing = "tokens at the endpoint's price per million (the machine waiting is free)"
            parts.append(f"{', '.join(billed)}: {billing}")
        rates = "; $: " + ", ".join(parts)
    family = report.get("pairs_in_family")
    holm_note = f"Holm-adjusted over the {family} pairs of pipelines, per metric" if family else "Holm-adjusted"
    return [
        (
            f"Quality with 95% bootstrap intervals ({resampled}), and costs per query (s/q: batch time / batch "
            "size; train s: training an adapter (and writing its training pairs) or optimizing a prompt, once"
            + rates
            + ")",
            [
                "pipeline",
                *(f"{label(m)} (95% CI)" for m in names),
                "prompt tok/q",
                "output tok/q",
                "s/q p50",
                "s/q p95",
                "q/s",
                "train s",
                *(["$ / 1k queries", "train $"] if priced else []),
                "adapter MB",
                "peak RSS MB",
            ],
            quality,
        ),
        (
            f"Paired differences (`to` minus `from`, same examples; paired bootstrap {resampled}; p {holm_note}; "
            "detectable: the smallest true difference found 80% of the time at alpha 0.05"
            + ("; exact McNemar for 0/1 metrics)" if mcnemar else ")"),
            [
                "from",
                "to",
                "metric",
                "difference (95% CI)",
                "p",
                "Holm p",
                "detectable",
                *(["McNemar p"] if mcnemar else []),
            ],
            diffs,
        ),
        (
            "What each step up the ladder buys and costs",
            [
                "step",
                f"{primary} points (95% CI)",
                "Holm p",
                "+ s/query (mean)",
                "+ prompt tokens/query",
                "+ training s",
                f"{primary} pts per added s/query",
                f"{primary} pts per 100 added tokens",
            ],
            steps,
        ),
        *seeds_table,
        *_optimization_table(report),
        *_training_table(report),
        *_synthesis_table(report),
        *_width_table(report),
        *_break_even_table(report),
        *_views_table(report),
        *_forgetting_table(report),
        *_error_table(report),
    ]


def _optimization_table(report: dict[str, Any]) -> list[Table]:
    """What DSPy's prompt optimization chose and cost, per optimized pipeline."""
    rows = []
    for name, v in report["pipelines"].items():
        o = v["costs"].get("optimization")
        if o is None:
            continue
        rows.append(
            [
                name,
                str(o["demos"]),
                str(o["candidates"]),
                f"{100 * o['validation_score']:.1f}",
                f"{o['calls']:,}",
                f"{o['prompt_tokens']:,}",
                f"{o['completion_tokens']:,}",
                f"{o['seconds']:.0f}",
            ]
        )
    if not rows:
        return []
    primary = label(metric_names(report)[0])
    header = ["pipeline", "demos", "prompts tried", f"validation {primary}", "calls", "prompt tokens"]
    caption = (
        "Prompt optimization (DSPy BootstrapFewShotWithRandomSearch on training questions, the same generator): "
        "what was chosen and what the search cost"
    )
    return [(caption, [*header, "output tokens", "seconds"], rows)]


def _training_table(report: dict[str, Any]) -> list[Table]:
    """How long each fine-tuned pipeline trained: records, optimiser steps, tokens, loss, seconds."""
    rows = []
    for name, v in report["pipelines"].items():
        t = v["costs"].get("training", {})
        if "steps" not in t:
            continue
        rows.append(
            [
                name,
                str(t["records"]),
                str(t["steps"]),
                f"{t['tokens']:,}",
                f"{t['first_loss']:.3f}",
                f"{t['last_loss']:.3f}",
                str(t["truncated_records"]),
                f"{t['seconds']:.0f}",
            ]
        )
    if not rows:
        return []
    caption = (
        "Fine-tuning: training records, optimiser steps, tokens trained on, loss at the first step and "
        "over the last five, records cut to finetune.max_length"
    )
    header = ["pipeline", "records", "steps", "tokens", "first loss", "last loss", "cut records", "seconds"]
    return [(caption, header, rows)]


def _synthesis_table(report: dict[str, Any]) -> list[Table]:
    """The synthetic training pairs of the pipelines trained on them: tried, kept per filter, cost, leakage."""
    from ragft.synth.filters import DROPS

    rows = []
    for name, v in report["pipelines"].items():
        s = v["costs"].get("synthesis")
        if s is None:
            continue
        overlap = s.get("test_overlap", {}).get("words")
        rows.append(
            [
                name,
                s["method"],
                s.get("generator", "-") + (f" (round trip: {s['checker']})" if s.get("checker") else ""),
                f"{s['chunks']} ({s['documents']} docs, {s['held_out_documents']} held out)",
                str(s["candidates"]),
                *(f"{100 * s['pass_rate'][d]:.0f}%" if d in s["pass_rate"] else "-" for d in DROPS),
                f"{s['kept']} ({100 * s['kept'] / max(1, s['candidates']):.0f}%)",
                f"{s['prompt_tokens'] + s['completion_tokens']:,}",
                f"{s['seconds']:.0f}",
                f"{s['pairs_per_second']:.2f}",
                "-" if overlap is None else str(overlap),
            ]
        )
    if not rows:
        return []
    header = ["pipeline", "method", "writer", "chunks", "tried", *(f"{d.replace('_', ' ')} kept" for d in DROPS)]
    caption = (
        "Synthetic training pairs (made from documents without test questions; writer '-': formed by rule, no "
        "model ran): the share "
        "of the pairs reaching each filter that pass it, cost (its seconds count in the one-off cost), and the "
        "longest word run any pair's question shares with a test question"
    )
    return [(caption, [*header, "kept", "tokens", "seconds", "kept/s", "test overlap (words)"], rows)]


def _width_table(report: dict[str, Any]) -> list[Table]:
    """How much wider the clustered intervals are than intervals that treat questions as independent."""
    clusters = report.get("clustering", {"by": "example"})
    if clusters["by"] == "example":
        return []
    primary = metric_names(report)[0]
    rows = []
    for name, v in report["pipelines"].items():
        c, q = v["metrics"][primary], v.get("per_question")
        if q is None:
            continue
        wide, narrow = c["high"] - c["low"], q["high"] - q["low"]
        ratio = f"{wide / narrow:.2f}" if narrow > 0 else "-"
        rows.append([name, f"{100 * wide:.1f}", f"{100 * narrow:.1f}", ratio])
    caption = (
        f"Width of the 95% intervals of {label(primary)}: clustered by {clusters['by']} "
        f"({clusters['clusters']} clusters) against per question (points)"
    )
    return [(caption, ["pipeline", "clustered", "per question", "ratio"], rows)] if rows else []


def _break_even_table(report: dict[str, Any]) -> list[Table]:
    """Queries after which each fine-tuned pipeline's training is repaid by what it saves per query."""
    evens = report.get("verdict", {}).get("break_even", [])
    if not evens:
        return []
    primary = label(metric_names(report)[0])
    rows = [
        [
            e["pipeline"],
            e["replaces"],
            f"{e['queries']:,.0f}",
            dollars(e["saved_per_query"] * 1000) + " / 1k"
            if e["unit"] == "dollars"
            else f"{e['saved_per_query']:.3f} s",
            f"{e['saved_prompt_tokens_per_query']:+.0f}",
            f"{e['points']:+.1f} (Holm p {_p_cell(e['p_holm'])})",
        ]
        for e in evens
    ]
    header = ["pipeline", "replaces", "break-even queries", "saved per query", "prompt tokens saved/q"]
    caption = (
        "Break-even: queries after which a pipeline's one-off cost (training and any pair writing, prompt "
        "optimization), less the one-off cost of the pipeline it replaces, is repaid by what each query saves "
        "against a pipeline it is not significantly worse than (a saving under "
        f"{TIMING_NOISE:.0%} of that pipeline's cost per query, within timing noise, is left out)"
    )
    return [(caption, [*header, f"{primary} change"], rows)]


def _views_table(report: dict[str, Any]) -> list[Table]:
    """Each model under no context, oracle context and retrieved context (primary metric)."""
    views = report.get("context_views")
    if not views:
        return []
    primary = metric_names(report)[0]
    contexts = list(next(iter(views["models"].values())))
    rows = [[model, *(_ci(by[c][primary]) for c in contexts)] for model, by in views["models"].items()]
    caption = (
        f"Each model shown no context, oracle context ({views['oracle']}) and retrieved context: "
        f"{label(primary)} (95% CI)"
    )
    return [(caption, ["model", *contexts], rows)]


def _forgetting_table(report: dict[str, Any]) -> list[Table]:
    """Base and fine-tuned models on general questions outside the task, and each change."""
    f = report.get("forgetting")
    if not f:
        return []
    rows = []
    for model, m in f["models"].items():
        change = f["changes"].get(model)
        delta = "-" if change is None else _diff(change["f1"])
        rows.append(
            [model, _ci(m["f1"]), _ci(m["em"]), delta, "-" if change is None else _p_cell(change["f1"]["p_value"])]
        )
    caption = f"Forgetting check: {f['n']} general questions outside the task, no context (95% CI)"
    return [(caption, ["model", "F1", "EM", "F1 change vs base", "p"], rows)]


def _diff(d: dict[str, float]) -> str:
    return f"{100 * d['mean']:+.1f} ({100 * d['low']:+.1f} to {100 * d['high']:+.1f})"


def _error_table(report: dict[str, Any]) -> list[Table]:
    """Failures grouped by kind per pipeline, for tasks whose predictions can fail (SQL)."""
    errors: dict[str, dict[str, int]] = report.get("errors", {})
    kinds = sorted({k for counts in errors.values() for k in counts})
    if not kinds:
        return []
    rows = [[v, *(str(counts.get(k, 0)) for k in kinds)] for v, counts in errors.items()]
    return [("Failed predictions by kind (test examples)", ["pipeline", *kinds], rows)]


def retrieval_line(report: dict[str, Any]) -> str:
    r = report["retrieval"]
    if "documents" not in r:
        return str(r.get("line", ""))
    recall = ", ".join(f"{k} {v:.3f}" for k, v in r.items() if k.startswith("recall"))
    size = f", index {_mb(r['index_bytes'])} MB" if "index_bytes" in r else ""
    left_out = [
        f"{n} {what} skipped"
        for n, what in ((r.get("empty_documents", 0), "empty"), (len(r.get("unreadable_skipped", [])), "unreadable"))
        if n
    ]
    left = f" ({', '.join(left_out)})" if left_out else ""
    if not recall:
        return f"A corpus of {r['documents']} documents{left}, {r['chunks']} chunks; no pipeline retrieves."
    return f"Retrieval over {r['documents']} documents{left}, {r['chunks']} chunks{size}: {recall}."


def title(report: dict[str, Any]) -> str:
    return f"{report['name']}: {report['generator']} on {report['test_examples']} test examples"


def verdict_parts(report: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The verdict as (heading, lines): what to use, warnings, what each step buys and costs."""
    v = report.get("verdict")
    if not v:
        return []
    parts = [("Verdict", v["lines"])]
    flags = list(v["flags"])
    if report.get("left_out"):
        flags.append(
            f"Not in this report: {', '.join(report['left_out'])} (this run made only the pipelines named "
            "with --pipeline, and the run folder holds no finished predictions of these under their current settings)."
        )
    if flags:
        parts.append(("Warnings", flags))
    if v["steps"]:
        parts.append(("What each step buys and costs", v["steps"]))
    return parts


def verdict_markdown(report: dict[str, Any]) -> str:
    """The verdict section, printed by `ragft compare` and put at the top of report.md."""
    out = []
    for heading, lines in verdict_parts(report):
        out += [f"## {heading}", "", *(f"- {line}" for line in lines), ""]
    return "\n".join(out) + ("\n" if out else "")


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the verdict, then the tables."""
    body = "".join(markdown_table(*table) for table in tables(report))
    return f"# {title(report)}\n\n{verdict_markdown(report)}{body}{retrieval_line(report)}\n"


def markdown_table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    """A captioned Markdown table followed by a blank line."""
    lines = [f"{caption}:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"


def retrieval_markdown(report: dict[str, Any]) -> str:
    """A retrieval evaluation's report (`ragft eval-retrieval`) as Markdown."""

    def ci(x: dict[str, float], sign: str = "") -> str:
        return f"{x['mean']:{sign}.4f} ({x['low']:{sign}.4f} to {x['high']:{sign}.4f})"

    names = list(next(iter(report["pipelines"].values()))["metrics"])
    quality = [
        [pipeline, *(ci(v["metrics"][m]) for m in names), f"{1e3 * v['costs']['seconds_per_query']:.1f}"]
        for pipeline, v in report["pipelines"].items()
    ]
    diffs = [[d["from"], d["to"], d["metric"], ci(d, "+"), f"{d['p_value']:.3f}"] for d in report["comparisons"]]
    text = f"# {report['name']}: retrieval over {report['documents']} documents, {report['queries']} queries\n\n"
    text += markdown_table("Quality (95% bootstrap CI) and speed", ["retriever", *names, "ms/query"], quality)
    if diffs:
        text += markdown_table("Paired differences (to - from)", ["from", "to", "metric", "mean (95% CI)", "p"], diffs)
    if report["unknown_qrels"]:
        text += f"{len(report['unknown_qrels'])} qrels rows point at unknown ids.\n"
    return text


def sweep_markdown(result: dict[str, Any]) -> str:
    """A sweep's settings, best validation loss first, as a Markdown table (sweep.md)."""
    rows = [
        [
            " ".join(r["settings"]),
            f"{r['validation_loss']:.4f}",
            str(r.get("best_step", "-")),
            str(r.get("steps", "-")),
            f"{r.get('seconds', 0):.0f}",
        ]
        for r in result["rows"]
    ]
    caption = (
        f"Sweep of {result['pipeline']}, best first (validation loss on {result['validation_fraction']:.0%} "
        "of the training records; test examples are never looked at)"
    )
    return markdown_table(caption, ["settings", "validation loss", "best step", "steps", "train s"], rows)
