"""The shipped published tables in results/reference/: names, sources, transcription and PPT checks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from peftbench.results.reference import SUITE_TASKS, load_reference, ppt

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference"


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    table = load_reference(REFERENCE)
    assert not table.empty, "results/reference/ holds no table"
    return table


def test_task_columns_are_peftbench_dataset_names(reference):
    for suite, tasks in SUITE_TASKS.items():
        folder = "vtab" if suite == "vtab" else "fgvc"
        configs = {p.stem for p in (ROOT / "configs" / "dataset" / folder).glob("*.yaml")}
        assert set(tasks) <= configs
        part = reference[reference["suite"] == suite]
        assert not part.empty and part[list(tasks)].notna().all().all()


def test_methods_are_registered_and_families_agree(reference):
    from peftbench.methods.registry import available_methods, get_method_class

    configs = {p.stem for p in (ROOT / "configs" / "method").glob("*.yaml")}
    mapped = reference[reference["method"] != ""]
    assert set(mapped["method"]) <= configs and set(mapped["method"]) <= set(available_methods())
    for _, row in mapped.iterrows():
        assert row["family"] == get_method_class(row["method"]).family, row["display_name"]


def test_every_row_has_a_source_and_a_backbone(reference):
    assert (reference["source"].str.len() > 20).all()
    assert set(reference["backbone"]) == {"vit_b16_in21k"}


def test_printed_mean_equals_the_mean_of_the_printed_cells(reference):
    # catches a mistyped cell: the source's Mean is the plain mean over its tasks, rounded
    diff = (reference["mean_over_tasks"] - reference["paper_mean"]).abs()
    assert (diff <= 0.0051).all(), reference.loc[diff > 0.0051, ["suite", "display_name"]]


def test_ppt_formula_reproduces_the_printed_ppt_except_the_documented_rows(reference):
    printed = reference[reference["paper_ppt"].notna()]
    off = {f"{r.suite}/{r.display_name}" for r in printed.itertuples()
           if round(ppt(r.paper_mean, r.params_M * 1e6), 2) != pytest.approx(r.paper_ppt)}
    documented = {f"{r.suite}/{r.display_name}" for r in reference.itertuples() if "ppt_mismatch" in r.notes}
    assert off == documented
    assert len(printed) - len(off) >= 0.85 * len(printed)
