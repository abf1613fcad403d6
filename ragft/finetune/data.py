"""SFT records from examples: chat prompt, answer + EOS; the loss sees answer tokens only.

For `rag+ft`, the training prompt carries context from the same retriever used at
inference: the gold passage among retrieved distractors, with the gold left out of a
fraction of records (RAFT), so the model learns to read, quote and ignore noise.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ragft.errors import InputError
from ragft.metrics import normalize_answer
from ragft.types import Chunk, Example, Hit

IGNORE = -100
"""Label value that the loss skips."""


@dataclass(frozen=True)
class SFTRecord:
    example_id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    truncated: bool
    """True when context tokens were cut to fit the maximum length."""


def make_record(
    example_id: str, prompt_ids: Sequence[int], answer_ids: Sequence[int], eos_id: int, max_length: int
) -> SFTRecord:
    """Join prompt and answer (+EOS), masking the prompt from the loss.

    Too long a record loses prompt tokens from the middle (where retrieved context sits;
    the system line and the question at the end stay); the answer is never cut.
    """
    answer = list(answer_ids) + [eos_id]
    prompt, truncated = fit_prompt(example_id, prompt_ids, len(answer), max_length)
    labels = [IGNORE] * len(prompt) + answer
    if all(label == IGNORE for label in labels):
        raise InputError(f"example {example_id!r}: no answer token left in the loss")
    return SFTRecord(example_id, tuple(prompt + answer), tuple(labels), truncated)


def fit_prompt(
    example_id: str, prompt_ids: Sequence[int], answer_length: int, max_length: int
) -> tuple[list[int], bool]:
    """The prompt cut to leave `answer_length` tokens within `max_length`: tokens go from the
    middle (where retrieved context sits; the system line and the question at the end stay).
    Returns (prompt, whether it was cut)."""
    prompt = list(prompt_ids)
    keep_head = 24
    room = max_length - answer_length
    if room < keep_head * 2:
        raise InputError(
            f"example {example_id!r}: answer of {answer_length} tokens leaves no room for the prompt "
            f"within finetune.max_length={max_length}"
        )
    if len(prompt) <= room:
        return prompt, False
    return prompt[:keep_head] + prompt[-(room - keep_head) :], True


def gold_chunk(example: Example, chunks_by_doc: dict[str, list[Chunk]]) -> Chunk | None:
    """The chunk of the example's document that contains its answer (else None)."""
    candidates = chunks_by_doc.get(example.doc_id or "", [])
    for answer in example.answers:
        needle = answer.lower()
        for c in candidates:
            if needle in c.text.lower():
                return c
    norm = [normalize_answer(a) for a in example.answers]
    for c in candidates:
        if any(n and n in normalize_answer(c.text) for n in norm):
            return c
    return None


def raft_passages(
    example: Example,
    hits: Sequence[Hit],
    gold: Chunk | None,
    n_passages: int,
    p_no_gold: float,
    rng: random.Random,
) -> list[Chunk]:
    """Gold passage at a random place among retrieved distractors; no gold with chance p."""
    answers = [a.lower() for a in example.answers]
    distractors = [
        h.chunk
        for h in hits
        if (gold is None or h.chunk.id != gold.id) and not any(a in h.chunk.text.lower() for a in answers)
    ]
    if gold is None or rng.random() < p_no_gold:
        return distractors[:n_passages]
    passages = distractors[: n_passages - 1]
    passages.insert(rng.randrange(len(passages) + 1), gold)
    return passages


def quoted_answer(passage: str | None, answer: str) -> str:
    """The training target of `finetune.quote`: the passage's sentence that holds the answer,
    quoted, then the answer (`Answer: ...` alone where the passage is not shown or lacks it)."""
    if passage:
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(passage.split())):
            if answer.lower() in sentence.lower():
                return f'Quote: "{sentence}"\nAnswer: {answer}'
    return f"Answer: {answer}"
