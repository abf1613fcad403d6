"""`ragft monitor`: a served pipeline's exchanges in windows, drift alerts, and when to retrain.

The store is read read-only (`read_history`), so monitoring a pipeline while it serves is
safe and writes nothing. Questions are embedded with the pipeline's own embedder and
compared with the run's training questions (the drift reference) and with its training
and test questions together (how far from anything the run has seen). The windows and
their tests are in `ragft.feedback.windows`; the tests, and how repeated testing is
accounted for, in `ragft.drift`.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragft.drift import KINDS, held_out_novelty, novelty
from ragft.errors import InputError
from ragft.feedback.records import served_by
from ragft.feedback.store import FILENAME, History, RunIdentity, Served, read_history
from ragft.feedback.windows import EVERY_25, Alert, Window, WindowSpec, alert_lines, assess_windows, time_text
from ragft.metrics import normalize_answer
from ragft.runner.folder import run_config, run_identity, run_pipeline
from ragft.settings import LADDER
from ragft.stats import ALPHA

if TYPE_CHECKING:
    from ragft.retrieval import Embedder
    from ragft.tasks.qa import QATask

MIN_CORRECTIONS = 10
"""Fewer usable corrections than this: the retrain table trains on the ratings (KTO) instead."""
FEW_CLUSTERS = 10
"""Fewer training clusters than this make the held-out novelty a rough reference (said in a note)."""
RETRAIN_AFTER = 100
"""Corrected or down-rated answers that make retraining worth a run: a measured round of 48
corrections moved no score on the handbook (docs/results/serving.md), so the default asks
for about twice that."""


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
        spec: WindowSpec = EVERY_25,
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
        asked = served_by(name)
        mine = [x for x in history.exchanges if asked(x)]  # type: ignore[arg-type]
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


def monitor(
    run_dir: str | Path,
    pipeline: str | None = None,
    spec: WindowSpec = EVERY_25,
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
