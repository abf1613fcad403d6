"""The review page's monitor view: the served pipeline's windows as charts, its drift alerts
and the retrain signal. Drawn on the server as inline SVG (the review page's
Content-Security-Policy runs no script); every text from the store is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING

from ragft.drift import KINDS
from ragft.feedback.windows import alert_lines, time_text
from ragft.serve.review import page

if TYPE_CHECKING:
    from ragft.feedback.windows import Window
    from ragft.monitor import Monitoring

WIDTH, HEIGHT, PAD = 640, 170, 36
SERIES = ("#1f6fb4", "#6a6a6a")
ALERT = "#d62728"
REFERENCE = "#2e7d32"

STYLE = """
figure { margin: 1rem 0 1.5rem; }
figcaption { font-weight: 600; margin-bottom: 0.3rem; }
.legend { color: #555; font-size: 0.85rem; }
table.windows { border-collapse: collapse; font-size: 0.85rem; }
table.windows td, table.windows th { border-bottom: 1px solid #ddd; padding: 0.15rem 0.5rem; text-align: right; }
.alert { background: #fdecea; padding: 0.4rem 0.8rem; border-radius: 4px; margin: 0.3rem 0; }
pre { background: #f3f6fa; padding: 0.6rem; border-radius: 4px; }
"""


def monitor_page(pipeline: str, m: Monitoring | None) -> str:
    """The monitor view of `m` (None: this server was started without monitoring)."""
    head = f'<h1>Monitor <code>{escape(pipeline)}</code></h1><p><a href="/review">Review answers</a></p>'
    if m is None:
        return page(f"ragft monitor: {pipeline}", head + "<p>This server was started without monitoring.</p>")
    parts = [f"<style>{STYLE}</style>", head, _summary(m)]
    parts += [f'<p class="alert" role="alert">{escape(line)}</p>' for line in alert_lines(m.alerts)]
    if not m.alerts and m.windows:
        parts.append(f"<p>No drift alert (the chance of any false alarm over all windows is at most {m.alpha:g}).</p>")
    parts += [f'<p class="legend">Note: {escape(n)}</p>' for n in m.notes]
    if m.windows:
        alerted = {kind: {a.window for a in m.alerts if a.kind == kind} for kind in KINDS}
        w = m.windows
        parts.append(
            _chart(
                "novelty",
                "Question novelty (mean, against the training questions)",
                w,
                [("novelty", [x.novelty for x in w])],
                alerted["questions"],
                reference=m.reference["held_out_novelty"],
            )
        )
        parts.append(
            _chart(
                "quality",
                "Share of judged answers judged wrong (rated down, or corrected without a rating)",
                w,
                [("down share", [x.down_share for x in w])],
                alerted["quality"],
            )
        )
        parts.append(
            _chart(
                "retrieval",
                "Retriever's top score (median)",
                w,
                [("top score", [x.top_score for x in w])],
                alerted["retrieval"],
            )
        )
        parts.append(
            _chart(
                "latency",
                "Latency (seconds)",
                w,
                [("p50", [x.latency_p50 for x in w]), ("p95", [x.latency_p95 for x in w])],
                set(),
            )
        )
        parts.append(_table(w))
    if m.retrain is not None:
        parts.append(
            "<h2>Time to retrain</h2><p>" + escape("; ".join(m.retrain.reasons)) + ". Add this pipeline to the "
            f"run's config:</p><pre>{escape(m.retrain.table)}</pre><p>then train and compare it:</p>"
            f"<pre>{escape(m.retrain.command)}</pre>"
        )
    return page(f"ragft monitor: {pipeline}", "\n".join(parts))


def _summary(m: Monitoring) -> str:
    f, r = m.feedback, m.reference
    exchanges = sum(w.exchanges for w in m.windows)
    return (
        f"<p>{exchanges} exchanges in windows of {escape(m.window)}; {f['up']} rated up, {f['down']} down, "
        f"{f['corrected']} corrected. Reference: {r['questions']} training questions in {r['clusters']} "
        f"clusters (held-out novelty {r['held_out_novelty']:.3f}).</p>"
    )


def _chart(
    name: str,
    title: str,
    windows: Sequence[Window],
    series: Sequence[tuple[str, Sequence[float | None]]],
    alerted: set[int],
    reference: float | None = None,
) -> str:
    """A line chart, one point a window; alerted windows ringed in red; a dashed reference line."""
    values = [v for _, vs in series for v in vs if v is not None] + ([reference] if reference is not None else [])
    if not values:
        return f"<figure><figcaption>{escape(title)}</figcaption><p>No values yet.</p></figure>"
    low, high = min(0.0, min(values)), max(values)
    high = high if high > low else low + 1.0
    n = len(windows)

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / max(1, n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return HEIGHT - PAD + (v - low) / (high - low) * (2 * PAD - HEIGHT)

    shapes = [
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
        f'<line x1="{PAD}" y1="{PAD / 2}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
        f'<text x="{PAD - 4}" y="{y(high) + 4:.1f}" text-anchor="end" font-size="10">{high:.3g}</text>',
        f'<text x="{PAD - 4}" y="{y(low) + 4:.1f}" text-anchor="end" font-size="10">{low:.3g}</text>',
    ]
    for i, w in enumerate(windows):
        if n <= 12 or i % max(1, n // 12) == 0 or i == n - 1:
            shapes.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle" font-size="10">{w.index}</text>'
            )
    if reference is not None:
        shapes.append(
            f'<line class="reference" x1="{PAD}" y1="{y(reference):.1f}" x2="{WIDTH - PAD}" y2="{y(reference):.1f}" '
            f'stroke="{REFERENCE}" stroke-dasharray="6 4" stroke-width="2"/>'
        )
    for (label, vs), colour in zip(series, SERIES):
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            shapes.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for i, v in enumerate(vs):
            if v is None:
                continue
            ring = windows[i].index in alerted
            fill = ALERT if ring else colour
            r = 6 if ring else 3.5
            cls = ' class="alerted"' if ring else ""
            shapes.append(
                f'<circle{cls} cx="{x(i):.1f}" cy="{y(v):.1f}" r="{r}" fill="{fill}">'
                f"<title>window {windows[i].index}: {escape(label)} {v:.3g}</title></circle>"
            )
    legend = ", ".join(escape(label) for label, _ in series)
    more = "; dashed: the training questions' held-out novelty" if reference is not None else ""
    ring = "; red: a window that alerted" if alerted else ""
    return (
        f'<figure id="chart-{name}"><figcaption>{escape(title)}</figcaption>'
        f'<svg role="img" aria-label="{escape(title)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">{"".join(shapes)}</svg>'
        f'<div class="legend">by window: {legend}{more}{ring}</div></figure>'
    )


def _fixed(value: float | None, places: int) -> str:
    return f"{value:.{places}f}" if value is not None else "-"


def _table(windows: Sequence[Window]) -> str:
    head = "<tr><th>window</th><th>from</th><th>exchanges</th><th>up</th><th>down</th><th>corrected</th>" + (
        "<th>novelty</th><th>top score</th><th>p50 s</th><th>p95 s</th></tr>"
    )
    rows = []
    for w in windows:
        state = "" if w.complete else " (open)"
        cells = [f"{w.index}{state}", time_text(w.start), w.exchanges, w.up, w.down, w.corrected]
        cells += [_fixed(w.novelty, 3), _fixed(w.top_score, 3), _fixed(w.latency_p50, 2), _fixed(w.latency_p95, 2)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="windows">{head}{"".join(rows)}</table>'


def monitor_problem_page(message: str) -> str:
    return page(
        "ragft monitor: not available", f'<p class="problem">{escape(message)}</p><p><a href="/review">Back</a></p>'
    )
