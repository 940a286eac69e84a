"""FacT: shared factors, per-site increments as the paper writes them, and the reference code's TK layout."""

from __future__ import annotations

import pytest
import timm
import torch

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.fact import FacTFactors, FacTLinear
from peftbench.methods.registry import build_method
from tests.tiny_models import VIT_KWARGS, tiny_vit

DIM, RANK = 48, 3


def _fact(name: str, scale: float = 2.0):
    model = tiny_vit()
    attach_method(model, build_method(name, {"rank": RANK, "scale": scale}))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # move every factor (V starts at zero) as training would
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_one_set_of_shared_factors_serves_every_site():
    model = _fact("fact_tt")
    wrappers = [m for m in model.modules() if isinstance(m, FacTLinear)]
    assert len(wrappers) == 4 * 3  # qkv, proj, fc1, fc2 in each of 3 blocks
    assert all(w.factors is model.fact for w in wrappers)
    names = [n for n, _ in model.named_parameters() if n.startswith("fact.")]
    assert names == ["fact.u", "fact.v"]  # registered once, on the backbone
    assert model.fact.u.shape == (RANK, DIM) and model.fact.v.shape == (DIM, RANK)


def test_tt_every_dxd_matrix_is_s_v_core_u():
    """Eq. 8 of the paper, one D x D matrix at a time (q/k/v rows of qkv, the 4 chunks of fc1 / fc2)."""
    model = _fact("fact_tt", scale=2.0)
    u, v = model.fact.u, model.fact.v
    blk = model.blocks[1]
    with torch.no_grad():
        qkv, fc1, fc2 = blk.attn.qkv, blk.mlp.fc1, blk.mlp.fc2
        for j in range(3):
            torch.testing.assert_close(
                qkv.delta_weight()[j * DIM : (j + 1) * DIM], 2.0 * v @ qkv.core[j * RANK : (j + 1) * RANK] @ u
            )
        for i in range(4):
            torch.testing.assert_close(
                fc1.delta_weight()[i * DIM : (i + 1) * DIM], 2.0 * v @ fc1.core[i * RANK : (i + 1) * RANK] @ u
            )
            torch.testing.assert_close(
                fc2.delta_weight()[:, i * DIM : (i + 1) * DIM],
                2.0 * v @ fc2.core[:, i * RANK : (i + 1) * RANK] @ u,
            )
    assert [tuple(m.core.shape) for m in (qkv, blk.attn.proj, fc1, fc2)] == [
        (3 * RANK, RANK),
        (RANK, RANK),
        (4 * RANK, RANK),
        (RANK, 4 * RANK),
    ]


def _reference_tk_increments(f: FacTFactors, block: int, x: torch.Tensor, h: torch.Tensor):
    """The official ``fact_tk.py`` forward written out: qkv and fc1 increments of x, fc2 increment of h."""
    c = f.core @ f.p[:, block * 12 : block * 12 + 12]  # (r, r, 12): q, k, v, proj, fc1 x4, fc2 x4
    ux = x @ f.u.t()  # (B, N, r)
    qkv = torch.cat([(ux @ c[:, :, j]) @ f.v.t() for j in range(3)], dim=-1)
    fc1 = ((ux @ c[:, :, 4:8].reshape(RANK, 4 * RANK)).reshape(*x.shape[:2], 4, RANK) @ f.v.t()).flatten(-2)
    uh = (h.reshape(*h.shape[:2], 4, DIM) @ f.u.t()).reshape(*h.shape[:2], 4 * RANK)
    fc2 = (uh @ c[:, :, 8:12].reshape(RANK, 4 * RANK).t()) @ f.v.t()
    return qkv, fc1, fc2


def test_tk_reproduces_the_reference_forward_including_its_fc1_fc2_layout():
    model = _fact("fact_tk", scale=10.0)
    x, h = torch.randn(2, 17, DIM), torch.randn(2, 17, 4 * DIM)
    for b, blk in enumerate(model.blocks):
        want_qkv, want_fc1, want_fc2 = _reference_tk_increments(model.fact, b, x, h)
        with torch.no_grad():
            got_qkv = blk.attn.qkv(x) - blk.attn.qkv.base_layer(x)
            got_fc1 = blk.mlp.fc1(x) - blk.mlp.fc1.base_layer(x)
            got_fc2 = blk.mlp.fc2(h) - blk.mlp.fc2.base_layer(h)
        torch.testing.assert_close(got_qkv, 10.0 * want_qkv, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got_fc1, 10.0 * want_fc1, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got_fc2, 10.0 * want_fc2, rtol=1e-4, atol=1e-4)
    assert model.fact.p.shape == (RANK, 3 * 12) and model.fact.core.shape == (RANK,) * 3


@pytest.mark.parametrize("name", ["fact_tt", "fact_tk"])
def test_forward_equals_the_merged_weight_at_every_site(name):
    model = _fact(name)
    x = torch.randn(2, 5, DIM)
    for wrapper in (m for m in model.modules() if isinstance(m, FacTLinear)):
        inp = x if wrapper.in_features == DIM else torch.randn(2, 5, wrapper.in_features)
        base = wrapper.base_layer
        with torch.no_grad():
            want = torch.nn.functional.linear(inp, base.weight + wrapper.delta_weight(), base.bias)
            torch.testing.assert_close(wrapper(inp), want, rtol=1e-4, atol=1e-5)


def test_v_is_the_zero_factor_and_u_the_trained_one_at_init():
    model = tiny_vit()
    attach_method(model, build_method("fact_tt"))
    assert (
        torch.count_nonzero(model.fact.v) == 0 and torch.count_nonzero(model.fact.u) == model.fact.u.numel()
    )


def test_an_mlp_width_that_is_not_a_multiple_of_d_is_refused():
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=5, mlp_ratio=2.5, **VIT_KWARGS
    )
    with pytest.raises(MethodNotSupportedError, match="multiple of 48"):
        attach_method(model, build_method("fact_tt"))
