"""``peftbench-search`` end to end on the small copy of the embedded task (tests/tiny_data.py): supernet -> search -> final -> leaderboard row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.tiny_data import embedded_tiny

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
SMALL = ["search=quick", "search.supernet.epochs=2", "search.final.epochs=1", "search.evolution.generations=2",
         "search.evolution.population=4", "search.evolution.select=2", "search.evolution.mutation=2",
         "search.evolution.crossover=2", "trainer.progress=false", "trainer.device=cpu", "trainer.num_threads=1"]


def _cli(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", module, *args]
    if module != "peftbench.cli.leaderboard":
        cmd += [f"paths.results_dir={tmp_path / 'results'}", f"data.root={tmp_path / 'data'}"]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=900)


def _runs(tmp_path: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((tmp_path / "results" / "runs").rglob("result.json")):
        r = json.loads(p.read_text())
        out[r["protocol"]] = r
    return out


@pytest.mark.slow
def test_search_pipeline_end_to_end_and_relaunch(tmp_path):
    embedded_tiny(tmp_path / "data")
    proc = _cli(tmp_path, "peftbench.cli.search", "method=glora", *SMALL, "search.final.init=supernet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _runs(tmp_path)
    sup, final = runs["tune"], runs["final"]
    assert sup["status"] == final["status"] == "success"
    assert sup["method_config"]["arch"] == "supernet" and (sup["train_split"], sup["eval_split"]) == ("train800", "val200")
    assert (final["train_split"], final["eval_split"]) == ("train800val200", "test")
    s = final["search"]
    assert final["method_config"]["arch"] == s["arch"]  # the final run trained the searched subnet
    assert final["metrics"]["trainable_params_without_head"] == s["params"] <= s["param_limit"]
    assert final["method_config"]["inherit"].endswith("task.safetensors")
    assert set(s["cost"]) == {"supernet", "search", "final", "total"}
    assert all(s["cost"][k]["wall_seconds"] > 0 and s["cost"][k]["cpu_hours"] > 0 for k in ("supernet", "search", "final"))
    state = json.loads((Path(s["search_dir"]) / "search_state.json").read_text())
    assert state["finished"] and state["generation"] == 2 and s["val_accuracy"] == state["best"]["accuracy"]

    # arch.yaml runs directly: the same subnet, the same count
    from hydra import compose, initialize_config_dir

    from peftbench.apps.params import param_report
    from peftbench.paths import config_dir

    arch_file = Path(s["arch_file"])
    assert yaml.safe_load(arch_file.read_text())["arch"] == s["arch"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="params", overrides=["backbone=vit_micro", "method=glora",
                                                       f"method.arch={arch_file}", "dataset=embedded/dsprites_loc"])
    assert param_report(cfg)["trainable_params_without_head"] == s["params"]

    # relaunching redoes nothing
    again = _cli(tmp_path, "peftbench.cli.search", "method=glora", *SMALL, "search.final.init=supernet")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished run exists, skipped") == 2 and "resumed at generation 2" in again.stdout
    assert _runs(tmp_path)["final"]["search"]["arch"] == s["arch"]

    # the leaderboard row carries the searched architecture and its count
    import pandas as pd

    from peftbench.results.leaderboard import build

    rows = pd.read_csv(build(tmp_path / "results").written["runs"])
    row = rows[(rows["method"] == "glora") & (rows["protocol"] == "final")].iloc[0]
    assert row["trainable_params_without_head"] == s["params"]
    assert json.loads(row["method_options"])["arch"] == s["arch"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["method=lora"], "no search space"), (["method=noah", "protocol=final"], "sets protocol"),
     (["method=noah", "method=noah,glora"], "one setting")],
)
def test_search_refuses_what_it_cannot_run(tmp_path, args, needle):
    from peftbench.apps.search import search
    from peftbench.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        search([*args, f"paths.results_dir={tmp_path / 'results'}"])
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [(["supernet.nope=1"], "no option"), (["evolution.param_limit=5", "evolution.param_limit_ratio=0.5"], "exactly one"),
     (["final.init=warm"], "scratch, supernet"), (["epochs=3"], "search.<supernet|evolution|final>")],
)
def test_search_preset_errors_name_the_fix(overrides, needle):
    from peftbench.apps.search import load_preset
    from peftbench.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        load_preset("noah", overrides)
    with pytest.raises(ConfigError, match="valid choices: glora, noah, quick"):
        load_preset("nope")


def test_search_cli_user_error_exits_2_without_traceback(tmp_path):
    proc = _cli(tmp_path, "peftbench.cli.search", "method=noah", "search=nope")
    assert proc.returncode == 2 and "valid choices: glora, noah, quick" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "results").exists()


def test_every_search_preset_builds():
    from peftbench.apps.search import load_preset, presets

    assert presets() == ["glora", "noah", "quick"]
    for name in presets():
        cfg = load_preset(name)
        assert cfg.supernet.epochs >= 1 and cfg.final.epochs >= 1 and cfg.evolution.generations >= 1
