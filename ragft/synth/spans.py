"""Candidate answers picked from a passage, for answer-first question writing.

The rule, in order of preference (earlier kinds first, each kind in reading order):

1. **Dates**: a year (1500-2099), a month with its day (`14 March`, `March 14`), or a
   phrase ending in a month (`the first Thursday of March`, `the thirty-first of March`).
2. **Times**: a clock time or a range of them (`7:45`, `7:00 to 19:00`).
3. **Quantities**: a number (digits, or a number word from one to a hundred, not the first
   half of a hyphenated word such as `thirty-first` or `two-thirds`) with the word after it
   where that looks like a plural noun (ends in -s: `340 crowns`, `90 days`; else the
   number alone: `eleven`), or a range (`12 to 17`).
4. **Names**: runs of capitalised words (`Ottilie Brandvold`, `the Skerrow Savings Bank`,
   with a `the` in front kept, a possessive `'s` at the end cut off); a single capitalised
   word only where it does not open its sentence.
5. **Key phrases**: YAKE's (`yake`, an unsupervised keyword extractor with bundled stop
   lists, no model download) one- to three-word phrases, as they are written in the passage.

Spans that overlap an earlier span are dropped, so each piece of the passage is asked
about once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragft.errors import RagftError

_NUMBER_WORDS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred"
).split()
_MONTHS = "January February March April May June July August September October November December".split()
STOP_WORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been it its this that these "
    "those their his her our your my we you they he she them than then so if not no per each every any all "
    "may must can will would should shall has have had do does did up over under into onto about after before".split()
)
_NUMBER = rf"(?:\d[\d,.]*\d|\d|(?:{'|'.join(_NUMBER_WORDS)})(?:[- ](?:{'|'.join(_NUMBER_WORDS[:9])}))?)"
NUMBER = re.compile(_NUMBER, re.I)
"""A number in digits or words (`340`, `forty-two`)."""
_WHOLE_NUMBER = rf"{_NUMBER}(?![-:]\w)"  # not `thirty` of `thirty-first`, nor `7` of `7:00`
_QUANTITY = re.compile(rf"\b{_WHOLE_NUMBER}(?:\s+(?:to|and)\s+{_WHOLE_NUMBER})?(?:\s+(?:per\s+)?[a-z][a-z-]+)?\b", re.I)
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d"
_TIME = re.compile(rf"\b{_CLOCK}(?:\s+(?:to|and|-)\s+{_CLOCK})?\b")
_YEAR = re.compile(r"\b(?:1[5-9]\d\d|20\d\d)\b")
_DAY = r"(?:[0-3]?\d(?:st|nd|rd|th)?)"
_MONTH = rf"(?:{'|'.join(_MONTHS)})"
_ORDINAL = (
    r"(?:(?:twenty|thirty)-)?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)"
    r"|twentieth|thirtieth"
)
_DATE = re.compile(
    rf"\b(?:{_DAY}\s+{_MONTH}|{_MONTH}\s+{_DAY}\b|(?:the\s+)?(?:{_ORDINAL}|last)\s+"
    rf"(?:\w+\s+)?of\s+{_MONTH})",
)
_NAME = re.compile(r"\b(?:the[ \t]+)?[A-Z][\w'-]*(?:[ \t]+(?:of[ \t]+|de[ \t]+|van[ \t]+)?[A-Z][\w'-]*)*")
_KINDS = ("date", "time", "quantity", "name", "keyphrase")


@dataclass(frozen=True)
class Span:
    """A candidate answer: its text as written, where it starts in the passage, and its kind."""

    text: str
    start: int
    kind: str


def answer_spans(passage: str, limit: int = 0) -> list[Span]:
    """Candidate answers in `passage`, best kinds first (see the module docstring); at most
    `limit` (0: all)."""
    found: list[Span] = []
    taken: list[tuple[int, int]] = []

    def add(text: str, start: int, kind: str) -> None:
        text = text.strip(" ,.;:")
        start = passage.find(text, start)
        end = start + len(text)
        if not text or start < 0 or any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        found.append(Span(text, start, kind))

    for pattern in (_DATE, _YEAR):
        for m in pattern.finditer(passage):
            add(m.group(0), m.start(), "date")
    for m in _TIME.finditer(passage):
        add(m.group(0), m.start(), "time")
    for m in _QUANTITY.finditer(passage):
        words = m.group(0).split()
        if len(words) > 1 and not _plural_noun(words[-1]):
            words = words[:-1]
        if words[0].lower() == "one" and len(words) < 3:  # "one of", "one member": rarely an answer
            continue
        add(" ".join(words), m.start(), "quantity")
    for m in _NAME.finditer(passage):
        text = m.group(0)
        words = text.split()
        bare = [w for w in words if w.lower() != "the"]
        opens_sentence = m.start() == 0 or passage[: m.start()].rstrip().endswith((".", "!", "?", ":", "\n"))
        if not bare or bare[0] in _MONTHS or (len(bare) == 1 and (opens_sentence or bare[0].lower() in STOP_WORDS)):
            continue
        if words[0] == "The" and opens_sentence:
            text = " ".join(words[1:])
        text = re.sub(r"['\u2019]s$", "", text)  # the University of Brinnick's department
        add(text, m.start(), "name")
    for phrase in keyphrases(passage):
        add(phrase, 0, "keyphrase")
    found.sort(key=lambda s: (_KINDS.index(s.kind), s.start if s.kind != "keyphrase" else 0))
    return found[:limit] if limit else found


def _plural_noun(word: str) -> bool:
    word = word.lower()
    return word.endswith("s") and not word.endswith("ss") and word not in STOP_WORDS and len(word) > 2


def keyphrases(passage: str, top: int = 10) -> list[str]:
    """YAKE's key phrases of a passage (one to three words, as written there, best first)."""
    try:
        import yake
    except ImportError:
        raise RagftError("answer-first synthesis picks key phrases with YAKE: pip install 'ragft[synth]'") from None
    extractor = yake.KeywordExtractor(lan="en", n=3, top=top, dedupLim=0.7)
    out = []
    for phrase, _score in extractor.extract_keywords(passage):
        words = phrase.split()
        if words[0].lower() in STOP_WORDS or words[-1].lower() in STOP_WORDS or phrase not in passage:
            continue
        out.append(phrase)
    return out
