"""The self-contained HTML report: tables, embedded PNG plots, and the examples on which
two pipelines disagree, with prompt, retrieved passages and both outputs."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING, Any

from ragft.render import plots
from ragft.render.markdown import label, metric_names, retrieval_line, tables, title, verdict_parts

if TYPE_CHECKING:
    from ragft.types import Prediction

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; font-size: 0.9rem; }
th { background: #f3f3f3; }
img { max-width: 100%; display: block; margin: 0.5rem 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(28rem, 1fr)); gap: 1rem; }
.example { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; margin: 0.8rem 0; }
.win { border-left: 6px solid #2a9d8f; } .loss { border-left: 6px solid #e76f51; }
pre { white-space: pre-wrap; background: #f8f8f8; padding: 0.5rem; font-size: 0.8rem; }
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h2>{escape(caption)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def changed_examples(
    a: list[Prediction], b: list[Prediction], metric: str = "f1"
) -> tuple[list[tuple[Prediction, Prediction]], int, int, int]:
    """Pairs whose score differs, biggest change first, and the win/loss/tie counts of b over a."""
    pairs = list(zip(a, b))
    wins = sum(pb.scores[metric] > pa.scores[metric] for pa, pb in pairs)
    losses = sum(pb.scores[metric] < pa.scores[metric] for pa, pb in pairs)
    changed = sorted(
        (p for p in pairs if p[0].scores[metric] != p[1].scores[metric]),
        key=lambda p: -abs(p[1].scores[metric] - p[0].scores[metric]),
    )
    return changed, wins, losses, len(pairs) - wins - losses


def _example(pa: Prediction, pb: Prediction, passages: dict[str, str], metric: str) -> str:
    kind = "win" if pb.scores[metric] > pa.scores[metric] else "loss"
    gold = escape(" | ".join(pa.answers))
    parts = [f'<div class="example {kind}"><b>{escape(pa.example_id)}</b> &middot; gold: {gold}<ul>']
    for p in (pa, pb):
        score = f"{label(metric)} {100 * p.scores[metric]:.0f}"
        parts.append(f"<li><b>{escape(p.pipeline)}</b> ({score}): {escape(p.output)}</li>")
    parts.append("</ul>")
    for p in (pa, pb):
        if p.retrieved:
            shown = "".join(
                f"<p><i>{escape(cid)}</i><br>{escape(passages.get(cid, '(not in index)'))}</p>" for cid in p.retrieved
            )
            parts.append(f"<details><summary>{escape(p.pipeline)}: retrieved passages</summary>{shown}</details>")
        parts.append(f"<details><summary>{escape(p.pipeline)}: prompt</summary><pre>{escape(p.prompt)}</pre></details>")
    parts.append("</div>")
    return "".join(parts)


def render_html(
    report: dict[str, Any],
    predictions: dict[str, list[Prediction]],
    passages: dict[str, str],
    pair: tuple[str, str] | None = None,
    max_examples: int = 50,
) -> str:
    """One HTML page with everything embedded (no external files or scripts)."""
    names = list(report["pipelines"])
    body = [f"<h1>{escape(title(report))}</h1>"]
    for heading, lines in verdict_parts(report):
        items = "".join(f"<li>{escape(line)}</li>" for line in lines)
        body.append(f'<section class="verdict"><h2>{escape(heading)}</h2><ul>{items}</ul></section>')
    if report.get("verdict"):
        body.append(_img(plots.frontier_plot(report), "quality against cost, with the Pareto frontier"))
    body += [_table(*t) for t in tables(report)]
    body.append(f"<p>{escape(retrieval_line(report))}</p>")
    body.append('<h2>Plots</h2><div class="plots">')
    body.append(_img(plots.quality(report), "quality per pipeline"))
    body.append(
        _img(plots.quality_vs(report, "seconds_per_query_p50", "seconds per query (p50)"), "quality against latency")
    )
    body.append(
        _img(
            plots.quality_vs(report, "prompt_tokens_per_query", "prompt tokens per query"),
            "quality against prompt tokens",
        )
    )
    body.append("</div>")
    if len(names) >= 2:
        a, b = pair or (names[0], names[-1])
        metric = metric_names(report)[0]
        changed, wins, losses, ties = changed_examples(predictions[a], predictions[b], metric)
        body.append(f"<h2>{escape(b)} against {escape(a)}, example by example</h2>")
        body.append(_img(plots.win_loss(a, b, wins, losses, ties, label(metric)), "per-example wins and losses"))
        body.append(f"<p>{len(changed)} examples changed; the {min(len(changed), max_examples)} largest changes:</p>")
        body += [_example(pa, pb, passages, metric) for pa, pb in changed[:max_examples]]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title(report))}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
