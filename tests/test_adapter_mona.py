"""Mona: two multi-scale depth-wise-conv adapters per block, after each residual add, on the patch grid."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.addition.adapter.mona import MonaAdapter, SwinMonaBlock, ViTMonaBlock
from peftbench.methods.attach import attach_method
from peftbench.methods.registry import build_method
from tests.tiny_models import VIT_KWARGS, tiny_swin, tiny_vit

D = 48  # tiny ViT width


def _vit(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, **{**VIT_KWARGS, **kwargs})


def _attach(model, **options):
    attach_method(model, build_method("mona", {"dim": 8, **options}))
    return model.eval()


def _perturb(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _reference_mona(m: MonaAdapter, x: torch.Tensor, grid: int) -> torch.Tensor:
    """The reference's steps; the class token as a zero-padded 1x1 map through the same convolutions."""
    B, N, _ = x.shape
    h = m.down(m.norm(x) * m.gamma + x * m.gammax)  # (B, N, c)

    def op(maps: torch.Tensor) -> torch.Tensor:  # MonaOp on (B, c, H, W)
        c3, c5, c7 = (F.conv2d(maps, c.weight, c.bias, padding=c.kernel_size[0] // 2, groups=maps.shape[1])
                      for c in m.op.convs)
        z = (c3 + c5 + c7) / 3.0 + maps
        return z + F.conv2d(z, m.op.projector.weight, m.op.projector.bias)

    patches = op(h[:, 1:].reshape(B, grid, grid, -1).permute(0, 3, 1, 2))  # (B, c, H, W)
    patches = patches.permute(0, 2, 3, 1).reshape(B, grid * grid, -1)
    cls = op(h[:, :1].reshape(B, 1, 1, -1).permute(0, 3, 1, 2)).reshape(B, 1, -1)
    return x + m.up(F.gelu(torch.cat([cls, patches], dim=1)))


def test_vit_block_matches_the_reference_computation():
    model = _attach(tiny_vit())
    _perturb(model)
    block = model.blocks[1]
    assert isinstance(block, ViTMonaBlock) and block.grid == (4, 4) and block.num_prefix == 1
    b = block.base_layer
    x = torch.randn(2, 17, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x1 = _reference_mona(block.mona1, x + b.attn(b.norm1(x)), 4)
        expected = _reference_mona(block.mona2, x1 + b.mlp(b.norm2(x1)), 4)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_with_silent_monas_the_wrapper_is_the_timm_block_drop_path_and_layer_scale_included(family):
    # up = 0 makes each Mona the identity; with the Monas' dropout off, the wrapper draws the block's drop-path
    # masks in the block's order, so training-mode outputs agree too
    if family == "vit":
        model = _vit(init_values=0.5, drop_path_rate=0.5)
        x = torch.randn(8, 17, D)
    else:
        torch.manual_seed(0)
        model = timm.create_model(
            "swin_tiny_patch4_window7_224", pretrained=False, num_classes=5, drop_path_rate=0.5,
            img_size=32, patch_size=4, window_size=4, embed_dim=24, depths=(2, 1), num_heads=(1, 2),
        )
        x = torch.randn(8, 8, 8, 24)
    block = model.blocks[1] if family == "vit" else model.layers[0].blocks[1]
    _attach(model, dropout=0.0)
    wrapper = model.blocks[1] if family == "vit" else model.layers[0].blocks[1]
    assert isinstance(wrapper, ViTMonaBlock if family == "vit" else SwinMonaBlock)
    with torch.no_grad():
        for mona in (wrapper.mona1, wrapper.mona2):
            mona.up.weight.zero_()
            mona.up.bias.zero_()
        torch.testing.assert_close(wrapper(x), block(x), atol=1e-6, rtol=0)
        wrapper.train()
        torch.manual_seed(3)
        plain = block(x)
        torch.manual_seed(3)
        torch.testing.assert_close(wrapper(x), plain, atol=1e-6, rtol=0)
        assert not torch.allclose(plain, block.eval()(x))  # drop-path really acted


@pytest.mark.parametrize("family", ["vit", "swin"])
def test_a_token_reaches_only_its_7x7_neighbourhood_and_the_class_token_stays_apart(family):
    if family == "vit":
        model = _attach(_vit(img_size=64))  # 8x8 patch grid + CLS
        block = model.blocks[0]
        x = torch.randn(1, 65, D)
        index = lambda r, c: 1 + r * 8 + c  # noqa: E731
        run = lambda t: block._mona(block.mona1, t)[0]  # noqa: E731
    else:
        model = _attach(tiny_swin())  # stage 0: an 8x8 map
        block = model.layers[0].blocks[0]
        x = torch.randn(1, 8, 8, 24)
        index = lambda r, c: r * 8 + c  # noqa: E731
        run = lambda t: block.mona1(t)[0].reshape(64, -1)  # noqa: E731
    _perturb(model)
    row, col = 1, 2
    moved = x.clone()
    moved.view(1, -1, x.shape[-1])[0, index(row, col)] += 1.0
    with torch.no_grad():
        changed = (run(moved) - run(x)).abs().amax(-1) > 1e-6
    near = {index(r, c) for r in range(8) for c in range(8) if abs(r - row) <= 3 and abs(c - col) <= 3}
    assert {int(i) for i in changed.nonzero()} == near  # the class token (index 0) is untouched
    if family == "vit":
        cls_moved = x.clone()
        cls_moved[0, 0] += 1.0
        with torch.no_grad():
            changed = (run(cls_moved) - run(x)).abs().amax(-1) > 1e-6
        assert {int(i) for i in changed.nonzero()} == {0}


def test_reference_init_and_not_an_identity():
    base = tiny_vit().eval()
    model = _attach(tiny_vit(), dim=64)
    mona = model.blocks[0].mona1
    assert torch.equal(mona.gamma, torch.full((D,), 1e-6)) and torch.equal(mona.gammax, torch.ones(D))
    assert torch.equal(mona.norm.weight, torch.ones(D)) and torch.count_nonzero(mona.norm.bias) == 0
    for layer in (mona.down, mona.up):
        assert 0.015 < layer.weight.std() < 0.025 and torch.count_nonzero(layer.bias) == 0
    assert [c.kernel_size for c in mona.op.convs] == [(3, 3), (5, 5), (7, 7)]
    assert all(c.groups == 64 and torch.count_nonzero(c.weight) == c.weight.numel() for c in mona.op.convs)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), base(x), atol=1e-3)


def test_grid_mismatch_and_dynamic_size_raise():
    model = _attach(tiny_vit())
    with pytest.raises(MethodNotSupportedError, match="17 tokens, got 10"):
        model.blocks[0](torch.randn(1, 10, D))
    with pytest.raises(MethodNotSupportedError, match="dynamic_img_size"):
        _attach(_vit(dynamic_img_size=True))
