"""What the generator is asked when it writes training pairs, and how its replies are read.

Two methods. `passage`: shown a sentence, the model writes a question and its short
answer. `answer_first`: an answer is picked from the sentence first (`ragft.synth.spans`),
and the model writes the question for it. Both prompts show two solved examples about
made-up topics (nothing from any benchmark): small chat models follow a pattern they are
shown far better than an instruction. The round trip asks the question again the way a
`rag` pipeline does (the `qa-context` template, the whole chunk as the passage).
"""

from __future__ import annotations

import re

from ragft.metrics import normalize_answer
from ragft.prompts import get_template
from ragft.synth.spans import STOP_WORDS

SYSTEM = "You write quiz questions about a text. Each question must be answerable from the sentence alone."
EXAMPLES = (
    (
        "The library opens at nine on weekdays and closes at noon on Saturdays.",
        "At what time does the library close on Saturdays?",
        "noon",
    ),
    (
        "Membership of the rowing club costs 45 euros a year, paid to the treasurer, Mira Okafor.",
        "Who is the treasurer of the rowing club?",
        "Mira Okafor",
    ),
)
"""The solved examples both writing prompts show (made up; about no benchmark's topic)."""
BORROWABLE = frozenset(
    w
    for s, q, _ in EXAMPLES
    for w in normalize_answer(q).split()
    if w in normalize_answer(s).split() and w not in STOP_WORDS
)
"""The words the examples' questions take from their sentences ("rowing", "club", ...): a
written question that holds one its own passage lacks copied it from an example."""


BLANK = "_____"


def question_messages(sentence: str, answer: str) -> list[dict[str, str]]:
    """Answer-first: write the question whose answer is `answer`, shown the sentence with the
    answer blanked out (so the question cannot simply repeat it)."""
    messages = [{"role": "system", "content": SYSTEM}]
    for s, q, a in EXAMPLES:
        messages += [
            {"role": "user", "content": _cloze(s, a)},
            {"role": "assistant", "content": q},
        ]
    messages.append({"role": "user", "content": _cloze(sentence, answer)})
    return messages


def _cloze(sentence: str, answer: str) -> str:
    blanked = sentence.replace(answer, BLANK, 1)
    return f"Sentence: {blanked}\nThe blank is: {answer}\nWrite a question whose answer is what fills the blank."


def question_word(kind: str, answer: str) -> str:
    """The question word an answer of this kind is asked with: When for a date or a time, How
    for a quantity, Who for a name of two or more capitalised words without an article, else What."""
    if kind in ("date", "time"):
        return "When"
    if kind == "quantity":
        return "How"
    words = answer.split()
    if kind == "name" and len(words) >= 2 and all(w[:1].isupper() for w in words):
        return "Who"
    return "What"


def pair_messages(sentence: str) -> list[dict[str, str]]:
    """Passage method: write a question about this sentence and its short answer."""
    messages = [{"role": "system", "content": SYSTEM}]
    for s, q, a in EXAMPLES:
        messages += [
            {"role": "user", "content": f"Sentence: {s}\nWrite a question and its short answer."},
            {"role": "assistant", "content": f"Question: {q}\nAnswer: {a}"},
        ]
    messages.append({"role": "user", "content": f"Sentence: {sentence}\nWrite a question and its short answer."})
    return messages


def roundtrip_messages(question: str, passage: str) -> list[dict[str, str]]:
    """The question asked back as a `rag` pipeline asks it, with the chunk as its one passage."""
    return get_template("qa-context").messages(question, [passage], [])


def read_question(reply: str) -> str:
    """The question in an answer-first reply: its first line, without a `Question:` label."""
    line = next((ln.strip() for ln in reply.strip().splitlines() if ln.strip()), "")
    return re.sub(r"^(?:question|q)\s*[:.]\s*", "", line, flags=re.I).strip()


def read_pair(reply: str) -> tuple[str, str] | None:
    """(question, answer) in a passage-method reply (`Question: ...` / `Answer: ...`), else None."""
    question = re.search(r"question\s*:\s*(.+)", reply, re.I)
    answer = re.search(r"answer\s*:\s*(.+)", reply, re.I)
    if question is None or answer is None:
        return None
    return question.group(1).strip(), answer.group(1).strip()


def sentences(passage: str) -> list[str]:
    """A chunk's sentences, markdown headings and sentences under five words left out."""
    body = " ".join(line for line in passage.splitlines() if not line.lstrip().startswith("#"))
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(body.split())) if len(s.split()) >= 5]
