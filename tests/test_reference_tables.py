"""The shipped published tables in results/reference/: names, sources, transcription and PPT checks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from peftbench.results.reference import (
    SETTING_COLUMNS,
    SUITE_TASKS,
    compare,
    default_options,
    load_reference,
    ppt,
)

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


def test_printed_mean_equals_the_mean_of_the_printed_cells_except_the_documented_rows(reference):
    # catches a mistyped cell: V-PETL Bench prints the plain mean over tasks with two decimals, NOAH's Table 1 the
    # mean of the three group means with one; rows that disagree carry mean_mismatch in their notes
    kind = reference["paper_mean_kind"]
    derived = reference["mean_over_tasks"].where(kind == "mean_over_tasks", reference["mean_of_group_means"])
    tolerance = kind.map({"mean_over_tasks": 0.0051, "mean_of_group_means": 0.051})
    off = reference.loc[(derived - reference["paper_mean"]).abs() > tolerance, "notes"]
    documented = reference.loc[reference["notes"].str.contains("mean_mismatch"), "notes"]
    assert sorted(off.index) == sorted(documented.index)
    assert len(off) <= 3


def test_ppt_formula_reproduces_the_printed_ppt_except_the_documented_rows(reference):
    printed = reference[reference["paper_ppt"].notna()]
    off = {f"{r.suite}/{r.display_name}" for r in printed.itertuples()
           if round(ppt(r.paper_mean, r.params_M * 1e6), 2) != pytest.approx(r.paper_ppt)}
    documented = {f"{r.suite}/{r.display_name}" for r in reference.itertuples() if "ppt_mismatch" in r.notes}
    assert off == documented
    assert len(printed) - len(off) >= 0.85 * len(printed)


def test_setting_columns_name_real_recipes_and_method_options(reference):
    from omegaconf import OmegaConf

    for _, row in reference.iterrows():
        if row["recipe"]:
            recipe = OmegaConf.load(ROOT / "configs" / "experiment" / f"{row['recipe']}.yaml")
            methods = [d["override /method"] for d in recipe.defaults if "override /method" in d]
            assert methods == [row["method"]], row["display_name"]
        options = json.loads(row["method_options"])
        if options:
            assert row["method"], row["display_name"]
            known = set(OmegaConf.load(ROOT / "configs" / "method" / f"{row['method']}.yaml"))
            assert set(options) <= known, (row["display_name"], sorted(set(options) - known))
        if "per_task" in options.values():
            assert row["recipe"], f"{row['display_name']}: per-task options need the recipe that sets them"
        if row["comparable"] == "no" and row["method"]:
            assert "not comparable" in row["notes"] or row["role"] == "second_source", row["display_name"]
        assert row["reports"] != "unknown" or not row["recipe"], row["display_name"]


def test_rows_named_in_the_issue_are_mapped_by_setting(reference):
    vtab = reference[(reference["suite"] == "vtab") & (reference["role"] == "primary")].set_index("display_name")
    assert vtab.loc["NOAH", "recipe"] == "noah/noah" and vtab.loc["LoRA", "recipe"] == "noah/lora"
    assert vtab.loc["FacT", "recipe"] == "fact/fact_tk" and vtab.loc["FacT", "method"] == "fact_tk"
    assert json.loads(vtab.loc["LoRA", "method_options"]) == {"rank": 8, "targets": "qkv"}
    assert (vtab.loc[["Full fine-tuning", "Linear probing", "VPT-Deep"], "reports"] == "last").all()
    fgvc = reference[reference["suite"] == "fgvc"].set_index("display_name")
    assert (fgvc.loc[["Adapter", "AdaptFormer", "LoRA", "VPT-Shallow"], "comparable"] == "no").all()
    assert fgvc.loc["SSF", "params_include_head"] == "yes"
    noah = reference[reference["role"] == "second_source"]
    assert set(noah["display_name"]) == {"Full", "Linear", "VPT", "Adapter", "LoRA", "NOAH"}
    assert (noah["paper_mean_kind"] == "mean_of_group_means").all()


def _ours(method: str, options: dict, recipe: str | None = None) -> pd.DataFrame:
    row = {"backbone": "vit_b16_in21k", "method": method, "method_setting": "x", "method_options": json.dumps(options),
           **{t: 50.0 for t in SUITE_TASKS["vtab"]}}
    if recipe is not None:
        row["recipe"] = recipe
    return pd.DataFrame([row])


def _compare(ours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    return compare({"last": ours, "max_test": ours}, reference, "vtab")


def test_compare_sets_a_run_only_beside_rows_of_its_setting(reference):
    vtab = reference[reference["suite"] == "vtab"]
    same = _compare(_ours("lora", {"rank": 8, "targets": "qkv", "alpha": None}, recipe="noah/lora"), vtab)
    assert set(same["reference"]) == {"LoRA"} and set(same["source"].str[:6]) == {"V-PETL", "NOAH ("}
    assert set(same["reports"]) == {"max_test"}
    # the same method options without NOAH's recipe are another experiment: never set beside its row
    plain = _compare(_ours("lora", {"rank": 8, "targets": "qkv", "alpha": None}), vtab)
    assert plain["reference"].tolist() == [""] and "experiment=noah/lora" in plain["reference_status"].iloc[0]
    fact = _compare(_ours("fact_tk", {"rank": 8, "scale": 10.0}), vtab)
    assert fact["reference"].tolist() == [""] and "experiment=fact/fact_tk" in fact["reference_status"].iloc[0]
    by_recipe = _compare(_ours("fact_tk", {"rank": 32}, recipe="fact/fact_tk"), vtab)
    assert set(by_recipe["reference"]) == {"FacT"} and set(by_recipe["reports"]) == {"max_test"}
    shallow = _compare(_ours("vpt_shallow", {"length": 50}, recipe="vpt/vpt_shallow"), vtab)
    assert "not comparable" in shallow["reference_status"].iloc[0]
    full = _compare(_ours("full", {}, recipe="vpt/full"), vtab)
    assert set(full["reference"]) == {"Full fine-tuning"}  # NOAH's Full row (a typo) is marked not comparable
    assert set(full["reports"]) == {"last"}


def test_rows_without_a_recipe_match_the_registered_defaults_with_their_options(reference):
    vtab = reference[reference["suite"] == "vtab"]
    lst = default_options("lst")
    assert lst is not None and lst["reduction_factor"] == 8
    matched = _compare(_ours("lst", lst), vtab)
    assert set(matched["reference"]) == {"LST"} and set(matched["reports"]) == {"unknown"}
    other = _compare(_ours("lst", {**lst, "reduction_factor": 4}), vtab)
    assert other["reference"].tolist() == [""] and '"reduction_factor": 8' in other["reference_status"].iloc[0]


def test_setting_columns_are_checked(tmp_path):
    frame = pd.read_csv(REFERENCE / "vtab1k_vit_b16.csv", dtype=str, keep_default_na=False)
    from peftbench.errors import DataError

    frame.assign(comparable="maybe").to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DataError, match="comparable holds 'maybe'"):
        load_reference(tmp_path)
    frame.assign(method_options="rank=8").to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(DataError, match="not a JSON object"):
        load_reference(tmp_path)
    frame.drop(columns=list(SETTING_COLUMNS)).to_csv(tmp_path / "x.csv", index=False)
    old = load_reference(tmp_path)  # tables without the setting columns still load, with the defaults
    assert set(old["comparable"]) == {"yes"} and set(old["paper_mean_kind"]) == {"mean_over_tasks"}


def test_the_committed_reproduction_page_is_generated_from_the_tables_and_recipes():
    from peftbench.results.reproduction import reproduction_page

    page = reproduction_page(load_reference(REFERENCE))
    assert (REFERENCE / "REPRODUCE.md").read_text() == page, "regenerate with write_reproduction (README: Paper recipes)"
    assert "experiment=noah/lora sweep=vtab1k backbone=vit_b16_in21k seed=0" in page
    assert page.count("### ") == len(load_reference(REFERENCE))  # every published row has a section
