"""Sweep presets (configs/sweep/) expand to the expected jobs, without running any (Hydra's own parser)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from peftbench.methods.registry import available_methods
from peftbench.paths import config_dir
from peftbench.results.suites import FGVC_TASKS, VTAB_GROUPS, VTAB_TASKS
from peftbench.sweeps.plan import expand

PRESETS = sorted(p.stem for p in (Path(config_dir()) / "sweep").glob("*.yaml"))


def _values(jobs: list[list[str]], key: str) -> list[str]:
    return [o.partition("=")[2] for job in jobs for o in job if o.partition("=")[0] == key]


@functools.cache
def _dataset_name(option: str) -> str:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=[f"dataset={option}"]).dataset.name


def _dataset_names(jobs: list[list[str]]) -> list[str]:
    return [_dataset_name(d) for d in _values(jobs, "dataset")]


@pytest.mark.parametrize(
    ("preset", "tasks"),
    [("vtab1k", VTAB_TASKS), ("fgvc", FGVC_TASKS)] + [(f"vtab1k_{g}", t) for g, t in VTAB_GROUPS.items()],
)
def test_suite_presets_list_exactly_the_suite(preset, tasks):
    jobs = expand([f"sweep={preset}", "method=lora,ssf"])
    assert len(jobs) == 2 * len(tasks)
    assert _dataset_names(jobs) == [t for t in tasks for _ in ("lora", "ssf")]  # the tables' order


def test_vitb16_table_is_every_method_on_every_dataset():
    jobs = expand(["sweep=vitb16_table"])
    # every method config: the registered methods plus the composed presets (name: compose)
    method_files = sorted(p.stem for p in (Path(config_dir()) / "method").glob("*.yaml"))
    assert set(available_methods()) <= set(method_files)
    for preset in set(method_files) - set(available_methods()):
        assert OmegaConf.load(Path(config_dir()) / "method" / f"{preset}.yaml").name == "compose"
    assert len(jobs) == len(method_files) * (19 + 5)
    assert sorted(set(_values(jobs, "method"))) == method_files
    assert sorted(set(_dataset_names(jobs))) == sorted(VTAB_TASKS + FGVC_TASKS)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["sweep=vitb16_table"])
    assert cfg.backbone.name == "vit_b16_in21k" and cfg.protocol == "final"


def test_tune_grid_is_lr_by_weight_decay_under_the_tune_protocol():
    jobs = expand(["sweep=tune_grid", "seed=0,1"])
    assert len(jobs) == 5 * 4 * 2
    assert len({tuple(j) for j in jobs}) == len(jobs)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["sweep=tune_grid"])
    assert cfg.protocol == "tune"
    # presets combine; command-line values replace a preset's list for that key
    assert len(expand(["sweep=[vtab1k_specialized,tune_grid]"])) == 4 * 20
    assert len(expand(["sweep=tune_grid", "trainer.lr=1e-3,1e-2"])) == 2 * 4


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_into_typed_configs(preset):
    from peftbench.assemble import parse_spec

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"sweep={preset}"])
    parse_spec(cfg)


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_launcher_configs_compose(launcher):
    overrides = [f"hydra/launcher={launcher}"] + (["hydra.launcher.partition=gpu"] if launcher == "slurm" else [])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_.startswith("hydra_plugins.peftbench_launchers.")
    if launcher == "slurm":
        # gpus_per_node: null = one GPU where the partition has GPUs, none where it has not (resolved by sinfo)
        assert cfg.hydra.launcher.gpus_per_node is None and cfg.hydra.launcher.timeout_min > 0
        assert cfg.hydra.launcher.partition == "gpu"
