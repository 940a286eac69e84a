"""Every YAML under configs/ composes, and the method registry agrees with configs/method/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from peftbench.config import to_plain
from peftbench.methods.registry import available_methods, get_method_class
from peftbench.paths import config_dir

CONFIGS = Path(config_dir())
GROUPS = ("backbone", "method", "dataset", "trainer", "optim", "logger", "experiment")


def _options(group: str) -> list[str]:
    root = CONFIGS / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml")) if root.is_dir() else []


def _method_presets() -> list[str]:
    """YAMLs in configs/method/ named after a preset, not a method: their ``name:`` is ``compose``."""
    names = {o: OmegaConf.load(CONFIGS / "method" / f"{o}.yaml").get("name") for o in _options("method")}
    return sorted(o for o, n in names.items() if o != n)


def test_method_yamls_and_registry_agree():
    presets = _method_presets()
    assert sorted(set(_options("method")) - set(presets)) == available_methods()
    # the only YAMLs not named after a method are presets of the composition method (built in test_unified_compose)
    assert all(OmegaConf.load(CONFIGS / "method" / f"{p}.yaml").name == "compose" for p in presets)


@pytest.mark.parametrize("preset", _method_presets())
def test_method_presets_label_their_results_with_their_file_name(preset):
    # without a label a preset's runs would be recorded, foldered and tabled as plain `compose`
    assert OmegaConf.load(CONFIGS / "method" / f"{preset}.yaml").get("label") == preset


@pytest.mark.parametrize("name", sorted(set(_options("method")) - set(_method_presets())))
def test_method_yaml_equals_the_typed_defaults(name):
    raw = OmegaConf.to_container(OmegaConf.load(CONFIGS / "method" / f"{name}.yaml"))
    assert raw.pop("name") == name
    cls = get_method_class(name)
    defaults = {}
    for f in dataclasses.fields(cls.config_cls):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    normalise = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (YAML has lists, not tuples)
    assert {k: normalise(v) for k, v in raw.items()} == {k: normalise(v) for k, v in defaults.items()}


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in _options(g)]
)
def test_every_option_composes_into_the_train_config(group, option):
    override = f"{group}={option}"
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[override])
    plain = to_plain(cfg)
    for key in ("backbone", "method", "dataset", "trainer", "optim", "logger", "data", "seed", "protocol"):
        assert key in plain
    from peftbench.assemble import parse_spec

    parse_spec(cfg)  # every block turns into its typed config


def test_params_config_composes():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="params")
    assert cfg.backbone.name == "vit_b16_in21k"
