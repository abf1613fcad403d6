"""Answer and retrieval metrics. Answer metrics follow the official SQuAD v1.1 scorer."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

METRICS = ("f1", "em")
"""Question answering's metrics in reports made before the lenient match; a task's first metric is its primary one."""
LABELS = {"f1": "F1", "em": "EM", "acc": "lenient", "ex": "EX", "valid": "valid SQL"}


def metric_names(report: dict[str, Any]) -> list[str]:
    """A report's metrics, primary first (reports from before tasks other than QA: F1, EM)."""
    return list(report.get("metric_names", METRICS))


def label(metric: str) -> str:
    """A metric's name in tables: F1, EM, lenient, EX, valid SQL."""
    return LABELS.get(metric, metric.upper())


_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace (SQuAD v1.1)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in answers))


def lenient_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if a normalised gold answer appears in the normalised prediction as whole words
    (FlashRAG's `acc`, on word boundaries): right content in any form, a sentence included."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(gold and f" {gold} " in pred for gold in map(normalize_answer, answers)))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best token-overlap F1 against the gold answers."""
    return max((_f1(prediction, a) for a in answers), default=0.0)


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def recall_at_k(retrieved: Sequence[str], relevant: set[str] | Sequence[str], k: int) -> float:
    """Fraction of the relevant ids found among the first k retrieved ids."""
    relevant = set(relevant)
    if not relevant:
        return 0.0
    return len(relevant & set(retrieved[:k])) / len(relevant)


def ndcg_at_k(retrieved: Sequence[str], relevance: dict[str, int], k: int) -> float:
    """Normalised discounted cumulative gain at k with graded relevance (BEIR/trec_eval)."""
    import math

    gains = [relevance.get(doc, 0) for doc in retrieved[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevance.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(retrieved: Sequence[str], relevant: set[str] | Sequence[str], k: int) -> float:
    """Reciprocal rank of the first relevant id within the first k (0 if none)."""
    relevant = set(relevant)
    for rank, doc in enumerate(retrieved[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def final_answer(output: str) -> str:
    """The answer in an output: what follows the last `Answer:` (outputs that quote their
    passage first), else the whole output."""
    head, marker, tail = output.rpartition("Answer:")
    return tail.strip() if marker else output.strip()


QA_SCORING = "squad em/f1 and lenient match of the final answer"
"""What `qa_scores` computes, for the prediction keys: a change here rescores every prediction."""


def qa_scores(prediction: str, answers: tuple[str, ...]) -> dict[str, float]:
    """SQuAD exact match and token F1 of the prediction's final answer, and the lenient
    match (a gold answer among its words, whatever else it says)."""
    prediction = final_answer(prediction)
    return {
        "em": exact_match(prediction, answers),
        "f1": token_f1(prediction, answers),
        "acc": lenient_match(prediction, answers),
    }
