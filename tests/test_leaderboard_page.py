"""The leaderboard's index.html: self-contained, made from the tables, and working in a real headless browser
(Chromium driven by Selenium: no console error, sorting reorders rows, a filter hides rows, a screenshot).

The runs are JSONs written the way runs write them (three methods x 19 VTAB-1k tasks x 2 seeds on the ViT-B/16
name, so the published tables match and every part of the page has data).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from peftbench.atomic import write_json_atomic
from peftbench.cli.leaderboard import main as leaderboard_main
from peftbench.identity import config_hash, run_dir
from peftbench.results.leaderboard import build, schedule
from peftbench.results.page import PAGE
from peftbench.results.suites import VTAB_TASKS

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
# method -> (family, trainable params without head, peak memory MB, accuracy offset, lr)
METHODS = {"lora": ("partial", 294_912, 900.0, 0.0, 1e-3), "adapter": ("addition", 157_440, 850.0, -2.0, 1e-3),
           "linear": ("baseline", 0, 300.0, -15.0, 1e-2)}
# the recipes of the published rows, so the runs are set beside them (the heat map)
RECIPES = {"lora": "noah/lora", "adapter": "noah/adapter", "linear": "vpt/linear"}


def _write(results: Path, method: str, task: str, seed: int, acc: float) -> None:
    family, params, memory, _, lr = METHODS[method]
    cfg = {"backbone": {"name": "vit_b16_in21k"}, "method": {"name": method},
           "dataset": {"name": task, "suite": "vtab"}, "optim": {"name": "adamw"},
           "trainer": {"lr": lr, "weight_decay": 1e-4, "batch_size": 64, "epochs": 100, "warmup_epochs": 10},
           "seed": seed, "protocol": "final", "recipe": {"name": RECIPES[method]}}
    h = config_hash(cfg)
    write_json_atomic(run_dir(results, cfg, h) / "result.json", {
        "status": "success", "message": "", "suite": "vtab", "task": task, "backbone": "vit_b16_in21k",
        "method": method, "family": family, "subfamily": "", "protocol": "final", "seed": seed, "config_hash": h,
        "finished_at": "2026-01-01T00:00:00", "config": cfg, "device": "NVIDIA H100",
        "metrics": {"accuracy": acc, "trainable_params": params + 76_900, "trainable_params_without_head": params,
                    "trainable_percent": params / 85.8e6 * 100, "peak_train_mem_mb": memory, "train_img_s": 900.0},
    })


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    """The leaderboard folder with index.html."""
    results = tmp_path_factory.mktemp("page")
    for method, (*_, offset, _lr) in METHODS.items():
        for i, task in enumerate(VTAB_TASKS):
            for seed in (0, 1):
                _write(results, method, task, seed, 60.0 + i + offset + 0.5 * seed)
    written = build(results, reference_dir=REFERENCE, page=True).written
    assert written["page"] == results / "leaderboard" / PAGE
    return results / "leaderboard"


def test_the_page_is_self_contained(board):
    page = (board / PAGE).read_text()
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", page)  # nothing remote
    assert page.count("<script") >= 2 and "Plotly.newPlot" in page  # Plotly's bundle and the page's script inlined
    assert page.count('class="plotly-graph-div') == 3  # heat map, accuracy vs params, vs memory
    assert 'id="table-vtab1k"' in page and "±" in page and 'id="table-significance"' in page


def test_rows_carry_their_schedule_and_link_their_runs(board):
    table = pd.read_csv(board / "vtab1k.csv").set_index("method")
    assert table.loc["linear", "schedule"] == "adamw lr 0.01 wd 0.0001 bs 64 ep 100 warmup 10"
    assert schedule({"optim": {"name": "sgd"}, "trainer": {"lr": 0.1, "label_smoothing": 0.1}}) == "sgd lr 0.1 ls 0.1"
    page = (board / PAGE).read_text()
    links = re.findall(r'<a href="([^"]+result\.json)">', page)
    assert len(links) == 3 * 19 * 2 and all((board / link).resolve().is_file() for link in links)


def test_the_page_is_made_again_from_tables_alone(board, tmp_path):
    assert leaderboard_main(["--page-only", "--out", str(board), "--page-out", str(tmp_path),
                             "--reference-dir", str(REFERENCE)]) == 0
    page = (tmp_path / PAGE).read_text()
    assert page.count('class="plotly-graph-div') == 3
    assert all((tmp_path / link).resolve().is_file() for link in re.findall(r'<a href="([^"]+result\.json)">', page))
    assert leaderboard_main(["--page-only", "--out", str(tmp_path / "nothing")]) == 2


@pytest.fixture(scope="module")
def driver():
    pytest.importorskip("selenium")
    from tests.browser import chrome, ensure_chromium

    found = ensure_chromium()
    if isinstance(found, str):
        pytest.skip(found)
    with chrome() as d:
        yield d


def _methods(driver) -> list[str]:
    rows = driver.find_elements("css selector", "#table-vtab1k tbody tr")
    return [r.find_element("css selector", "td").text for r in rows if r.is_displayed()]


def test_the_page_works_in_a_headless_browser(board, driver, tmp_path):
    from selenium.webdriver.support.ui import Select

    from tests.browser import open_page

    open_page(driver, board / PAGE)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    remote = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('file:'))")
    assert remote == []
    assert driver.execute_script("return document.querySelectorAll('.js-plotly-plot').length") == 3

    header = next(th for th in driver.find_elements("css selector", "#table-vtab1k th") if th.text == "mean")
    header.click()
    assert _methods(driver) == ["linear", "adapter", "lora"]  # ascending mean
    header.click()
    assert _methods(driver) == ["lora", "adapter", "linear"]

    Select(driver.find_element("id", "filter-family")).select_by_value("addition")
    assert _methods(driver) == ["adapter"]
    assert driver.find_element("id", "count-vtab1k").text == "1 of 3 rows shown"
    Select(driver.find_element("id", "filter-family")).select_by_value("")
    assert len(_methods(driver)) == 3

    png = tmp_path / "page.png"
    assert driver.save_screenshot(str(png)) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
