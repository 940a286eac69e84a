"""The embedded mini-benchmark (peftbench-embedded): the prompt-length rule, its overrides and how groups are launched."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_dir

from peftbench.config import to_plain
from peftbench.methods.registry import build_method, split_method_block
from peftbench.models import build_backbone, make_backbone_config
from peftbench.paths import config_dir


@pytest.fixture(scope="module")
def bench():
    from peftbench.apps import embedded

    return embedded


def _method(overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        plain = to_plain(compose(config_name="train", overrides=overrides))
    name, _, options = split_method_block(plain["method"])
    return plain, build_method(name, options)


def test_the_patch_counts_are_those_of_the_two_backbones(bench):
    counts = {}
    for name in ("vit_b16_in21k", "vit_micro"):
        plain, _ = _method([f"backbone={name}"])
        cfg = dataclasses.replace(make_backbone_config(plain["backbone"]), weights="none")
        counts[name] = build_backbone(cfg, 2).patch_embed.num_patches
    assert (counts["vit_b16_in21k"], counts["vit_micro"]) == (bench.REFERENCE_PATCHES, bench.MICRO_PATCHES) == (196, 16)


def test_scaled_length_keeps_the_prompts_per_patch_and_at_least_one(bench):
    assert [bench.scaled_length(p) for p in (1, 10, 50, 100, 200)] == [1, 1, 4, 8, 16]


@pytest.mark.parametrize("config", ["vpt_shallow", "vpt_deep", "compose"])
def test_each_prompt_override_scales_that_configs_yaml_length(bench, config):
    _, default = _method([f"method={config}"])
    _, scaled = _method([f"method={config}", *bench.PROMPT_OVERRIDES[config]])
    if config == "compose":  # the VPT-deep component
        (vpt_default,) = [c for c in default.components if c.name == "vpt_deep"]
        (vpt_scaled,) = [c for c in scaled.components if c.name == "vpt_deep"]
        default, scaled = vpt_default, vpt_scaled
    assert scaled.config.length == bench.scaled_length(default.config.length) < default.config.length


def test_every_config_with_vpt_prompts_has_an_override(bench):
    # a new preset or method with VPT prompts must be added to PROMPT_OVERRIDES (or shown not to need it)
    with_prompts = []
    for config in bench.all_method_configs():
        _, method = _method([f"method={config}"])
        parts = getattr(method, "components", [method])
        if any(p.name in ("vpt_shallow", "vpt_deep") for p in parts):
            with_prompts.append(config)
    assert sorted(with_prompts) == sorted(bench.PROMPT_OVERRIDES)


def test_methods_with_their_own_overrides_get_their_own_multirun(bench):
    per_method = {"vpt_deep": ["method.length=4"]}
    cmds = bench.group_commands(["lora", "vpt_deep", "bitfit"], per_method, ["dataset=embedded/digits"], "logs/g0")
    assert [c[2] for c in cmds] == ["method=lora,bitfit", "method=vpt_deep"]
    assert "method.length=4" in cmds[1] and "method.length=4" not in cmds[0]
    assert all(c[:2] == ["-m", "trainer=embedded"] and "dataset=embedded/digits" in c for c in cmds)
    assert len({c[-1] for c in cmds}) == 2 and all(c[-1].startswith("hydra.sweep.dir=logs/g0-") for c in cmds)
    assert [c[2] for c in bench.group_commands(["vpt_deep"], per_method, [], "d")] == ["method=vpt_deep"]
