"""`ragft monitor`: a served pipeline's exchanges in windows, drift alerts, and when to retrain.

The store is read read-only (`read_history`), so monitoring a pipeline while it serves is
safe and writes nothing. Questions are embedded with the pipeline's own embedder and
compared with the run's training questions (the drift reference) and with its training
and test questions together (how far from anything the run has seen). The tests and how
repeated testing is accounted for are in `ragft.drift`.

A window is tested once, when it is complete (a count window when full, a time window when
its hours have passed); the open window is shown, untested.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shlex
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragft.drift import KINDS, Test, held_out_novelty, novelty, novelty_test, rate_test, shift_test, spent
from ragft.errors import InputError
from ragft.feedback.records import served_by
from ragft.feedback.store import FILENAME, History, RunIdentity, Served, read_history
from ragft.metrics import normalize_answer
from ragft.runner.folder import run_config, run_identity, run_pipeline
from ragft.settings import LADDER
from ragft.stats import ALPHA

if TYPE_CHECKING:
    from ragft.retrieval import Embedder
    from ragft.tasks.qa import QATask

MIN_WINDOW = 10
"""Fewest exchanges (or ratings, or scores) a window needs to be tested."""
MIN_CORRECTIONS = 10
"""Fewer usable corrections than this: the retrain table trains on the ratings (KTO) instead."""
FEW_CLUSTERS = 10
"""Fewer training clusters than this make the held-out novelty a rough reference (said in a note)."""
RETRAIN_AFTER = 100
"""Corrected or down-rated answers that make retraining worth a run: a measured round of 48
corrections moved no score on the handbook (docs/results/serving.md), so the default asks
for about twice that."""


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


@dataclass
class Retrain:
    """The signal to train the next version, and how."""

    reasons: list[str]
    table: str
    command: str


@dataclass
class Monitoring:
    """What `ragft monitor` found for one pipeline."""

    run: str
    store: str
    pipeline: str
    window: str
    alpha: float
    reference: dict[str, Any]
    windows: list[Window]
    alerts: list[Alert]
    notes: list[str]
    feedback: dict[str, int]
    """Over all the pipeline's exchanges: rated up, rated down, corrected, and corrected or down-rated."""
    retrain: Retrain | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reference:
    """What served questions are compared with: the training questions' vectors, their
    held-out novelty (against other clusters), and every question the run knows."""

    train: np.ndarray
    held_out: np.ndarray
    seen: np.ndarray
    clusters: int
    """Clusters of the training questions the held-out novelty was measured across."""
    test_questions: frozenset[str]
    """The test questions, normalised (feedback on them is not training data)."""


class Watch:
    """A pipeline of a run, ready to assess its store: its reference questions embedded once,
    and each served question's novelty kept for the next assessment. Thread-safe: a server's
    request threads share one."""

    def __init__(
        self,
        run_dir: str | Path,
        pipeline: str,
        embedder: Embedder | None = None,
        spec: WindowSpec = WindowSpec(),
        alpha: float = ALPHA,
        retrain_after: int = RETRAIN_AFTER,
        data: QATask | None = None,
    ):
        """`data`: the run's task where the caller has read it already (else read here)."""
        from ragft.resources import Resources
        from ragft.runner.run import qa_task

        self.run_dir = Path(run_dir)
        self.spec, self.alpha, self.retrain_after = spec, alpha, retrain_after
        self.config = run_config(self.run_dir)
        if self.config.data.kind != "qa":
            raise InputError(f"ragft monitor watches served questions; this run's task is {self.config.data.kind!r}")
        self.pipeline = run_pipeline(self.run_dir, self.config, pipeline)
        self.identity = run_identity(self.run_dir)
        task = data or qa_task(self.config)
        train = list(task.train)
        if len(train) < 2:
            raise InputError(
                f"the run has {len(train)} training questions: question drift is measured against them, so "
                "there is nothing to monitor against",
                self.run_dir,
            )
        self.embedder = Resources([], [embedder] if embedder else []).embedder(self.pipeline.models)
        clusters = [e.group or e.doc_id or e.id for e in train]
        self.notes: list[str] = []
        if len(set(clusters)) < 2:  # one document: each question is its own cluster
            clusters = [e.id for e in train]
            self.notes.append("the training questions come from one document: each is held out on its own")
        vectors = self.embedder.embed([e.question for e in train])
        tested = self.embedder.embed([e.question for e in task.test])
        self.reference = Reference(
            vectors,
            held_out_novelty(vectors, clusters),
            np.vstack([vectors, tested]),
            len(set(clusters)),
            frozenset(normalize_answer(e.question) for e in task.test),
        )
        if self.reference.clusters < FEW_CLUSTERS:
            self.notes.append(
                f"the training questions come from {self.reference.clusters} clusters (documents): their held-out "
                "novelty, the question test's reference, is a rough estimate"
            )
        self._novelty: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def embedded(self, questions: Sequence[str]) -> np.ndarray:
        """The questions' unit vectors."""
        with self._lock:
            return self.embedder.embed(list(questions))

    def novelty(self, questions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each question's novelty against the training questions, and against training and
        test questions (each question embedded once per watch)."""
        with self._lock:
            new = sorted({q for q in questions if q not in self._novelty})
            if new:
                vectors = self.embedder.embed(new)
                pairs = zip(novelty(vectors, self.reference.train), novelty(vectors, self.reference.seen))
                self._novelty.update(zip(new, pairs))
            values = np.array([self._novelty[q] for q in questions], dtype=float).reshape(-1, 2)
        return values[:, 0], values[:, 1]

    def assess(self, history: History, since: float | None = None, now: float | None = None) -> Monitoring:
        """The pipeline's windows, alerts and retrain signal from a store's `history`."""
        import time

        notes = check_store(history, self.identity) + self.notes
        name = self.pipeline.name
        mine = [x for x in history.exchanges if served_by(name)(x)]  # type: ignore[arg-type]
        chat = sum(1 for x in history.exchanges if x.pipeline == name and x.model != name)
        if chat:
            notes.append(f"{chat} exchanges of the {name}:chat model (messages as sent, no retrieval) are left out")
        if not mine:
            others = sorted({x.pipeline for x in history.exchanges} - {name})
            also = f"; it holds exchanges of {', '.join(others)}" if others else ""
            notes.append(f"no exchanges of pipeline {name!r} in the store yet{also}")
        current = [x for x in mine if x.run is None or x.run == self.identity.id]
        if len(current) < len(mine):
            notes.append(
                f"{len(mine) - len(current)} of {len(mine)} exchanges were served under earlier settings of this "
                "run (before its last `ragft compare`): left out"
            )
        new, seen = self.novelty([x.question for x in current])
        ref = self.reference
        windows, alerts = assess_windows(
            current,
            new,
            seen,
            ref.held_out,
            ref.clusters,
            self.spec,
            self.alpha,
            time.time() if now is None else now,
            notes,
        )
        if since is not None:
            windows = [w for w in windows if w.end >= since]
            alerts = [a for a in alerts if windows and a.window >= windows[0].index]
        feedback = {
            "up": sum(x.rating == "up" for x in current),
            "down": sum(x.rating == "down" for x in current),
            "corrected": sum(x.corrected for x in current),
            "corrected_or_down": sum(x.judged() == "down" or x.corrected for x in current),
        }
        reference = {
            "questions": len(ref.train),
            "clusters": ref.clusters,
            "seen_questions": len(ref.seen),
            "held_out_novelty": float(ref.held_out.mean()),
            "held_out_novelty_sd": float(ref.held_out.std(ddof=1)),
            "embedder": self.embedder.name,
        }
        usable = [x for x in current if normalize_answer(x.question) not in ref.test_questions]
        return Monitoring(
            str(self.run_dir),
            str(history.path),
            name,
            self.spec.describe(),
            self.alpha,
            reference,
            windows,
            alerts,
            notes,
            feedback,
            self._retrain(feedback["corrected_or_down"], usable, alerts),
        )

    def _retrain(self, bad: int, usable: Sequence[Served], alerts: Sequence[Alert]) -> Retrain | None:
        reasons = []
        if bad >= self.retrain_after:
            reasons.append(f"{bad} answers corrected or rated down (the threshold is {self.retrain_after})")
        for kind in KINDS:
            first = next((a for a in alerts if a.kind == kind), None)
            if first is not None:
                reasons.append(f"{kind} drift since window {first.window}")
        if not reasons:
            return None
        p = self.pipeline
        names = set(_pipelines(self.run_dir))
        name = next(n for n in (f"{p.name}+fb", *(f"{p.name}+fb{i}" for i in range(2, 1000))) if n not in names)
        corrections = sum(x.corrected for x in usable)
        settings = {"init_from": p.name} if p.trained else {}
        settings["train_data"] = "feedback"
        if corrections < MIN_CORRECTIONS:  # too few corrections for SFT: learn from the ratings
            settings["objective"] = "kto"
        finetune = ", ".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        lines = [
            "[[pipelines]]",
            f"name = {json.dumps(name)}",
            f'base = "{"rag+ft" if p.context else "ft"}"',
            f"finetune = {{ {finetune} }}",
        ]
        if corrections < MIN_CORRECTIONS:
            lines.insert(1, f"# KTO on the ratings: {corrections} usable corrections are too few for SFT")
        if p.name not in LADDER:
            lines.insert(1, f"# and the settings of {p.name!r}'s own [[pipelines]] table")
        source = self.config.source or "CONFIG"
        command = f"ragft compare {shlex.quote(source)} --out {shlex.quote(str(self.run_dir))}"
        return Retrain(reasons, "\n".join(lines) + "\n", command)


def _pipelines(run_dir: Path) -> list[str]:
    from ragft.io import read_json

    return list(read_json(run_dir / "pipelines.json"))


def check_store(history: History, identity: RunIdentity) -> list[str]:
    """Refuse a store made for another run (another experiment name and settings); note one
    made before stores recorded their run."""
    if history.run is None:
        return ["the store was made before it recorded its run: its exchanges are taken as this run's"]
    if history.run.id != identity.id and history.run.name != identity.name:
        raise InputError(
            f"this feedback store belongs to run {history.run.name!r} (settings {history.run.id}), "
            f"not to this run {identity.name!r} (settings {identity.id}): monitor the run folder it came from",
            history.path,
        )
    return []


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


def monitor(
    run_dir: str | Path,
    pipeline: str | None = None,
    spec: WindowSpec = WindowSpec(),
    since: float | None = None,
    alpha: float = ALPHA,
    retrain_after: int = RETRAIN_AFTER,
    store: str | Path | None = None,
) -> Monitoring:
    """Read the run's feedback store (or `store`) and assess `pipeline` (the store's only one
    when not named)."""
    run_dir = Path(run_dir)
    run_config(run_dir)  # a run folder, before anything else
    history = read_history(Path(store) if store else run_dir / FILENAME)
    check_store(history, run_identity(run_dir))  # before any model loads
    watch = Watch(run_dir, pipeline or _only_pipeline(history, run_dir), None, spec, alpha, retrain_after)
    return watch.assess(history, since)


def _only_pipeline(history: History, run_dir: Path) -> str:
    names = sorted({x.pipeline for x in history.exchanges})
    if len(names) == 1:
        return names[0]
    if not names:
        served = _pipelines(run_dir)
        raise InputError(
            f"the feedback store holds no exchanges yet: nothing to monitor (serve one of {', '.join(served)} "
            "with `ragft serve`, and monitor it once questions come in)",
            history.path,
        )
    raise InputError(f"the store holds exchanges of {', '.join(names)}: name one with --pipeline", history.path)


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


def _number(value: float | None, width: int, places: int) -> str:
    return f"{value:{width}.{places}f}" if value is not None else "-".rjust(width)


def render_text(m: Monitoring) -> str:
    """The monitoring as a person reads it in a terminal."""
    r = m.reference
    lines = [
        f"pipeline {m.pipeline!r} of {m.run} ({m.store}); windows of {m.window}",
        f"reference: {r['questions']} training questions in {r['clusters']} clusters, held-out novelty "
        f"{r['held_out_novelty']:.3f} (sd {r['held_out_novelty_sd']:.3f}); embedder {r['embedder']}",
        "",
        "window  from              exch  up  down  corr  ans tok  latency p50/p95 s  top score  novelty  seen",
    ]
    for w in m.windows:
        mark = "" if w.complete else "  (open)"
        lines.append(
            f"{w.index:6}  {time_text(w.start) if w.exchanges else '-':16}  {w.exchanges:4}  {w.up:2}  {w.down:4}  "
            f"{w.corrected:4}  {_number(w.answer_tokens, 7, 1)}  {_number(w.latency_p50, 7, 2)} / "
            f"{_number(w.latency_p95, 6, 2)}  {_number(w.top_score, 9, 3)}  {_number(w.novelty, 7, 3)}  "
            f"{_number(w.novelty_seen, 5, 3)}{mark}"
        )
    if not m.windows:
        lines.append("(no exchanges)")
    lines.append("")
    lines += [f"ALERT {line}" for line in alert_lines(m.alerts)] or [
        f"no drift alert (chance of any false alarm over all windows at most {m.alpha:g})"
    ]
    lines += [f"note: {n}" for n in m.notes]
    f = m.feedback
    lines.append(f"feedback: {f['up']} up, {f['down']} down, {f['corrected']} corrected")
    if m.retrain is not None:
        lines += ["", "retrain: " + "; ".join(m.retrain.reasons), "add this pipeline to the run's config:", ""]
        lines += ["    " + line for line in m.retrain.table.splitlines()]
        lines += ["", "then train it and compare it with the others on the same test questions:", ""]
        lines.append("    " + m.retrain.command)
    return "\n".join(lines) + "\n"
