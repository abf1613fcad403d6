"""A served pipeline's exchanges cut into windows, and each complete window tested for
drift (`ragft.drift`): what `ragft monitor`, `/metrics` and the monitor view show.

A window is tested once, when it is complete (a count window when full, a time window when
its hours have passed); the open window is shown, untested. A window's ratings count until
the next window closes, so its quality is tested then, once.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragft.drift import KINDS, Test, novelty_test, rate_test, shift_test, spent
from ragft.errors import InputError
from ragft.feedback.store import Served

MIN_WINDOW = 10
"""Fewest exchanges (or ratings, or scores) a window needs to be tested."""


@dataclass(frozen=True)
class WindowSpec:
    """Windows of `size` exchanges, or of `hours` hours from the first exchange (default: 25 exchanges)."""

    size: int = 0
    hours: float = 0.0

    def __post_init__(self) -> None:
        if self.size == 0 and self.hours == 0:
            object.__setattr__(self, "size", 25)  # the default: 25 exchanges
        if (self.size > 0) == (self.hours > 0) or self.size < 0 or self.hours < 0:
            raise ValueError(f"a window is a number of exchanges or of hours, not size={self.size}, hours={self.hours}")

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """'25' (exchanges) or '6h', '30m', '2d' (a span of time)."""
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd]?)\s*", text)
        if not match or float(match.group(1)) <= 0 or (not match.group(2) and "." in match.group(1)):
            raise InputError(f"--window {text!r}: a number of exchanges (25) or a span of time (30m, 6h, 2d)")
        number, unit = float(match.group(1)), match.group(2)
        if not unit:
            return cls(size=int(number))
        return cls(hours=number * {"m": 1 / 60, "h": 1.0, "d": 24.0}[unit])

    def describe(self) -> str:
        return f"{self.size} exchanges" if self.size else f"{_span(self.hours * 3600)}"


EVERY_25 = WindowSpec()
"""The default: windows of 25 exchanges."""


def parse_since(text: str, now: float) -> float:
    """A time to start from: an ISO date or date-time (local time), or a span back from now ('24h', '7d')."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*", text)
    if match:
        return now - float(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise InputError(
            f"--since {text!r}: a date (2026-12-01), a date-time (2026-12-01T09:00) or a span (24h, 7d)"
        ) from None


@dataclass
class Alert:
    """A drift test below its spent level: what moved, by how much, since when, its p-value."""

    kind: str
    window: int
    since: float
    effect: float
    p: float
    level: float
    message: str


@dataclass
class Window:
    """One window of the pipeline's exchanges and what its tests found."""

    index: int
    start: float
    end: float
    exchanges: int
    complete: bool
    up: int
    down: int
    corrected: int
    answer_tokens: float | None
    latency_p50: float | None
    latency_p95: float | None
    """None in a time window with no exchanges, as every statistic below."""
    down_share: float | None
    """Share of the judged answers judged wrong: rated down, or corrected without a rating."""
    top_score: float | None
    """Median retriever top score (None: nothing retrieved)."""
    novelty: float | None
    """Mean novelty against the training questions (the tested one)."""
    novelty_seen: float | None
    """Mean novelty against the training and test questions together."""
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per kind: effect, p and level of the test, or a note saying why it was not tested."""


def assess_windows(
    exchanges: Sequence[Served],
    new: np.ndarray,
    seen: np.ndarray,
    held_out: np.ndarray,
    clusters: int,
    spec: WindowSpec,
    alpha: float,
    now: float,
    notes: list[str] | None = None,
) -> tuple[list[Window], list[Alert]]:
    """Cut `exchanges` (oldest first, with their novelty against the training questions `new`
    and against every known question `seen`) into windows, and test each complete window
    for the three kinds of drift at its spent level. A window's ratings count up to when the
    next window closes, so its quality is tested once, then."""
    windows: list[Window] = []
    alerts: list[Alert] = []
    tested = dict.fromkeys(KINDS, 0)
    baseline: dict[str, list[Any]] = {}
    baseline_window: dict[str, int] = {}
    cut = _cut(exchanges, spec, now)
    for index, (picked, complete, closed) in enumerate(cut, 1):
        rows = [exchanges[i] for i in picked]
        w = _summary(index, rows, complete, new[picked], seen[picked])
        if not rows:  # a time window nobody asked in: its span
            w.start, w.end = closed - spec.hours * 3600, closed
        windows.append(w)
        if not complete:
            w.tests = {kind: {"note": "open window: tested when complete"} for kind in KINDS}
            continue
        ratings_until = cut[index][2] if index < len(cut) and cut[index][1] else None
        samples: dict[str, list[Any] | None] = {
            "questions": list(new[picked]),
            "retrieval": [x.top_score for x in rows if x.top_score is not None],
            "quality": None
            if ratings_until is None
            else [j for j in (x.judged(ratings_until) for x in rows) if j is not None],
        }
        for kind in KINDS:
            sample = samples[kind]
            if sample is None:
                w.tests[kind] = {"note": "ratings are counted until the next window closes: tested then"}
                continue
            if len(sample) < MIN_WINDOW:
                what = {"questions": "exchanges", "retrieval": "retrieval scores", "quality": "ratings"}[kind]
                w.tests[kind] = {"note": f"too small to test: {len(sample)} {what} (fewer than {MIN_WINDOW})"}
                continue
            if kind != "questions" and kind not in baseline:
                baseline[kind], baseline_window[kind] = sample, index
                w.tests[kind] = {"note": "baseline: later windows are compared with this one"}
                continue
            tested[kind] += 1
            level = spent(alpha, tested[kind])
            test = _test(kind, sample, baseline.get(kind, []), held_out, clusters)
            w.tests[kind] = {"effect": test.effect, "p": test.p, "level": level, "low": test.low, "high": test.high}
            if test.p <= level:
                message = _alert_message(kind, w, test, baseline_window.get(kind, 0), level)
                alerts.append(Alert(kind, index, w.start, test.effect, test.p, level, message))
    if notes is not None and windows and not windows[-1].complete:
        n = windows[-1].exchanges
        notes.append(f"window {windows[-1].index} is open ({n} exchange{'' if n == 1 else 's'}): tested when complete")
    return windows, alerts


def _test(kind: str, sample: list[Any], baseline: list[Any], held_out: np.ndarray, clusters: int) -> Test:
    if kind == "questions":
        return novelty_test(sample, held_out, clusters)
    if kind == "retrieval":
        return shift_test(sample, baseline)
    return rate_test(sample.count("down"), len(sample), baseline.count("down"), len(baseline))


def _alert_message(kind: str, w: Window, test: Test, baseline: int, level: float) -> str:
    when = time_text(w.start)
    what = {
        "questions": f"question novelty {test.effect:+.3f} above the training questions' held-out novelty",
        "retrieval": f"median top retrieval score {test.effect:+.3f} against window {baseline}",
        "quality": f"down-rated share {test.effect:+.1%} against window {baseline}"
        + (f" (95% CI {test.low:+.1%} to {test.high:+.1%})" if test.low is not None else ""),
    }[kind]
    return f"{kind} drift in window {w.index} (since {when}): {what}; p = {test.p:.2g} (level {level:.2g})"


def _cut(exchanges: Sequence[Served], spec: WindowSpec, now: float) -> list[tuple[list[int], bool, float]]:
    """(positions in `exchanges`, complete, when it closed) per window, oldest first."""
    if not exchanges:
        return []
    if spec.size:
        cut = [list(range(i, min(i + spec.size, len(exchanges)))) for i in range(0, len(exchanges), spec.size)]
        return [(rows, len(rows) == spec.size, exchanges[rows[-1]].created) for rows in cut]
    span = spec.hours * 3600
    first = exchanges[0].created
    slots: dict[int, list[int]] = {}
    for i, x in enumerate(exchanges):
        slots.setdefault(int((x.created - first) // span), []).append(i)
    last = max(int((now - first) // span), max(slots))
    return [(slots.get(i, []), first + (i + 1) * span <= now, first + (i + 1) * span) for i in range(last + 1)]


def _summary(index: int, rows: Sequence[Served], complete: bool, new: np.ndarray, seen: np.ndarray) -> Window:
    latencies = [x.latency_s for x in rows]
    scores = [x.top_score for x in rows if x.top_score is not None]
    judged = [j for j in (x.judged() for x in rows) if j is not None]
    return Window(
        index=index,
        start=rows[0].created if rows else 0.0,
        end=rows[-1].created if rows else 0.0,
        exchanges=len(rows),
        complete=complete,
        up=sum(x.rating == "up" for x in rows),
        down=sum(x.rating == "down" for x in rows),
        corrected=sum(x.corrected for x in rows),
        answer_tokens=float(np.mean([x.completion_tokens for x in rows])) if rows else None,
        latency_p50=float(np.percentile(latencies, 50)) if rows else None,
        latency_p95=float(np.percentile(latencies, 95)) if rows else None,
        down_share=judged.count("down") / len(judged) if judged else None,
        top_score=float(np.median(scores)) if scores else None,
        novelty=float(new.mean()) if len(new) else None,
        novelty_seen=float(seen.mean()) if len(seen) else None,
    )


def alert_lines(alerts: Sequence[Alert]) -> list[str]:
    """One line a kind of drift: its first alert, then the later windows that alerted too."""
    lines = []
    for kind in KINDS:
        mine = [a for a in alerts if a.kind == kind]
        if mine:
            later = ", ".join(str(a.window) for a in mine[1:])
            again = f"; alerted again in window{'s' if len(mine) > 2 else ''} {later}" if later else ""
            lines.append(mine[0].message + again)
    return lines


def time_text(stamp: float) -> str:
    """A moment as people read it here: local date, hours and minutes."""
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and math.isclose(seconds / size, round(seconds / size)):
            return f"{round(seconds / size)}{unit}"
    return f"{seconds / 60:g}m"
