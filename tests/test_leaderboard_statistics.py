"""Statistics in the suite tables (ci95, mean_rank) and significance.csv, checked against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from peftbench.cli.leaderboard import main as leaderboard_main
from peftbench.results.leaderboard import build
from peftbench.results.statistics import ci95_half_width, mean_rank, t_test_over_seeds, wilcoxon_over_tasks
from tests.test_leaderboard_reference import write_run

T_975_DF2 = 4.302653  # t_{0.975, 2} from a printed t table
# one task per suite table; the embedded suite takes its task names from the runs
SUITE_TASK = {"vtab1k": ("vtab", "cifar"), "fgvc": ("fgvc", "cub"), "embedded": ("embedded", "digits")}
LORA = (60.0, 62.0, 64.0)  # mean 62, sample std 2
ADAPTER = (50.0, 51.0, 55.0)  # mean 52, sample std sqrt(7)


def _read(tmp_path, name):
    return pd.read_csv(tmp_path / "leaderboard" / f"{name}.csv")


def _write_seeds(tmp_path, accs, **kwargs):
    for seed, acc in enumerate(accs):
        write_run(tmp_path, seed=seed, acc=acc, **kwargs)


def test_every_suite_table_has_ci95_mean_rank_and_significance(tmp_path):
    for suite, task in SUITE_TASK.values():
        _write_seeds(tmp_path, LORA, task=task, suite=suite, method="lora")
        _write_seeds(tmp_path, ADAPTER, task=task, suite=suite, method="adapter")
    board = build(tmp_path)
    assert board.too_few_seeds == []
    tested = _read(tmp_path, "significance")
    for name, (_, task) in SUITE_TASK.items():
        table = _read(tmp_path, name).set_index("method")
        assert table.loc["lora", f"{task}_ci95"] == pytest.approx(T_975_DF2 * 2 / math.sqrt(3), rel=1e-6)
        assert table.loc["adapter", f"{task}_ci95"] == pytest.approx(T_975_DF2 * math.sqrt(7) / math.sqrt(3), rel=1e-6)
        assert table.loc["lora", f"{task}_n"] == 3
        assert table.loc["lora", "mean_rank"] == 1.0 and table.loc["adapter", "mean_rank"] == 2.0
        per_task = tested[(tested["table"] == name) & (tested["over"] == "seeds")]
        assert per_task["task"].tolist() == [task]  # one pair (adapter before lora), one task
        assert per_task["method_a"].tolist() == ["adapter"] and per_task["method_b"].tolist() == ["lora"]
        assert per_task["test"].tolist() == ["paired t"] and per_task["n_a"].tolist() == [3]


def test_paired_t_over_seeds_and_wilcoxon_over_tasks_by_hand(tmp_path):
    _write_seeds(tmp_path, LORA, task="cifar", method="lora")
    _write_seeds(tmp_path, ADAPTER, task="cifar", method="adapter")  # adapter - lora per seed: -10, -11, -9
    _write_seeds(tmp_path, (70.0, 71.0, 75.0), task="dtd", method="lora")
    _write_seeds(tmp_path, (72.0, 75.0), task="dtd", method="adapter")  # seeds 0, 1 only: not paired
    _write_seeds(tmp_path, (90.0, 90.0), task="svhn", method="lora", backbone="vit_s16")  # another backbone
    build(tmp_path)
    tested = _read(tmp_path, "significance").set_index(["over", "task"], drop=False)
    assert set(tested["backbone"]) == {"vit_b16_in21k"}  # a row alone on its backbone is compared with nothing

    paired = tested.loc[("seeds", "cifar")]
    t = -10 / (1 / math.sqrt(3))  # mean difference / (sample std of the differences / sqrt(n))
    assert paired["statistic"] == pytest.approx(t)
    # Student's t with 2 degrees of freedom: P(|T| > t) = 1 - |t| / sqrt(2 + t^2)
    assert paired["p_value"] == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t))
    assert paired["mean_diff"] == pytest.approx(-10.0)

    welch = tested.loc[("seeds", "dtd")]
    assert welch["test"] == "welch t" and (welch["n_a"], welch["n_b"]) == (2, 3)
    assert welch["statistic"] == pytest.approx((73.5 - 72.0) / math.sqrt(4.5 / 2 + 7 / 3))
    assert 0 < welch["p_value"] < 1

    over_tasks = tested[tested["over"] == "tasks"].iloc[0]
    # differences -10 and +1.5: ranks 2 and 1, the smaller rank sum is 1; exact p = 2 * P(W <= 1) = 2 * 2 / 4
    assert over_tasks["test"] == "wilcoxon signed-rank" and over_tasks["n_a"] == 2
    assert over_tasks["statistic"] == 1.0 and over_tasks["p_value"] == pytest.approx(1.0)
    assert "needs at least 6" in over_tasks["note"]


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


def test_a_single_seed_leaves_ci95_empty_and_is_said_once_per_table(tmp_path, capsys):
    for method in ("lora", "adapter"):
        for task in ("cifar", "dtd"):
            write_run(tmp_path, task=task, method=method, acc=60.0)
    _write_seeds(tmp_path, LORA, task="svhn", method="lora")
    _write_seeds(tmp_path, ADAPTER, task="svhn", method="adapter")
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.count("ci95 needs at least 2 seeds") == 1
    assert "vtab1k: ci95 needs at least 2 seeds (1 run): cifar (2 rows), dtd (2 rows)" in out
    table = _read(tmp_path, "vtab1k")
    assert table["cifar_ci95"].isna().all() and (table["cifar_n"] == 1).all()
    assert table["svhn_ci95"].notna().all()
    tested = _read(tmp_path, "significance").set_index("task")
    assert tested.loc["cifar", "note"] == "needs at least 2 seeds (1)" and pd.isna(tested.loc["cifar", "p_value"])
