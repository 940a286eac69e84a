"""Figures and the summary page: PNGs written, each with a CSV of exactly its points."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from peftbench.cli.leaderboard import main as leaderboard_main
from peftbench.results.plots import ZERO_PARAMS_M
from peftbench.results.suites import VTAB_TASKS
from tests.test_leaderboard_reference import write_reference, write_run

pytest.importorskip("matplotlib")


def _sweep(tmp_path):
    for i, task in enumerate(VTAB_TASKS):
        write_run(tmp_path, task=task, method="lora", acc=70.0 + i % 3, params=294_912, mem=3000.0, img_s=300.0)
        write_run(tmp_path, task=task, method="linear", family="baseline", acc=50.0, params=0, mem=1000.0, img_s=900.0)
    write_run(tmp_path, task="cifar", method="ssf", acc=80.0, params=200_000)  # one task only
    write_run(tmp_path, task="cifar", method="lora", backbone="vit_l16_in21k", acc=85.0, params=786_432)
    write_reference(tmp_path / "reference", {"LoRA": ("lora", "vit_b16_in21k", [72.0] * 19, 0.29),
                                             "NOAH": ("", "vit_b16_in21k", [73.0] * 19, 0.43)})


def test_plots_and_summary_show_ours_and_the_papers(tmp_path, capsys):
    _sweep(tmp_path)
    assert leaderboard_main(["--results-dir", str(tmp_path)]) == 0
    plots = tmp_path / "leaderboard" / "plots"
    params = pd.read_csv(plots / "vtab1k_vit_b16_in21k_acc_vs_params.csv")
    ours = params[params["series"] == "ours"].set_index("label")
    assert ours.loc["lora", "y"] == pytest.approx(sum(70.0 + i % 3 for i in range(19)) / 19)
    assert ours.loc["linear", "x"] == 0 and ours.loc["linear", "x_plotted"] == ZERO_PARAMS_M
    assert not ours.loc["ssf (1 tasks)", "complete"]
    assert ours.loc["ssf (1 tasks)", "y"] == 80.0
    papers = params[params["series"] == "paper"].set_index("label")
    assert sorted(papers.index) == ["LoRA", "NOAH"]
    assert papers.loc["LoRA", "family"] == "partial"  # the family of our method of the same name
    assert papers.loc["NOAH", "y"] == pytest.approx(73.0) and papers.loc["NOAH", "x"] == pytest.approx(0.43)
    # the other backbone gets its own figures, without the ViT-B/16 papers
    other = pd.read_csv(plots / "vtab1k_vit_l16_in21k_acc_vs_params.csv")
    assert set(other["series"]) == {"ours"}
    memory = pd.read_csv(plots / "vtab1k_vit_b16_in21k_acc_vs_memory.csv").set_index("label")
    assert memory.loc["lora", "x"] == 3000.0 and set(memory["series"]) == {"ours"}
    speed = pd.read_csv(plots / "vtab1k_vit_b16_in21k_acc_vs_throughput.csv").set_index("label")
    assert speed.loc["linear", "x"] == 900.0
    for csv in plots.glob("*.csv"):
        png = csv.with_suffix(".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "leaderboard" / "summary.md").read_text()
    assert "![vtab1k_vit_b16_in21k_acc_vs_params](plots/vtab1k_vit_b16_in21k_acc_vs_params.png)" in summary
    assert "| vit_b16_in21k | lora |" in summary and "test source for LoRA" in summary
    assert "ours − paper" in summary
    assert "vtab1k: 2 backbones" in capsys.readouterr().out


def test_no_plots_skips_figures(tmp_path):
    _sweep(tmp_path)
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0
    assert not (tmp_path / "leaderboard" / "plots").exists()
    assert not (tmp_path / "leaderboard" / "summary.md").exists()
    assert (tmp_path / "leaderboard" / "vtab1k_vs_reference.csv").exists()


def test_missing_matplotlib_says_which_extra_to_install(tmp_path, capsys, monkeypatch):
    _sweep(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    assert leaderboard_main(["--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "plots extra" in err and "--no-plots" in err and "Traceback" not in err
    assert leaderboard_main(["--results-dir", str(tmp_path), "--no-plots"]) == 0
