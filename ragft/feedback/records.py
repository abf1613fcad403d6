"""Feedback as training data: what reviewers said about served answers, as the records the
three ways of learning from it read.

- **SFT** (supervised corrections): the prompt the model saw (question and passages) and the
  corrected answer, for every exchange with a correction.
- **DPO** (preference pairs): the same prompt, the correction as the chosen answer and the
  model's own answer as the rejected one, where the two differ.
- **KTO** (unpaired labels): the prompt and the model's answer, desirable for a thumbs up and
  undesirable for a thumbs down; a correction adds itself as a desirable answer.

An exchange's latest rating and latest correction stand (a reviewer may change their mind).
Each record keeps the exchange id and question, so a record traces back to what was served.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragft.errors import InputError
from ragft.feedback.store import Exchange, FeedbackStore
from ragft.io import write_jsonl_atomic
from ragft.metrics import normalize_answer

KINDS = ("sft", "dpo", "kto")


@dataclass(frozen=True)
class Verdict:
    """What an exchange's feedback comes to: its latest rating and latest correction."""

    exchange: Exchange
    rating: str | None
    correction: str | None


@dataclass(frozen=True)
class SFTRow:
    id: str
    question: str
    passages: list[str]
    prompt: str
    answer: str


@dataclass(frozen=True)
class DPORow:
    id: str
    question: str
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class KTORow:
    id: str
    question: str
    prompt: str
    completion: str
    label: bool


@dataclass(frozen=True)
class FeedbackData:
    """The three record sets from one store, with counts of what fed them."""

    sft: list[SFTRow]
    dpo: list[DPORow]
    kto: list[KTORow]
    exchanges: int
    rated_up: int
    rated_down: int
    corrected: int
    left_out: int = 0
    """Exchanges with feedback left out because their question is a test question."""

    def counts(self) -> dict[str, int]:
        return {
            "exchanges": self.exchanges,
            "left_out_test_questions": self.left_out,
            "rated_up": self.rated_up,
            "rated_down": self.rated_down,
            "corrected": self.corrected,
            "sft": len(self.sft),
            "dpo": len(self.dpo),
            "kto": len(self.kto),
        }

    def rows(self, kind: str) -> list[Any]:
        return {"sft": self.sft, "dpo": self.dpo, "kto": self.kto}[kind]


def verdicts(store: FeedbackStore, keep: Callable[[Exchange], bool] | None = None) -> list[Verdict]:
    """Every exchange that has feedback (and that `keep` keeps), in the order it was served,
    with its standing verdict."""
    latest: dict[str, dict[str, str | None]] = {}
    for f in store.feedback():
        now = latest.setdefault(f.exchange_id, {"rating": None, "correction": None})
        if f.rating is not None:
            now["rating"] = f.rating
        if f.correction:
            now["correction"] = f.correction
    out = []
    for exchange_id, v in latest.items():
        x = store.exchange(exchange_id)
        if keep is None or keep(x):
            out.append(Verdict(x, v["rating"], v["correction"]))
    return sorted(out, key=lambda v: (v.exchange.created, v.exchange.id))


def served_by(pipeline: str) -> Callable[[Exchange], bool]:
    """Exchanges a pipeline answered as the pipeline (not through its `:chat` model)."""
    return lambda x: x.pipeline == pipeline and x.model == pipeline


def feedback_data(
    store: FeedbackStore, keep: Callable[[Exchange], bool] | None = None, test_questions: Collection[str] = ()
) -> FeedbackData:
    """SFT, DPO and KTO records from the store's feedback on the exchanges `keep` keeps (all
    without it); exchanges asking one of `test_questions` are left out, and counted."""
    sft, dpo, kto = [], [], []
    up = down = corrected = 0
    tests = {normalize_answer(q) for q in test_questions}
    every = verdicts(store, keep)
    given = [v for v in every if normalize_answer(v.exchange.question) not in tests]
    for v in given:
        x = v.exchange
        up += v.rating == "up"
        down += v.rating == "down"
        if v.correction:
            corrected += 1
            sft.append(SFTRow(x.id, x.question, [p.text for p in x.passages], x.prompt, v.correction))
            if normalize_answer(v.correction) != normalize_answer(x.answer):
                dpo.append(DPORow(x.id, x.question, x.prompt, v.correction, x.answer))
        if v.rating is not None:
            kto.append(KTORow(x.id, x.question, x.prompt, x.answer, v.rating == "up"))
        if v.correction and normalize_answer(v.correction) != normalize_answer(x.answer):
            kto.append(KTORow(x.id, x.question, x.prompt, v.correction, True))
    return FeedbackData(sft, dpo, kto, len(given), up, down, corrected, len(every) - len(given))


def export(store: FeedbackStore, out: str | Path, pipeline: str | None = None) -> FeedbackData:
    """Write sft.jsonl, dpo.jsonl and kto.jsonl into `out` (feedback on one pipeline's answers,
    or on every answer); a store without feedback to learn from is refused, saying so."""
    data = feedback_data(store, served_by(pipeline) if pipeline else None)
    if not (data.sft or data.dpo or data.kto):
        whose = f" on pipeline {pipeline!r}" if pipeline else ""
        raise InputError(
            f"no feedback{whose} to train on ({data.exchanges} rated or corrected exchanges): rate or correct "
            "answers on the server's /review page or through POST /v1/feedback first",
            store.path,
        )
    folder = Path(out)
    for kind in KINDS:
        write_jsonl_atomic(folder / f"{kind}.jsonl", [asdict(r) for r in data.rows(kind)])
    return data
