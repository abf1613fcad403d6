import pytest

from ragft.metrics import exact_match, normalize_answer, recall_at_k, token_f1
from ragft.stats import bootstrap, paired_difference


def test_squad_normalisation():
    assert normalize_answer("The  Marta Lind!") == "marta lind"
    assert exact_match("the Marta Lind", ["Marta Lind"]) == 1.0
    assert exact_match("Marta", ["Marta Lind"]) == 0.0


def test_token_f1_takes_best_gold_answer():
    assert token_f1("nine members", ["nine"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("nine", ["seven", "nine"]) == 1.0
    assert token_f1("", ["nine"]) == 0.0


def test_recall_at_k():
    assert recall_at_k(["a", "b", "c"], {"c"}, 2) == 0.0
    assert recall_at_k(["a", "b", "c"], {"c"}, 3) == 1.0
    assert recall_at_k(["a", "b"], {"a", "z"}, 2) == 0.5


def test_bootstrap_interval_contains_mean_and_narrows_with_more_data():
    small = bootstrap([0, 1] * 10, samples=2000, seed=0)
    large = bootstrap([0, 1] * 1000, samples=2000, seed=0)
    assert small.low < 0.5 < small.high
    assert (large.high - large.low) < (small.high - small.low) / 5


def test_paired_difference_detects_a_real_gain_and_not_a_null_one():
    a = [0.0] * 50 + [1.0] * 50
    b = [1.0] * 80 + [0.0] * 20
    gain = paired_difference(a, [1.0] * 100, seed=0)
    assert gain.mean == pytest.approx(0.5) and gain.low > 0 and gain.p_value < 0.01
    null = paired_difference(a, a, seed=0)
    assert null.mean == 0 and null.p_value == 1.0
    with pytest.raises(ValueError):
        paired_difference(a, b[:10])


def test_mcnemar_exact():
    from ragft.stats import mcnemar

    # 10 discordant pairs all favouring b: p = 2 * 0.5**10
    a = [0] * 10 + [1] * 5
    b = [1] * 10 + [1] * 5
    assert mcnemar(a, b) == (0, 10, pytest.approx(2 * 0.5**10))
    assert mcnemar([1, 0], [0, 1]) == (1, 1, 1.0)
    assert mcnemar([1, 1], [1, 1])[2] == 1.0
