"""Per-task values (one mechanism for any key), dry_run, the warmup cap, and identity across added keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peftbench.assemble import parse_spec
from peftbench.config import compose
from peftbench.errors import ConfigError
from peftbench.identity import ADDED_DEFAULTS, config_hash
from peftbench.paths import config_groups, suite_tasks
from peftbench.per_task import command_line_keys, resolve_per_task

TABLE = {
    "vtab": {"cifar": {"trainer.lr": 0.05, "method.rank": 4}, "dtd": {"backbone.drop_path_rate": 0.2}},
    "fallback": {"values": {"trainer.lr": 0.01}, "note": "the source lists VTAB-1k only"},
}


def _cfg(dataset: str = "vtab/cifar", *extra: str) -> dict:
    cfg = compose([f"dataset={dataset}", "method=lora", *extra])
    cfg["per_task"] = TABLE
    return cfg


def test_the_task_entry_is_written_into_the_config_and_the_table_leaves_it():
    out, res = resolve_per_task(_cfg(), suite_tasks())
    assert "per_task" not in out
    assert out["trainer"]["lr"] == 0.05 and out["method"]["rank"] == 4
    assert (res.source, res.values, res.command_line) == ("vtab/cifar", {"trainer.lr": 0.05, "method.rank": 4}, [])
    out, res = resolve_per_task(_cfg("vtab/dtd"), suite_tasks())
    assert out["backbone"]["drop_path_rate"] == 0.2 and out["trainer"]["lr"] == 1e-3
    assert res.source == "vtab/dtd"


def test_a_task_the_table_does_not_list_takes_the_fallback_and_says_so():
    out, res = resolve_per_task(_cfg("embedded/dsprites_loc"), suite_tasks())
    assert out["trainer"]["lr"] == 0.01
    assert res.source == "fallback" and res.note == "the source lists VTAB-1k only"
    assert "fallback used" in res.describe() and "VTAB-1k only" in res.describe()


def test_a_key_given_on_the_command_line_wins_over_the_table():
    keys = command_line_keys(["trainer.lr=0.3", "dataset=vtab/cifar", "+x.y=1", "~z"])
    assert keys == {"trainer.lr", "dataset", "x.y", "z"}
    cfg = _cfg("vtab/cifar", "trainer.lr=0.3")
    out, res = resolve_per_task(cfg, suite_tasks(), keys)
    assert out["trainer"]["lr"] == 0.3 and out["method"]["rank"] == 4
    assert res.command_line == ["trainer.lr"] and "trainer.lr" not in res.values
    # another method chosen on the command line keeps its own options (method=... counts for method.rank) ...
    _, res = resolve_per_task(_cfg(), suite_tasks(), command_line_keys(["method=lora"], config_groups()))
    assert res.command_line == ["method.rank"]
    # ... but choosing a backbone, dataset or trainer file keeps the table's values for those blocks
    keys = command_line_keys(["backbone=vit_b16_in21k", "trainer=smoke", "hydra/launcher=local"], config_groups())
    assert keys == set()
    out, res = resolve_per_task(_cfg("vtab/dtd"), suite_tasks(), keys)
    assert out["backbone"]["drop_path_rate"] == 0.2 and res.command_line == []


@pytest.mark.parametrize("table, match", [
    ({"vtab": {"cifarr": {"trainer.lr": 1.0}}}, "not a vtab task; valid tasks: .*caltech101"),
    ({"vtabb": {}}, "valid suites: embedded, fgvc, vtab"),
    ({"vtab": {"cifar": {"trainer.lrr": 1.0}}}, "'trainer.lrr', which is not a key"),
    ({"fallback": {"values": {}, "notes": "x"}}, "per_task.fallback must be"),
    ({"vtab": ["cifar"]}, "must map task names"),
    ("cifar", "per_task must be a mapping"),
])
def test_a_malformed_table_is_an_error_for_every_task(table, match):
    cfg = compose(["dataset=embedded/dsprites_loc"])  # an entry of another task is still checked
    cfg["per_task"] = table
    with pytest.raises(ConfigError, match=match):
        resolve_per_task(cfg, suite_tasks())


def test_the_spec_records_the_resolution_and_caps_a_warmup_longer_than_the_run():
    cfg = _cfg("vtab/cifar", "trainer.epochs=3")
    spec = parse_spec(cfg, command_line=["dataset=vtab/cifar", "trainer.epochs=3"])
    assert spec.trainer.lr == 0.05 and spec.config["trainer"]["lr"] == 0.05
    assert spec.trainer.warmup_epochs == 3 and spec.config["trainer"]["warmup_epochs"] == 3
    assert spec.adjustments == ["trainer.warmup_epochs 10 -> 3: capped at trainer.epochs"]
    assert spec.per_task.source == "vtab/cifar"


def test_keys_added_with_their_neutral_default_leave_the_identity_unchanged():
    cfg = compose(["method=lora"])
    before = json.loads(json.dumps(cfg))
    for dotted in ADDED_DEFAULTS:
        node = before
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        del node[leaf]
    assert config_hash(cfg, "fp32") == config_hash(before, "fp32")
    changed = compose(["method=lora", "trainer.drop_last=true"])
    assert config_hash(changed, "fp32") != config_hash(cfg, "fp32")


@pytest.mark.slow
def test_dry_run_prints_the_resolved_config_block_of_the_result_json(tmp_path: Path):
    common = ["method=lora", "trainer=smoke", "trainer.epochs=1", "trainer.num_threads=1",
              f"paths.results_dir={tmp_path}", f"data.root={tmp_path / 'data'}"]
    dry = subprocess.run([sys.executable, "-m", "peftbench.cli.train", *common, "dry_run=true"],
                         capture_output=True, text=True, check=True, timeout=300)
    printed = json.loads(dry.stdout)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # nothing trained or read
    from tests.tiny_data import embedded_tiny

    embedded_tiny(tmp_path / "data")  # the small copy of the embedded task (tests/tiny_data.py), for the real run
    subprocess.run([sys.executable, "-m", "peftbench.cli.train", *common], capture_output=True, text=True,
                   check=True, timeout=300)
    result = json.loads(next((tmp_path / "runs").rglob("result.json")).read_text())
    assert printed["config"] == result["config"]
    assert printed["config_hash"] == result["config_hash"] and printed["run_dir"] == result["run_dir"]
    assert result["adjustments"] == ["trainer.warmup_epochs 2 -> 1: capped at trainer.epochs"]
    assert "per_task" not in result  # the default config has no table


def test_an_unknown_recipe_lists_the_valid_ones():
    proc = subprocess.run([sys.executable, "-m", "peftbench.cli.train", "experiment=nosuch/recipe", "dry_run=true"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown experiment 'nosuch/recipe'" in proc.stderr
