"""The checks a written pair must pass, and the leakage measure of a synthetic set.

Each check names why a pair is dropped, and the synthesis counts every reason:
`unparsed` (no question/answer in the reply), `empty`, `long_question`, `long_answer`,
`copied` (the question is mostly a stretch of the passage), `answer_in_question`,
`borrowed` (the question takes a word from a solved example that its passage lacks: "the
rowing club" of a cooperative's handbook),
`unsupported` (the answer is not in its passage), `roundtrip` (asked back with the
passage, the model does not give the answer), `duplicate` (a near copy of a question kept
before; for the `rule` method, whose questions about one sentence are alike by design, a
word-for-word repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragft.metrics import final_answer, lenient_match, normalize_answer, token_f1
from ragft.synth.writing import BORROWABLE

if TYPE_CHECKING:
    from ragft.config import SynthConfig

DROPS = (
    "unparsed",
    "empty",
    "long_question",
    "long_answer",
    "copied",
    "answer_in_question",
    "borrowed",
    "unsupported",
    "roundtrip",
    "duplicate",
)
"""Why a pair is dropped, in the order the checks run."""


def shape_problem(question: str, answer: str, passage: str, settings: SynthConfig) -> str | None:
    """Why a pair's form disqualifies it (None: it does not)."""
    q = normalize_answer(question).split()
    if len(q) < 3 or not normalize_answer(answer):
        return "empty"
    if len(question.split()) > settings.max_question_words:
        return "long_question"
    if len(answer.split()) > settings.max_answer_words:
        return "long_answer"
    if settings.method != "rule" and copied(question, passage):  # a rule question is its sentence by design
        return "copied"
    if lenient_match(question, (answer,)) or answer.lower() in question.lower():
        return "answer_in_question"
    if borrowed(question, passage):
        return "borrowed"
    return None


def borrowed(question: str, passage: str) -> bool:
    """The question holds a word the solved examples' questions take from their sentences
    (`writing.BORROWABLE`) that its own passage does not hold."""
    words = set(normalize_answer(question).split()) & BORROWABLE
    return bool(words - set(normalize_answer(passage).split()))


def copied(question: str, passage: str) -> bool:
    """The question is mostly a stretch of the passage: its longest run of words found in the
    passage covers three quarters of it (four words or more), or ten words."""
    q, p = normalize_answer(question).split(), normalize_answer(passage).split()
    run = _longest_common_run(q, p)
    return run >= 10 or (run >= 4 and run >= 0.75 * len(q))


def support(answer: str, passage: str) -> float:
    """1.0 where the answer is in the passage word for word (after normalisation), else the
    best token F1 of a stretch of the passage as long as the answer."""
    if lenient_match(passage, (answer,)):
        return 1.0
    a, p = normalize_answer(answer).split(), normalize_answer(passage).split()
    if not a or not p:
        return 0.0
    n = len(a)
    return max(token_f1(" ".join(p[i : i + n]), (answer,)) for i in range(max(1, len(p) - n + 1)))


def agreement(reply: str, answer: str) -> tuple[bool, float]:
    """Whether a round-trip reply gives the answer (as whole words), and its token F1."""
    reply = final_answer(reply)
    return bool(lenient_match(reply, (answer,))), token_f1(reply, (answer,))


def repeated(questions: Sequence[str]) -> list[bool]:
    """Whether each question repeats one before it word for word (after normalisation): the
    `rule` method's duplicates, whose questions about one sentence are alike by design."""
    seen: set[str] = set()
    out = []
    for q in questions:
        key = normalize_answer(q)
        out.append(key in seen)
        seen.add(key)
    return out


def near_duplicates(vectors: Any, threshold: float) -> list[bool]:
    """For unit vectors in order, whether each is within `threshold` cosine of one kept before it."""
    import numpy as np

    kept: list[int] = []
    out = []
    for i in range(len(vectors)):
        dup = bool(kept) and float(np.max(vectors[kept] @ vectors[i])) >= threshold
        out.append(dup)
        if not dup:
            kept.append(i)
    return out


def ngram_overlap(questions: Sequence[str], test_questions: Sequence[str]) -> dict[str, Any]:
    """The longest run of words (after normalisation) any synthetic question shares with any
    test question, with one such pair: how close the synthetic set comes to the test set."""
    test = [normalize_answer(q).split() for q in test_questions]
    synth = [normalize_answer(q).split() for q in questions]
    best: dict[str, Any] = {"words": 0, "question": "", "test_question": ""}
    n = 1
    while True:
        grams: dict[tuple[str, ...], int] = {}
        for j, t in enumerate(test):
            for i in range(len(t) - n + 1):
                grams.setdefault(tuple(t[i : i + n]), j)
        shared = ((k, tuple(s[i : i + n])) for k, s in enumerate(synth) for i in range(len(s) - n + 1))
        hit = next(((k, grams[gram]) for k, gram in shared if gram in grams), None)
        if hit is None:
            return best
        best = {"words": n, "question": questions[hit[0]], "test_question": test_questions[hit[1]]}
        n += 1


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        row = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                row[j] = previous[j - 1] + 1
                best = max(best, row[j])
        previous = row
    return best
