"""Paper recipes (configs/experiment/): each resolves for every task of its suites and for the embedded tasks
(its stated fallback), builds its typed method there, and a recipe of every source but gps trains end to end on
the embedded default. The recipes' values are checked against their sources in tests/test_recipe_sources.py."""

from __future__ import annotations

import functools

import pytest

from peftbench.apps.train import run
from peftbench.assemble import make_method, parse_spec
from peftbench.config import compose
from peftbench.paths import group_options, suite_tasks

RECIPES = group_options("experiment")
SOURCES = sorted({r.split("/")[0] for r in RECIPES})


@functools.cache
def _dataset_block(option: str) -> dict:
    return compose([f"dataset={option}"])["dataset"]


@functools.cache
def _recipe(recipe: str) -> dict:
    return compose([f"experiment={recipe}"])


def test_every_source_has_recipes():
    assert SOURCES == ["adapter_plus", "convpass", "dtl", "fact", "gps", "hst", "hydra", "noah", "petl_vision",
                       "repadapter", "sct", "ssf", "vpetl", "vpt"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_recipe_resolves_for_every_task_it_can_run(recipe):
    base = _recipe(recipe)
    assert base["recipe"]["name"] == recipe and base["recipe"]["reports"] in ("last", "max_test")
    table = base.get("per_task") or {}
    suites = sorted({"vtab", "embedded", *(s for s in table if s != "fallback")})
    for suite in suites:
        for task in suite_tasks()[suite]:
            plain = {**base, "dataset": _dataset_block(f"{suite}/{task}")}
            spec = parse_spec(plain, command_line=[f"experiment={recipe}", f"dataset={suite}/{task}"])
            listed = task in (table.get(suite) or {})
            assert spec.per_task.source == (f"{suite}/{task}" if listed else "fallback"), (suite, task)
            assert "per_task" not in spec.config and spec.config["recipe"]["name"] == recipe
            make_method(spec.method, task, suite)  # the resolved options build the method's typed config


def test_a_per_task_value_reaches_the_run_and_the_command_line_still_wins():
    base = _recipe("ssf/ssf")
    cifar = base["per_task"]["vtab"]["cifar"]
    plain = {**base, "dataset": _dataset_block("vtab/cifar")}
    spec = parse_spec(plain, command_line=["experiment=ssf/ssf", "dataset=vtab/cifar"])
    assert spec.trainer.lr == cifar["trainer.lr"] and spec.config["trainer"]["lr"] == cifar["trainer.lr"]
    spec = parse_spec({**plain, "trainer": {**plain["trainer"], "lr": 0.123}},
                      command_line=["experiment=ssf/ssf", "dataset=vtab/cifar", "trainer.lr=0.123"])
    assert spec.trainer.lr == 0.123 and spec.per_task.command_line == ["trainer.lr"]


# one recipe of every source; scripts/check_recipes.py runs them all, each at its own precision. Here fp32: fp16
# autocast on a CPU runs emulated kernels (SSF's fp16 took 10x its fp32 time); fp16 itself is tested in
# tests/test_protocol_switches.py. gps/gps is left out: its selection pass alone takes ~14 s of CPU here, and
# gps runs end to end (selection, training, resume) in tests/test_select_methods.py
SAMPLE = ["adapter_plus/adapter_plus", "convpass/convpass", "dtl/dtl", "fact/fact_tk", "hst/hst", "hydra/hydra",
          "noah/lora", "petl_vision/lora", "repadapter/repadapter", "sct/sct", "ssf/ssf", "vpetl/adapter",
          "vpt/vpt_deep"]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from tests.tiny_data import embedded_tiny

    return embedded_tiny(tmp_path_factory.mktemp("embedded_data"))  # the small copy of the embedded task


@pytest.mark.parametrize("recipe", SAMPLE)
def test_a_recipe_trains_end_to_end_on_the_embedded_default(recipe, tmp_path_factory, tiny_root, capsys):
    out = tmp_path_factory.mktemp("runs")
    args = [f"experiment={recipe}", "dataset=embedded/dsprites_loc", "trainer.epochs=1", "trainer.cooldown_epochs=0",
            "trainer.num_threads=1", "trainer.progress=false", "trainer.infer_iters=1", "trainer.infer_warmup=0",
            "trainer.precision=fp32", f"paths.results_dir={out}", f"data.root={tiny_root}"]
    record = run(compose(args), command_line=args)
    assert "fallback used" in capsys.readouterr().out
    assert record.status == "success" and record.per_task is not None and record.per_task.source == "fallback"
    assert record.provenance.config["recipe"]["name"] == recipe
    assert record.metrics.max_eval is not None and record.metrics.max_eval.evaluated_epochs[-1] == 1


def test_noahs_recipe_holds_the_released_subnets_its_published_arch_option_reads():
    # method.arch: published (a count without a dataset, peftbench-params) reads the same subnets the recipe sets
    from peftbench.methods.unified.search.noah_published import PUBLISHED_VTAB

    table = _recipe("noah/noah")["per_task"]["vtab"]
    assert {task: entry["method.arch"] for task, entry in table.items()} == {
        task: {k: list(v) for k, v in arch.items()} for task, arch in PUBLISHED_VTAB.items()}
