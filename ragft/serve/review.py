"""The review page: recent answers with their passages, a rating and a correction box per
answer. Server-rendered HTML with no script; everything the model or a user wrote goes
into the page escaped, so it shows as text."""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape

from ragft.feedback.store import Exchange, Feedback

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
"""The page's Content-Security-Policy: no script of any origin runs, forms post back here only."""

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
article { border: 1px solid #ccc; border-radius: 6px; padding: 0.8rem 1rem; margin: 1rem 0; }
.meta { color: #666; font-size: 0.85rem; margin: 0; }
.question { font-size: 1.05rem; margin: 0.4rem 0; }
.answer { background: #f3f6fa; padding: 0.4rem 0.6rem; border-radius: 4px; white-space: pre-wrap; }
.given { color: #264; font-size: 0.9rem; }
.notice { background: #e8f5e9; padding: 0.5rem 0.8rem; border-radius: 4px; }
.problem { background: #fdecea; padding: 0.5rem 0.8rem; border-radius: 4px; }
textarea { width: 100%; min-height: 2.5rem; }
details li { margin: 0.3rem 0; white-space: pre-wrap; }
label { margin-right: 1rem; }
"""


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def review_page(
    pipeline: str,
    exchanges: Sequence[Exchange],
    feedback: dict[str, list[Feedback]],
    saved: str | None = None,
    max_correction: int = 4000,
) -> str:
    """The page listing `exchanges` (newest first) with the feedback each has had."""
    parts = [
        f"<h1>Review the answers of <code>{escape(pipeline)}</code></h1>",
        '<p><a href="/review/monitor">The pipeline over time: drift and when to retrain</a></p>',
    ]
    if saved:
        parts.append(f'<p class="notice" role="status">Saved your feedback on {escape(saved)}.</p>')
    if not exchanges:
        parts.append("<p>No answers yet: questions sent to <code>/v1/chat/completions</code> appear here.</p>")
    else:
        parts.append(
            f"<p>{len(exchanges)} most recent answers, newest first. Rate each, and where it is wrong write "
            "the answer it should have given: corrections become training data.</p>"
        )
    for x in exchanges:
        parts.append(_exchange(x, feedback.get(x.id, []), max_correction))
    return page(f"ragft review: {pipeline}", "\n".join(parts))


def _exchange(x: Exchange, given: list[Feedback], max_correction: int) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x.created))
    passages = "".join(f"<li><b>{escape(p.id)}</b>: {escape(p.text)}</li>" for p in x.passages)
    shown = (
        f"<details><summary>{len(x.passages)} passages shown to the model</summary><ol>{passages}</ol></details>"
        if x.passages
        else ""
    )
    history = "".join(f"<li>{_feedback(f)}</li>" for f in given)
    history = f'<ul class="given">{history}</ul>' if history else ""
    xid = escape(x.id)
    return f"""<article id="x-{xid}" data-exchange="{xid}">
<p class="meta">{escape(when)} · {escape(x.model)} · {x.latency_s:.2f} s · exchange {xid}</p>
<p class="question">{escape(x.question)}</p>
<p class="answer">{escape(x.answer)}</p>
{shown}{history}
<form method="post" action="/review">
<input type="hidden" name="exchange_id" value="{xid}">
<label><input type="radio" name="rating" value="up"> 👍 right</label>
<label><input type="radio" name="rating" value="down"> 👎 wrong</label>
<p><label>Corrected answer<br><textarea name="correction" maxlength="{max_correction}"></textarea></label></p>
<p><label>Reviewer <input name="reviewer" maxlength="200"></label>
<button type="submit">Save feedback</button></p>
</form>
</article>"""


def _feedback(f: Feedback) -> str:
    parts = []
    if f.rating:
        parts.append("👍" if f.rating == "up" else "👎")
    if f.correction:
        parts.append(f"correction: “{escape(f.correction)}”")
    if f.reviewer:
        parts.append(f"by {escape(f.reviewer)}")
    return " ".join(parts)


def login_page(wrong: bool = False) -> str:
    """Asked for where the server needs a key: the key goes into an HttpOnly cookie."""
    problem = '<p class="problem">That key is not the one this server was started with.</p>' if wrong else ""
    return page(
        "ragft review: key needed",
        f"""<h1>This review page needs the server's API key</h1>{problem}
<form method="post" action="/review/login">
<p><label>API key <input type="password" name="key" autocomplete="current-password"></label>
<button type="submit">Open the review page</button></p>
</form>""",
    )


def problem_page(message: str) -> str:
    return page("ragft review: not saved", f'<p class="problem">{escape(message)}</p><p><a href="/review">Back</a></p>')
