"""Statistics in the suite tables (ci95, mean_rank) and significance.csv, checked against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from peftbench.results.statistics import ci95_half_width, mean_rank, t_test_over_seeds, wilcoxon_over_tasks

T_975_DF2 = 4.302653  # t_{0.975, 2} from a printed t table


def test_ci95_half_width_by_hand():
    # 60, 62, 64: sample std 2, n 3; 1, 3: sample std sqrt(2), n 2, t_{0.975, 1} = 12.7062
    assert ci95_half_width([60.0, 62.0, 64.0]) == pytest.approx(T_975_DF2 * 2 / math.sqrt(3), rel=1e-6)
    assert ci95_half_width([1.0, 3.0]) == pytest.approx(12.7062, rel=1e-5)
    assert ci95_half_width([70.0]) is None


def test_wilcoxon_over_six_tasks_by_hand():
    # A - B = 1, 2, 3, -4, 5, 6: the negative rank sum is 4; subsets of {1..6} summing to <= 4 are
    # {}, {1}, {2}, {3}, {1,2}, {4}, {1,3}: 7 of 64, so the two-sided exact p is 2 * 7 / 64
    result = wilcoxon_over_tasks([1.0, 2.0, 3.0, 0.0, 5.0, 6.0], [0.0, 0.0, 0.0, 4.0, 0.0, 0.0])
    assert result["statistic"] == 4.0 and result["p_value"] == pytest.approx(14 / 64)
    assert result["note"] == "" and result["n_a"] == 6 and result["mean_diff"] == pytest.approx(13 / 6)


@pytest.mark.parametrize(("a", "b", "note"), [
    ([70.0], [60.0], "needs at least 2 tasks that both rows have (1)"),
    ([70.0, 60.0], [70.0, 60.0], "equal means on every shared task: nothing to test"),
])
def test_wilcoxon_without_enough_tasks_says_why(a, b, note):
    result = wilcoxon_over_tasks(a, b)
    assert result["note"] == note and result["statistic"] is None and result["p_value"] is None


@pytest.mark.parametrize(("a", "b", "test", "note"), [
    ({0: 70.0}, {0: 60.0}, "paired t", "needs at least 2 seeds (1)"),
    ({0: 70.0, 1: 72.0}, {0: 60.0, 1: 62.0}, "paired t", "the same difference on every seed: t is undefined"),
    ({0: 70.0, 1: 72.0}, {5: 60.0}, "welch t", "needs at least 2 seeds in each row (2 and 1)"),
    ({0: 70.0, 1: 70.0}, {2: 60.0, 3: 60.0}, "welch t", "no spread over seeds in either row: t is undefined"),
])
def test_t_test_without_enough_seeds_says_why(a, b, test, note):
    result = t_test_over_seeds(pd.Series(a), pd.Series(b))
    assert (result["test"], result["note"]) == (test, note)
    assert result["statistic"] is None and result["p_value"] is None


def test_mean_rank_by_hand_with_ties_and_a_missing_task():
    table = pd.DataFrame({
        "backbone": ["b16", "b16", "b16", "s16"],
        "t1": [90.0, 85.0, 70.0, 10.0],
        "t2": [80.0, 80.0, 60.0, 10.0],  # a tie for first: 1.5 each
        "t3": [None, 70.0, 75.0, 10.0],  # the first row has no t3: ranked on t1, t2 only
    })
    ranks = mean_rank(table, ("t1", "t2", "t3"))
    # t1 ranks 1, 2, 3; t2 ranks 1.5, 1.5, 3; t3 ranks -, 2, 1; the s16 row is alone on its backbone
    assert ranks.tolist() == pytest.approx([(1 + 1.5) / 2, (2 + 1.5 + 2) / 3, (3 + 3 + 1) / 3, 1.0])
