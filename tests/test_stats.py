"""The statistics behind every interval and p-value: the cluster bootstrap against cases
with a known answer, seeds inside the interval, Holm on a worked example, detectable size."""

import numpy as np
import pytest

from ragft.metrics import lenient_match
from ragft.stats import bootstrap, detectable, holm, paired_difference


def _clustered(per_cluster: int = 10, clusters: int = 12, seed: int = 1):
    """Scores where every question of a cluster scores the same (its cluster's mean)."""
    means = np.random.default_rng(seed).random(clusters)
    return means, np.repeat(means, per_cluster), [f"doc{i}" for i in range(clusters) for _ in range(per_cluster)]


def test_clustered_interval_of_identical_questions_is_the_interval_over_cluster_means():
    means, values, groups = _clustered()
    clustered, over_means = bootstrap(values, 2000, 0, groups), bootstrap(means, 2000, 0)
    assert (clustered.low, clustered.high) == pytest.approx((over_means.low, over_means.high), abs=1e-12)
    assert clustered.clusters == 12
    # Treating the 120 questions as independent claims far more certainty than 12 clusters hold.
    per_question = bootstrap(values, 2000, 0)
    assert (per_question.high - per_question.low) < 0.5 * (clustered.high - clustered.low)


def test_clustered_paired_difference_is_wider_and_its_p_value_honest():
    # b beats a on 6 of 12 documents and loses on 6, each by all its questions at once: no real difference.
    _, _, groups = _clustered()
    b = np.repeat([1.0, -1.0] * 6, 10) * 0.5 + 0.5
    a = np.full(120, 0.5)
    independent, clustered = paired_difference(a, b, 2000, 0), paired_difference(a, b, 2000, 0, groups)
    assert clustered.mean == pytest.approx(0.0) and clustered.p_value == 1.0
    assert clustered.high - clustered.low > 2.5 * (independent.high - independent.low)
    assert clustered.detectable > 2.5 * independent.detectable
    # A document-level gain that is real survives clustering.
    gain = paired_difference(a, np.repeat([1.0] * 10 + [0.5] * 2, 10), 2000, 0, groups)
    assert gain.low > 0 and gain.p_value < 0.01


def test_seeds_enter_the_interval():
    _, values, groups = _clustered()
    one = bootstrap(values, 2000, 0, groups)
    same = bootstrap([values, values], 2000, 0, groups)
    assert (same.low, same.high) == pytest.approx((one.low, one.high)) and same.seeds == 2  # identical seeds: no wider
    spread = bootstrap([values - 0.2, values + 0.2], 2000, 0, groups)
    assert spread.mean == pytest.approx(one.mean) and spread.seeds == 2
    assert spread.high - spread.low > (one.high - one.low) + 0.2


def test_holm_on_a_worked_example():
    # Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_detectable_difference_is_found_80_percent_of_the_time():
    se = 0.04
    delta = detectable(se)
    assert delta == pytest.approx(2.8016 * se, rel=1e-4)
    estimates = np.random.default_rng(0).normal(delta, se, 200_000)
    assert np.mean(np.abs(estimates) / se > 1.959964) == pytest.approx(0.8, abs=0.005)


def test_lenient_match_finds_the_answer_inside_a_sentence_on_word_boundaries():
    assert lenient_match("I believe the answer is Yes, it does.", ["yes"]) == 1.0
    assert lenient_match("Jonas Merriweather keeps it", ["jonas merriweather"]) == 1.0
    assert lenient_match("yesterday", ["yes"]) == 0.0
    assert lenient_match("anything", [""]) == 0.0


def test_examples_name_their_cluster_by_group_field_or_by_squad_article(tmp_path):
    import json

    from ragft.tasks.qa import load_examples

    rows = [
        {"id": "a", "question": "q?", "answers": ["x"], "split": "test", "doc_id": "d1", "group": "survey-7"},
        {"id": "b", "question": "q?", "answers": ["x"], "split": "test", "doc_id": "d2"},
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [e.group for e in load_examples(tmp_path / "qa.jsonl")] == ["survey-7", None]
    qa = [{"id": f"q{n}", "question": "q?", "answers": [{"text": "x", "answer_start": 0}]} for n in range(2)]
    paragraphs = [{"context": "x", "qas": [qa[0]]}, {"context": "x", "qas": [qa[1]]}]
    (tmp_path / "squad.json").write_text(json.dumps({"data": [{"title": "Harbour", "paragraphs": paragraphs}]}))
    squad = load_examples(tmp_path / "squad.json")
    assert [(e.doc_id, e.group) for e in squad] == [("Harbour/0", "Harbour"), ("Harbour/1", "Harbour")]
