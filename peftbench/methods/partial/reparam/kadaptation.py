"""KAdaptation: Kronecker-product updates of W_q and W_v with slow weights shared across layers.

Paper: He, Li, Zhang, Yang & Wang (AAAI 2023), "Parameter-efficient Model Adaptation for Vision
Transformers". Reference implementation followed: eric-ai-lab/PEViT ``vision_benchmark/evaluation/model.py``
(``Transformer.phm_rule*`` and ``MultiheadAttention.adapter_forward``).

Update of the q (and likewise v) projection: ``dW = s * sum_i A_i kron (u_i v_i)`` for i = 1..n, with
``A_i`` (n x n) the *slow* weights, shared by all layers (one set for q, one for v), each itself rank-1
(``slow_left[i] @ slow_right[i]``), and ``u_i`` (D/n x r), ``v_i`` (r x D/n) the per-layer rank-r *fast*
weights. A trainable vector ``kron_bias`` (D, one per block) is added to both the q and the v update.
Reference settings: n = 32, r = 1, s = lora_attn_alpha / lora_attn_dim * 5 = 128 / 4 * 5 = 160, dropout 0.5
on the Kronecker update weight (training only), slow weights uniform(-0.01, 0.01), bias zero.

Why KAdaptation rather than KronA (Edalati et al. 2022): it is the vision paper (ViT, image
classification) with an official implementation; KronA was evaluated on GLUE with T5 and released no code,
and its single-product form is available through the PEFT bridge as ``hf_lokr``.

Parameter count: per block 2 * n * r * (D/n + D/n) + D, plus 4 n^2 shared; on ViT-B/16
12 * (2 * 32 * (24 + 24) + 768) + 4 * 1024 = 50,176. The paper reports no VTAB-1k row; its official README
gives 79,699 trainable parameters averaged over the 20 ELEVATER tasks for CLIP ViT-B/32 (same widths and
depth as ViT-B/16) *including* the linear head, whose average there is 29,523 (the linear-probing line):
79,699 - 29,523 = 50,176, which this default reproduces exactly.

Deliberate deviations from the reference code (bugs there, not in the paper's method):
* it zero-initialises *both* fast factors, so no gradient ever reaches them (nor the slow weights) and
  only the bias trains; we zero only the output-side factor ``fast_up`` (update still zero at init) and
  initialise ``fast_down`` glorot-uniform with gain sqrt(2), the reference's own "glorot-uniform" rule;
* its v update reuses the q fast weights (``Wq``) while ``v_proj_adapter1_*`` are allocated, counted and
  never used; we use the v fast weights for v.
The update is written in torch's (out, in) convention, i.e. the transpose of the reference's ``x @ H``;
both factors are trainable, so the function family is the same.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import replace_module
from peftbench.methods.layers.mergeable import (
    QKV_SLOTS,
    MergeableLinear,
    block_linears,
    merge_linear_wrappers,
    scatter_slots,
)

SLOW_ATTR = "kadaptation"  # where the shared slow weights live on the backbone (removed again by merge)
ADAPTED = (QKV_SLOTS["q"], QKV_SLOTS["v"])


@dataclasses.dataclass
class KAdaptationConfig(MethodConfig):
    """KAdaptation options; defaults = the official implementation's settings.

    Attributes:
        kron_dim: n, the number of Kronecker products and the size of each slow weight (n x n); must divide
            the width of every adapted layer.
        rank: r, rank of each fast weight u_i v_i.
        scale: s, the factor on the update.
        dropout: dropout on the Kronecker update weight (training only).
        bias: train the per-block vector added to the q and v updates.
    """

    kron_dim: int = 32
    rank: int = 1
    scale: float = 160.0
    dropout: float = 0.5
    bias: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.kron_dim, int) or self.kron_dim < 1:
            raise ConfigError(
                f"kadaptation kron_dim must be an integer >= 1 (paper: 32), got {self.kron_dim!r}"
            )
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"kadaptation rank must be an integer >= 1 (paper: 1), got {self.rank!r}")
        if not self.scale > 0:
            raise ConfigError(f"kadaptation scale must be > 0 (paper: 160), got {self.scale!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"kadaptation dropout must be in [0, 1), got {self.dropout!r}")


class SlowWeights(PeftModule):
    """The shared slow weights: ``A[p, i] = slow_left[p, i] @ slow_right[p, i]`` for slot p, i < n."""

    def __init__(self, kron_dim: int, num_slots: int = len(ADAPTED)) -> None:
        super().__init__()
        self.slow_left = nn.Parameter(torch.empty(num_slots, kron_dim, kron_dim, 1).uniform_(-0.01, 0.01))
        self.slow_right = nn.Parameter(torch.empty(num_slots, kron_dim, 1, kron_dim).uniform_(-0.01, 0.01))

    def matrices(self) -> torch.Tensor:
        """A, shape (P, n, n, n): P slots, n matrices of n x n."""
        return self.slow_left @ self.slow_right


class KAdaptationQKV(MergeableLinear):
    """Adds ``s * sum_i A[p, i] kron (fast_up[p, i] @ fast_down[p, i]) x + kron_bias`` to slots q, v."""

    def __init__(self, base_layer: nn.Linear, slow: SlowWeights, cfg: KAdaptationConfig) -> None:
        super().__init__(base_layer)
        n, r = cfg.kron_dim, cfg.rank
        width = base_layer.out_features // 3
        if width % n or base_layer.in_features % n:
            common = math.gcd(width, base_layer.in_features)
            valid = [d for d in range(1, common + 1) if common % d == 0]
            raise ConfigError(
                f"kadaptation kron_dim={n} must divide the layer widths ({base_layer.in_features} in, "
                f"{width} out per slot); valid choices here: {valid}, e.g. method.kron_dim={valid[-1]}"
            )
        self._slow = (slow,)  # a reference: the slow weights are registered once, on the backbone
        self.scale = cfg.scale
        w = base_layer.weight
        self.fast_down = nn.Parameter(
            torch.empty(len(ADAPTED), n, r, base_layer.in_features // n, dtype=w.dtype, device=w.device)
        )
        for p_i in self.fast_down.data.flatten(0, 1):  # (r, in/n) each
            nn.init.xavier_uniform_(p_i, gain=2**0.5)
        self.fast_up = nn.Parameter(
            torch.zeros(len(ADAPTED), n, width // n, r, dtype=w.dtype, device=w.device)
        )
        self.kron_bias = (
            nn.Parameter(torch.zeros(width, dtype=w.dtype, device=w.device)) if cfg.bias else None
        )
        self.weight_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def slot_delta(self) -> torch.Tensor:
        """The q and v weight updates, shape (2, W, in)."""
        a = self._slow[0].matrices()  # (P, n, n, n)
        b = self.fast_up @ self.fast_down  # (P, n, W/n, in/n)
        p, n, bo, bi = b.shape
        kron = torch.einsum("pixy,pijk->pxjyk", a, b).reshape(p, n * bo, n * bi)  # sum_i A_i kron B_i
        return self.scale * kron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.weight_dropout(self.slot_delta())  # (2, W, in)
        d = torch.einsum("...i,pwi->...pw", x, delta)  # (..., 2, W)
        if self.kron_bias is not None:
            d = d + self.kron_bias
        return self.base_layer(x) + scatter_slots(d, ADAPTED, 3)

    def delta_weight(self) -> torch.Tensor:
        delta = self.slot_delta()  # (2, W, in)
        full = delta.new_zeros(3, *delta.shape[1:])
        index = torch.tensor(ADAPTED, device=delta.device)
        return full.index_copy(0, index, delta).reshape(self.out_features, self.in_features)

    def delta_bias(self) -> torch.Tensor | None:
        if self.kron_bias is None:
            return None
        return scatter_slots(self.kron_bias.expand(len(ADAPTED), -1), ADAPTED, 3)  # (3W,), zero for k


class KAdaptation(PeftMethod[KAdaptationConfig]):
    """Kronecker adaptation of W_q and W_v (shared slow weights, per-layer low-rank fast weights)."""

    name = "kadaptation"
    family = "partial"
    subfamily = "reparameter"
    config_cls = KAdaptationConfig
    mergeable = True
    backbones = ("vit", "swin")

    def apply(self, model: nn.Module) -> nn.Module:
        cfg: KAdaptationConfig = self.config
        sites = block_linears(model, "attn.qkv")
        ref = sites[0][1].weight
        slow = SlowWeights(cfg.kron_dim).to(ref.device, ref.dtype)
        for name, linear in sites:
            replace_module(model, name, KAdaptationQKV(linear, slow, cfg))
        setattr(model, SLOW_ATTR, slow)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        merge_linear_wrappers(model)
        if isinstance(getattr(model, SLOW_ATTR, None), SlowWeights):
            delattr(model, SLOW_ATTR)
        return model
