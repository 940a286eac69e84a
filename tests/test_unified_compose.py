"""Composition of methods (compose, its YAML presets, vpetl_unified, u_tuning) on tiny timm ViTs, on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from peftbench.errors import ConfigError, MethodNotSupportedError, UnknownNameError
from peftbench.methods.attach import attach_method
from peftbench.methods.base import PeftModule
from peftbench.methods.layers.bottleneck import ParallelAdapter
from peftbench.methods.registry import build_method
from peftbench.paths import config_dir
from tests.tiny_models import tiny_swin, tiny_vit

METHOD_DIR = Path(config_dir()) / "method"
PRESETS = sorted(p.stem for p in METHOD_DIR.glob("*.yaml") if OmegaConf.load(p).get("name") == "compose")


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _compose(*components: tuple[str, dict]) -> dict:
    return {"components": [{"method": n, "options": o} for n, o in components]}


def _preset_options(stem: str) -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(METHOD_DIR / f"{stem}.yaml"))
    assert raw.pop("name") == "compose"
    raw.pop("label", None)  # names the results, not an option
    return raw


def test_presets_exist():
    assert {"compose", "mam_adapter"} <= set(PRESETS)


@pytest.mark.parametrize("stem", PRESETS)
def test_preset_count_is_the_sum_of_its_components_and_it_trains(stem):
    options = _preset_options(stem)
    method = build_method("compose", options)
    model = tiny_vit()
    counts = attach_method(model, method)
    alone = 0
    for comp in options["components"]:
        alone += attach_method(
            tiny_vit(), build_method(comp["method"], comp["options"])
        ).trainable_params_without_head
    assert counts.trainable_params_without_head == alone > 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in trainable]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    for step in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(_x(step)), torch.tensor([0, 1]))
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    assert all(not torch.equal(b, p) for b, p in zip(before, trainable, strict=True)), (
        "every trainable tensor moves"
    )


def test_preset_is_selected_by_file_name_and_counted_by_params_app():
    from peftbench.apps.params import param_report

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="params", overrides=["method=mam_adapter", "backbone=vit_test"])
    report = param_report(cfg)
    assert report["method"] == "mam_adapter" and report["registered_method"] == "compose"
    assert report["family"] == "unified"
    d, depth = 64, 4  # vit_test: prefix l = 30 + parallel FFN adapter r = 512 in every block
    assert report["trainable_params_without_head"] == depth * (2 * 30 * d + d * 512 + 512 + 512 * d + d)


def test_a_preset_runs_under_its_label_in_its_own_folder_and_the_default_under_compose(tmp_path):
    from peftbench.assemble import parse_spec
    from peftbench.identity import config_hash, run_dir

    folders = {}
    for stem in ("mam_adapter", "compose"):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=[f"method={stem}", f"paths.results_dir={tmp_path}"])
        spec = parse_spec(cfg)
        assert (spec.method.name, spec.method.label) == ("compose", stem)
        assert "label" not in spec.method.options
        build_method(spec.method.name, spec.method.options)  # the label is not passed on as an option
        folders[stem] = run_dir(tmp_path, spec.config, config_hash(spec.config, spec.precision))
        assert folders[stem] == spec.run_dir
    assert folders["mam_adapter"].parent.name == "mam_adapter" and folders["compose"].parent.name == "compose"


@pytest.mark.parametrize("label", ["", "a/b", "../up", ".hidden", 3])
def test_a_label_that_cannot_name_a_folder_is_a_config_error(label):
    from peftbench.methods.registry import split_method_block

    with pytest.raises(ConfigError, match="method.label"):
        split_method_block({"name": "lora", "label": label})
    assert split_method_block({"name": "lora", "rank": 4, "label": "lora_r4"}) == ("lora", "lora_r4", {"rank": 4})
    assert split_method_block({"name": "lora"}) == ("lora", "lora", {})


def test_unknown_component_lists_the_valid_components():
    with pytest.raises(UnknownNameError, match="valid choices: .*adaptformer.*lora") as info:
        build_method("compose", _compose(("lorra", {})))
    assert "linear" not in info.value.valid and "compose" not in info.value.valid


@pytest.mark.parametrize(
    ("name", "needle"), [("compose", "do not nest"), ("u_tuning", "do not nest"), ("full", "baseline method")]
)
def test_nesting_and_baselines_are_refused(name, needle):
    with pytest.raises(ConfigError, match=needle):
        build_method("compose", _compose(("lora", {}), (name, {})))


@pytest.mark.parametrize(
    ("components", "needle"),
    [
        ([], "non-empty list"),
        ([{"options": {}}], "'method' name"),
        ([{"method": "lora", "opts": {}}], "unknown key"),
        ([{"method": "lora", "options": {"rank": 0}}], r"component #0 \(lora\).*rank"),
        ([{"method": "lora", "options": {"ranks": 2}}], r"component #0 \(lora\).*valid options"),
    ],
)
def test_malformed_components_are_config_errors(components, needle):
    with pytest.raises(ConfigError, match=needle):
        build_method("compose", {"components": components})


@pytest.mark.parametrize(
    ("first", "second"),
    [("lora", "prefix"), ("prefix", "lora"), ("lora", "lora_qv"), ("vpt_deep", "adaptformer")],
)
def test_components_needing_the_same_original_layer_conflict_clearly(first, second):
    method = build_method("compose", _compose((first, {}), (second, {})))
    with pytest.raises(
        MethodNotSupportedError, match=rf"component #1 \({second}\) cannot be applied after {first}"
    ):
        attach_method(tiny_vit(), method)


def test_two_wrappers_on_the_same_mlp_stack_and_both_train():
    method = build_method("compose", _compose(("adaptformer", {"dim": 4}), ("adapter", {"dim": 4})))
    model = tiny_vit()
    counts = attach_method(model, method)
    mlp = model.blocks[0].mlp  # adapter's sequential wrapper around adaptformer's parallel one
    assert isinstance(mlp.base_layer, ParallelAdapter)
    model(_x()).sum().backward()
    assert mlp.adapter.down.weight.grad is not None and mlp.base_layer.adapter.up.weight.grad is not None
    assert counts.trainable_params_without_head == 2 * 3 * (48 * 4 + 4 + 4 * 48 + 48)


def test_mergeable_components_merge_into_a_plain_backbone():
    method = build_method("compose", _compose(("lora", {"rank": 2}), ("ssf", {})))
    assert method.mergeable
    model = tiny_vit()
    attach_method(model, method)
    model.eval()  # after prepare: the new modules (LoRA's dropout) are created in training mode
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(4)))
        expected = model(_x())
        merged = method.merge(model)
        assert not any(isinstance(m, PeftModule) for m in merged.modules())
        assert sum(p.numel() for p in merged.parameters()) == sum(p.numel() for p in tiny_vit().parameters())
        torch.testing.assert_close(merged(_x()), expected, atol=1e-5, rtol=0)


def test_merge_refuses_and_names_the_non_mergeable_components():
    method = build_method("compose")
    assert not method.mergeable
    model = tiny_vit()
    attach_method(model, method)
    with pytest.raises(MethodNotSupportedError, match="adaptformer, vpt_deep are not reparameterisations"):
        method.merge(model)


def test_backbones_are_the_intersection_of_the_components():
    assert build_method("compose").backbones == ("vit", "eva")
    method = build_method("compose", _compose(("lora", {"rank": 2}), ("adaptformer", {"dim": 4})))
    assert method.backbones == ("vit", "eva", "swin")
    model = tiny_swin()
    attach_method(model, method)
    assert model(_x()).shape == (2, 5)
