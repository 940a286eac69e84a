"""Convpass: a 3x3 conv on the patch grid (class token through the centre tap) beside attention and MLP."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.addition.adapter.convpass import ConvBypass
from peftbench.methods.attach import attach_method
from peftbench.methods.layers.bottleneck import ParallelAdapter
from peftbench.methods.registry import build_method
from tests.tiny_models import VIT_KWARGS, tiny_vit

D, GRID = 48, 4  # tiny ViT: width 48, 4x4 patches + CLS


def _prepared(**options):
    model = tiny_vit()
    attach_method(model, build_method("convpass", {"dim": 4, **options}))
    return model.eval()


def _perturb(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _reference_bypass(bp: ConvBypass, x: torch.Tensor) -> torch.Tensor:
    """The reference's steps: the CLS token as a zero-padded 1x1 image through the same 3x3 conv."""
    B, N, _ = x.shape
    d = bp.down(x)
    h = d * torch.sigmoid(1.702 * d)  # QuickGELU
    patch = h[:, 1:].reshape(B, GRID, GRID, -1).permute(0, 3, 1, 2)
    patch = (
        F.conv2d(patch, bp.conv.weight, bp.conv.bias, padding=1)
        .permute(0, 2, 3, 1)
        .reshape(B, GRID * GRID, -1)
    )
    cls = h[:, :1].reshape(B, 1, 1, -1).permute(0, 3, 1, 2)
    cls = F.conv2d(cls, bp.conv.weight, bp.conv.bias, padding=1).permute(0, 2, 3, 1).reshape(B, 1, -1)
    h = torch.cat([cls, patch], dim=1)
    return bp.up(h * torch.sigmoid(1.702 * h))


def test_bypasses_sit_beside_attention_and_mlp_and_match_the_reference_computation():
    model = _prepared(scale=10.0)
    _perturb(model)
    block = model.blocks[0]
    assert isinstance(block.attn, ParallelAdapter) and isinstance(block.mlp, ParallelAdapter)
    x = torch.randn(2, 1 + GRID * GRID, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        n1 = block.norm1(x)
        x1 = x + block.attn.base_layer(n1) + 10.0 * _reference_bypass(block.attn.adapter, n1)
        n2 = block.norm2(x1)
        expected = x1 + block.mlp.base_layer(n2) + 10.0 * _reference_bypass(block.mlp.adapter, n2)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=0)


def test_the_conv_mixes_only_grid_neighbours_in_row_major_order_and_keeps_the_class_token_apart():
    model = _prepared(conv_init="xavier")
    _perturb(model)
    bypass = model.blocks[0].mlp.adapter
    x = torch.randn(1, 1 + GRID * GRID, D, generator=torch.Generator().manual_seed(2))
    moved = x.clone()
    row, col = 0, 2
    moved[0, 1 + row * GRID + col] += 1.0  # change one patch token
    with torch.no_grad():
        changed = (bypass(moved) - bypass(x)).abs().amax(-1)[0] > 1e-6  # (N,)
    neighbours = {
        1 + r * GRID + c for r in range(GRID) for c in range(GRID) if abs(r - row) <= 1 and abs(c - col) <= 1
    }
    assert {int(i) for i in changed.nonzero()} == neighbours  # CLS (index 0) unchanged
    cls_moved = x.clone()
    cls_moved[0, 0] += 1.0
    with torch.no_grad():
        changed = (bypass(cls_moved) - bypass(x)).abs().amax(-1)[0] > 1e-6
    assert {int(i) for i in changed.nonzero()} == {0}


def test_identity_conv_init_and_zero_up_projection():
    model = _prepared()
    bypass = model.blocks[1].attn.adapter
    kernel = bypass.conv.weight  # (h, h, 3, 3)
    torch.testing.assert_close(kernel[:, :, 1, 1], torch.eye(4))
    assert torch.count_nonzero(kernel) == 4 and torch.count_nonzero(bypass.conv.bias) == 0
    assert torch.count_nonzero(bypass.up.weight) == 0 and torch.count_nonzero(bypass.down.weight) > 0
    xavier = _prepared(conv_init="xavier").blocks[1].attn.adapter.conv.weight
    assert torch.count_nonzero(xavier) == xavier.numel()


def test_the_paper_recipe_gives_each_task_its_scale_and_conv_init():
    from peftbench.assemble import parse_spec
    from peftbench.config import compose

    args = ["experiment=convpass/convpass", "dataset=vtab/svhn"]
    spec = parse_spec(compose(args), command_line=args)
    assert (spec.method.options["scale"], spec.method.options["conv_init"]) == (100.0, "xavier")
    model = _prepared(**{k: spec.method.options[k] for k in ("scale", "conv_init")})
    assert all(m.scale == 100.0 for m in model.modules() if isinstance(m, ParallelAdapter))
    assert torch.count_nonzero(model.blocks[0].attn.adapter.conv.weight) == 4 * 4 * 9  # xavier


def test_register_tokens_go_through_the_centre_tap_like_the_class_token():
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=5, reg_tokens=2, **VIT_KWARGS
    )
    attach_method(model, build_method("convpass", {"dim": 4}))
    bypass = model.blocks[0].attn.adapter
    assert bypass.num_prefix == 3 and bypass.grid == (GRID, GRID)
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_grid_mismatch_and_dynamic_size_raise():
    model = _prepared()
    with pytest.raises(MethodNotSupportedError, match="17 tokens, got 10"):
        model.blocks[0].attn.adapter(torch.randn(1, 10, D))
    dynamic = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=5, dynamic_img_size=True, **VIT_KWARGS
    )
    with pytest.raises(MethodNotSupportedError, match="dynamic_img_size"):
        attach_method(dynamic, build_method("convpass"))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"scale": "big"}, "scale must be a number > 0"),
        ({"scale": "auto"}, "experiment=convpass/convpass"),
        ({"conv_init": "zeros"}, "identity, xavier"),
        ({"scale_per_task": {"svhn": 1.0}}, "has no option"),
    ],
)
def test_bad_options_raise(options, match):
    with pytest.raises(ConfigError, match=match):
        build_method("convpass", options)
