"""KAdaptation: sum of Kronecker products on q and v only, shared slow weights, bias, trainable init."""

from __future__ import annotations

import pytest
import torch

from peftbench.errors import ConfigError
from peftbench.methods.attach import attach_method
from peftbench.methods.partial.reparam.kadaptation import KAdaptationLinear
from peftbench.methods.registry import build_method
from tests.tiny_models import tiny_swin, tiny_vit

DIM, N, RANK = 48, 4, 2


def _kadapt(perturb: bool = True, **options):
    model = tiny_vit()
    attach_method(model, build_method("kadaptation", {"kron_dim": N, "rank": RANK, **options}))
    if perturb:
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_update_is_a_sum_of_kronecker_products_on_q_and_v_with_their_own_fast_weights():
    model = _kadapt()
    qkv = model.blocks[2].attn.qkv
    slow = model.kadaptation
    with torch.no_grad():
        dw = qkv.delta_weight().unflatten(0, (3, DIM))  # (slot, D, D)
        for slot, p in ((0, 0), (2, 1)):  # q uses pair 0, v pair 1 (not q's, unlike the reference code)
            want = sum(
                torch.kron(
                    slow.slow_left[p, i] @ slow.slow_right[p, i], qkv.fast_up[p, i] @ qkv.fast_down[p, i]
                )
                for i in range(N)
            )
            torch.testing.assert_close(dw[slot], 160.0 * want)
        assert torch.count_nonzero(dw[1]) == 0  # k untouched
        assert not torch.allclose(dw[0], dw[2])


def test_slow_weights_are_shared_by_all_layers_and_registered_once():
    model = _kadapt()
    wrappers = [m for m in model.modules() if isinstance(m, KAdaptationLinear)]
    assert len(wrappers) == 3 and all(w._slow[0] is model.kadaptation for w in wrappers)
    names = [n for n, _ in model.named_parameters() if "slow_" in n]
    assert names == ["kadaptation.slow_left", "kadaptation.slow_right"]
    assert model.kadaptation.slow_left.shape == (2, N, N, 1)  # q and v rules, each A_i rank-1


def test_the_bias_moves_q_and_v_but_not_k():
    model = _kadapt(perturb=False, dropout=0.0)
    qkv = model.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.kron_bias.fill_(1.0)  # fast_up is still zero: the only change is the bias
        x = torch.randn(2, 5, DIM)
        d = (qkv(x) - qkv.base_layer(x)).unflatten(-1, (3, DIM))
    torch.testing.assert_close(d[..., 0, :], torch.ones_like(d[..., 0, :]))
    assert torch.count_nonzero(d[..., 1, :]) == 0
    torch.testing.assert_close(d[..., 2, :], torch.ones_like(d[..., 2, :]))


def test_gradients_reach_the_fast_weights_from_the_identity_init():
    """The reference zero-inits both fast factors, so they never train; here the up factor gets a gradient."""
    model = tiny_vit()
    attach_method(model, build_method("kadaptation", {"kron_dim": N, "rank": RANK}))
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    qkv = model.blocks[0].attn.qkv
    assert torch.count_nonzero(qkv.fast_up) == 0 and torch.count_nonzero(qkv.fast_down) > 0
    assert qkv.fast_up.grad is not None and qkv.fast_up.grad.abs().sum() > 0


def test_weight_dropout_only_in_training():
    model = _kadapt()
    qkv = model.blocks[0].attn.qkv
    x = torch.randn(2, 5, DIM)
    with torch.no_grad():
        merged = torch.nn.functional.linear(
            x, qkv.base_layer.weight + qkv.delta_weight(), qkv.base_layer.bias + qkv.delta_bias()
        )
        torch.testing.assert_close(qkv(x), merged, rtol=1e-4, atol=1e-5)
        qkv.train()
        assert not torch.allclose(qkv(x), merged, atol=1e-4)


def test_swin_stages_share_the_slow_weights_when_kron_dim_divides_every_width():
    model = tiny_swin()
    attach_method(model, build_method("kadaptation", {"kron_dim": N}))
    wrappers = [m for m in model.modules() if isinstance(m, KAdaptationLinear)]
    assert [w.fast_up.shape[2] for w in wrappers] == [24 // N, 48 // N]


def test_kron_dim_must_divide_the_width():
    with pytest.raises(ConfigError, match="kron_dim=5 must divide"):
        attach_method(tiny_vit(), build_method("kadaptation", {"kron_dim": 5}))
