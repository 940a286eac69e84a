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

Backbones: the q and v maps are the ``qkv`` site's slots (:func:`~peftbench.methods.layers.blocks.block_sites`):
slices of timm's fused qkv (ViT, Swin, DINOv3), or EVA-02's ``q_proj`` and ``v_proj``, where the q wrapper
holds the block's ``kron_bias`` and the v wrapper reads it (one vector per block, as on the fused layer).
Merging adds ``kron_bias`` to the q and v biases, so it is refused where they have none (DINOv3's bias-free
qkv; ``bias: false`` merges there). ConvNeXt has no attention.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import LinearSite, block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.mergeable import (
    QKV_SLOTS,
    MergeableLinear,
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


class KAdaptationLinear(MergeableLinear):
    """Adds ``s * sum_i A[p, i] kron (fast_up[p, i] @ fast_down[p, i]) x + kron_bias`` to the adapted slots.

    Args:
        base_layer: the fused qkv (``num_slots`` 3, slots q and v adapted) or one of EVA-02's q / v projections.
        slow: the shared slow weights (one set per adapted slot q, v).
        cfg: the options.
        num_slots: equal-width slots of ``base_layer``'s output.
        adapted: ``(slot of this layer, slow-weight set)`` per adapted slot.
        owner: the wrapper holding this block's ``kron_bias`` (None: this one does).
    """

    def __init__(self, base_layer: nn.Linear, slow: SlowWeights, cfg: KAdaptationConfig, num_slots: int = 3,
                 adapted: tuple[tuple[int, int], ...] = ((0, 0), (2, 1)), owner: KAdaptationLinear | None = None,
                 ) -> None:
        super().__init__(base_layer, owner)
        n, r = cfg.kron_dim, cfg.rank
        width = base_layer.out_features // num_slots
        if width % n or base_layer.in_features % n:
            common = math.gcd(width, base_layer.in_features)
            valid = [d for d in range(1, common + 1) if common % d == 0]
            raise ConfigError(
                f"kadaptation kron_dim={n} must divide the layer widths ({base_layer.in_features} in, "
                f"{width} out per slot); valid choices here: {valid}, e.g. method.kron_dim={valid[-1]}"
            )
        self._slow = (slow,)  # a reference: the slow weights are registered once, on the backbone
        self.scale, self.num_slots = cfg.scale, num_slots
        self.slots = tuple(slot for slot, _ in adapted)
        self.slow_index = tuple(index for _, index in adapted)
        w = base_layer.weight
        self.fast_down = nn.Parameter(
            torch.empty(len(adapted), n, r, base_layer.in_features // n, dtype=w.dtype, device=w.device)
        )
        for p_i in self.fast_down.data.flatten(0, 1):  # (r, in/n) each
            nn.init.xavier_uniform_(p_i, gain=2**0.5)
        self.fast_up = nn.Parameter(
            torch.zeros(len(adapted), n, width // n, r, dtype=w.dtype, device=w.device)
        )
        if owner is None:
            self.kron_bias = (
                nn.Parameter(torch.zeros(width, dtype=w.dtype, device=w.device)) if cfg.bias else None
            )
        self.weight_dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def slot_delta(self) -> torch.Tensor:
        """The adapted slots' weight updates, shape (P, W, in)."""
        a = self._slow[0].matrices()[list(self.slow_index)]  # (P, n, n, n)
        b = self.fast_up @ self.fast_down  # (P, n, W/n, in/n)
        p, n, bo, bi = b.shape
        kron = torch.einsum("pixy,pijk->pxjyk", a, b).reshape(p, n * bo, n * bi)  # sum_i A_i kron B_i
        return self.scale * kron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = self.weight_dropout(self.slot_delta())  # (P, W, in)
        d = torch.einsum("...i,pwi->...pw", x, delta)  # (..., P, W)
        bias = self.owner.kron_bias
        if bias is not None:
            d = d + bias
        return self.base_layer(x) + scatter_slots(d, self.slots, self.num_slots)

    def delta_weight(self) -> torch.Tensor:
        delta = self.slot_delta()  # (P, W, in)
        full = delta.new_zeros(self.num_slots, *delta.shape[1:])
        index = torch.tensor(self.slots, device=delta.device)
        return full.index_copy(0, index, delta).reshape(self.out_features, self.in_features)

    def delta_bias(self) -> torch.Tensor | None:
        bias = self.owner.kron_bias
        if bias is None:
            return None
        return scatter_slots(bias.expand(len(self.slots), -1), self.slots, self.num_slots)  # zero for k


def wrap_qkv(site: LinearSite, slow: SlowWeights, cfg: KAdaptationConfig) -> list[tuple[str, KAdaptationLinear]]:
    """KAdaptation wrappers for one block's q|k|v map: the fused Linear, or EVA-02's q and v projections."""
    out: list[tuple[str, KAdaptationLinear]] = []
    owner: KAdaptationLinear | None = None
    for part in site.parts:
        adapted = tuple((i, ADAPTED.index(s)) for i, s in enumerate(part.slots) if s in ADAPTED)
        if adapted:
            wrapper = KAdaptationLinear(part.layer, slow, cfg, len(part.slots), adapted, owner)
            owner = owner or wrapper
            out.append((part.name, wrapper))
    return out


class KAdaptation(PeftMethod[KAdaptationConfig]):
    """Kronecker adaptation of W_q and W_v (shared slow weights, per-layer low-rank fast weights)."""

    name = "kadaptation"
    family = "partial"
    subfamily = "reparameter"
    config_cls = KAdaptationConfig
    mergeable = True
    backbones = ("vit", "eva", "swin")
    refusals = {"convnext": "it adapts the query and value projections of attention, which ConvNeXt lacks"}
    notes = {
        "qkv_separate": "q_proj and v_proj; one kron_bias per block shared by both",
        "bias_free_linear": "merge refused where q/v have no bias (kron_bias needs one; bias=false merges)",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        cfg: KAdaptationConfig = self.config
        sites = block_sites(model, "qkv", transformer_blocks(model))
        ref = sites[0].parts[0].layer.weight
        slow = SlowWeights(cfg.kron_dim).to(ref.device, ref.dtype)
        for site in sites:
            for name, wrapper in wrap_qkv(site, slow, cfg):
                replace_module(model, name, wrapper)
        setattr(model, SLOW_ATTR, slow)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        merge_linear_wrappers(model)
        if isinstance(getattr(model, SLOW_ATTR, None), SlowWeights):
            delattr(model, SLOW_ATTR)
        return model
