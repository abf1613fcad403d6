"""What the generator is asked when it writes training pairs, how its replies are read, and
the questions formed by rule.

Three methods. `passage`: shown a sentence, the model writes a question and its short
answer. `answer_first`: an answer is picked from the sentence first (`ragft.synth.spans`),
and the model writes the question for it. `rule`: the answer is picked the same way, and
no model writes: the question is the clause that holds the answer with the answer replaced
in place by a question phrase (`rule_question`). Both prompts show two solved examples about
made-up topics (nothing from any benchmark): small chat models follow a pattern they are
shown far better than an instruction. The round trip asks the question again the way a
`rag` pipeline does (the `qa-context` template, the whole chunk as the passage).
"""

from __future__ import annotations

import re

from ragft.metrics import normalize_answer
from ragft.prompts import get_template
from ragft.synth.spans import NUMBER, STOP_WORDS

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


def rule_question(sentence: str, answer: str, kind: str) -> str:
    """The `rule` method's question: the clause of `sentence` (split at `;` and `:`) that holds
    `answer` (its first occurrence as whole words), with the answer replaced in place by a
    question phrase: what year (a year), when (another date), at what time, how many (with a
    quantity's unit: how many crowns), who or what (`question_word`). "The gauge cost 340
    crowns in 1988." gives "The gauge cost how many crowns in 1988?". Empty where the sentence
    does not hold the answer."""
    found = re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", sentence)
    if found is None:
        return ""
    at = found.start()
    start, end = 0, len(sentence)
    for cut in re.finditer(r";\s+|:\s+", sentence):
        if cut.end() <= at:
            start = cut.end()
        elif cut.start() >= at + len(answer):
            end = cut.start()
            break
    before, after = sentence[start:at], sentence[at + len(answer) : end]
    phrase = _question_phrase(kind, answer)
    before = re.sub(r"\b(?:the|a|an)\s+$", "", before, flags=re.I)  # "at the [oak table]": "at what"
    if phrase.startswith("at "):
        before = re.sub(r"\bat\s+$", "", before, flags=re.I)
    question = (before + phrase + after).strip().rstrip(".!?,;: ")
    return question[:1].upper() + question[1:] + "?"


def _question_phrase(kind: str, answer: str) -> str:
    words = answer.split()
    if kind == "date":
        return "what year" if re.fullmatch(r"\d{4}", answer) else "when"
    if kind == "time":
        return "at what time"
    if kind == "quantity":
        unit = words[-1] if len(words) > 1 else ""
        named = re.fullmatch(r"[a-z][a-z-]*", unit, re.I) and not NUMBER.fullmatch(unit)
        return f"how many {unit}" if named else "how many"
    if words[0].lower() == "the":  # "The Tide Bell": a thing's name
        return "what"
    return question_word(kind, answer).lower()


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
