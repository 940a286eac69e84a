"""The Hugging Face PEFT bridge: lazy optional import, same function as native LoRA, structural counting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.lora import LoRALinear
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

BUILDERS = {"vit": tiny_vit, "swin": tiny_swin}


@pytest.fixture
def peft():
    return pytest.importorskip("peft")


def test_without_peft_the_methods_are_registered_and_apply_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # makes `import peft` fail as if it were not installed
    method = build_method("hf_lora")
    with pytest.raises(MethodNotSupportedError, match=r'pip install -e "\.\[peft\]"'):
        attach_method(tiny_vit(), method)


def test_listing_methods_does_not_import_peft():
    code = (
        "import sys; from peftbench.methods.registry import available_methods; "
        "names = available_methods(); assert 'hf_lora' in names and 'hf_vera' in names, names; "
        "assert 'peft' not in sys.modules, 'peft imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=Path(__file__).parents[1])


def _pair(fam: str, native: dict, hf: dict):
    """A native LoRA model with a non-zero B and a PEFT LoRA model carrying the same A and B."""
    ours, theirs = BUILDERS[fam](seed=0), BUILDERS[fam](seed=0)
    attach_method(ours, build_method("lora", native))
    attach_method(theirs, build_method("hf_lora", hf))
    g = torch.Generator().manual_seed(11)
    copied = 0
    with torch.no_grad():
        for name, wrapper in ours.named_modules():
            if isinstance(wrapper, LoRALinear):
                wrapper.lora_B.copy_(torch.randn(wrapper.lora_B.shape, generator=g))
                layer = theirs.get_submodule(name)
                layer.lora_A["default"].weight.copy_(wrapper.lora_A[0])
                layer.lora_B["default"].weight.copy_(wrapper.lora_B[0])
                copied += 1
    assert copied > 0
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("fam", ["vit", "swin"])
@pytest.mark.parametrize(
    ("native", "hf"),
    [
        ({}, {}),  # defaults: NOAH's LoRA-8 on the fused qkv, scaling 1
        (
            {"targets": "all_linear", "rank": 4, "alpha": 16.0},
            {"targets": "all_linear", "rank": 4, "alpha": 16.0},
        ),
    ],
)
def test_native_lora_and_pefts_lora_are_the_same_function(peft, fam, native, hf):
    ours, theirs = _pair(fam, native, hf)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        base = BUILDERS[fam](seed=0).eval()(x)
        out = ours(x)
        assert not torch.allclose(out, base, atol=1e-3)  # the adapters do something
        torch.testing.assert_close(theirs(x), out, rtol=1e-4, atol=1e-5)


def test_trainable_parameters_are_exactly_the_tuner_layers_own(peft):
    model = tiny_vit()
    method = build_method("hf_vera", {"rank": 16})
    counts = attach_method(model, method)
    base_tuner_layer = peft.tuners.tuners_utils.BaseTunerLayer
    expected = {
        id(p)
        for m in model.modules()
        if isinstance(m, base_tuner_layer)
        for n, p in m.named_parameters()
        if not n.startswith("base_layer.")
    }
    assert {id(p) for p in method.trainable_parameters(model)} == expected
    assert counts.trainable_params_without_head == 3 * (3 * 48 + 16)  # lambda_b + lambda_d per layer
    frozen_projection = model.blocks[0].attn.qkv.vera_A["default"]
    assert not any(frozen_projection is p for p in model.parameters())  # a buffer: never counted


def test_ia3_scales_the_fc2_input_and_the_qkv_output(peft):
    model = tiny_vit()
    attach_method(model, build_method("hf_ia3"))
    blk = model.blocks[0]
    assert blk.mlp.fc2.is_feedforward and not blk.attn.qkv.is_feedforward
    assert blk.attn.qkv.ia3_l["default"].numel() == 3 * 48 and blk.mlp.fc2.ia3_l["default"].numel() == 4 * 48
    assert type(blk.mlp.fc1).__name__ == "Linear" and type(blk.attn.proj).__name__ == "Linear"


def test_merge_leaves_no_peft_state_on_the_timm_model(peft):
    model = tiny_vit()
    method = build_method("hf_lokr")
    attach_method(model, method)
    assert hasattr(model, "peft_config")
    merged = method.merge(model)
    assert not hasattr(merged, "peft_config")
    assert not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in merged.modules())


def test_boft_is_identity_at_init_and_only_the_skew_part_of_boft_r_acts(peft):
    model, base = tiny_vit(), tiny_vit().eval()
    attach_method(model, build_method("hf_boft"))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    r = model.blocks[0].attn.qkv.boft_R["default"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)
        r.add_(0.1)  # symmetric change: the Cayley transform of the skew part is still the identity
        torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)
        r.add_(0.1 * torch.randn(r.shape, generator=torch.Generator().manual_seed(0)))
        assert not torch.allclose(model(x), base(x), atol=1e-4)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("hf_lora", {"targets": "q_v"}, "all_linear, mlp, qkv, qkv_fc2, qkv_proj"),
        ("hf_vera", {"rank": 2.5}, "rank must be an integer >= 1"),
        ("hf_oft", {"module_dropout": 1.5}, r"module_dropout must be in \[0, 1\)"),
        ("hf_fourierft", {"scaling": 0.0}, "scaling must be > 0"),
    ],
)
def test_bad_bridge_options_raise_config_error_without_needing_peft(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_method(name, options)


def test_options_peft_refuses_on_a_backbones_layers_are_a_user_error():
    pytest.importorskip("peft")
    from tests.tiny_models import ARCHS

    model = ARCHS["convnext"].build()  # its first MLP is 8 -> 32: 256 weights, fewer than 1000 frequencies
    with pytest.raises(ConfigError, match=r"hf_fourierft.*n_frequency"):
        attach_method(model, build_method("hf_fourierft", {"targets": "mlp"}))
