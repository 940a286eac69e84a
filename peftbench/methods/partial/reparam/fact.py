"""FacT: factor-tuning, one tensorised weight increment for the whole ViT, decomposed across layers.

Paper: Jie & Deng (AAAI 2023), "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer".
Reference implementation followed: JieShibo/PETL-ViT ``FacT/fact_tt.py`` and ``FacT/fact_tk.py`` (per-task
rank and scale in ``FacT/configs/{tt,tk}/*.yaml``).

All 12L D x D weight matrices of the ViT (per block: q, k, v, attn proj, the 4 D x D blocks of fc1 and the
4 of fc2) share the factors ``U`` (r x D, input side) and ``V`` (D x r, output side, zero-initialised so the
increment is zero at init); each matrix's increment is ``s * V K U`` with an r x r core ``K``:

* ``fact_tt`` (Tensor-Train, Eq. 8): every site owns its cores (q, k, v, proj: r x r; fc1: 4r x r;
  fc2: r x 4r), initialised as ``nn.Linear`` weights. Params: 2Dr + 12L r^2.
* ``fact_tk`` (Tucker, Eq. 10): cores are slices of one shared ``core`` (r x r x r) mixed by ``p``
  (r x 12L): ``K = core x_3 p[:, i]``; ``core`` and ``p`` xavier-uniform. Params: 2Dr + r^3 + 12L r.

fc1 / fc2 are handled as the official code does: fc1's output (and fc2's input) is viewed as 4 chunks of D,
each chunk mapped by the shared U / V. For ``fact_tk`` the official code builds fc1/fc2 cores by reshaping
the (r, r, 4) Tucker slice to (r, 4r), which interleaves the chunk and rank indices: the four chunks use a
fixed permutation of that slice's entries instead of one r x r slice each, as a literal reading of Eq. 11
would. We reproduce the reference layout exactly (same function for the same factors), since the published
numbers come from it. Dropout 0.1 sits after the core, before V.

Defaults (ViT-B/16, VTAB-1k; Table 1 of the paper): ``fact_tt`` = "FacT-TT4" (r = 4, 0.008M =
2*768*4 + 144*16 = 8,448) and ``fact_tk`` = "FacT-TK8" (r = 8, 0.014M = 2*768*8 + 8^3 + 144*8 = 13,952),
the table's fixed-rank rows (the <=16 / <=32 rows search r per task, so their 0.037M / 0.069M are averages
that no single config reproduces). The scale s was swept per task over {0.01, 0.1, 1, 10, 100}; the defaults
are the most frequent value in the released configs (TT: 1.0, 7 of 19 tasks; TK: 10.0, 9 of 19).
Training recipe of the paper: AdamW lr 1e-3, wd 1e-4, batch 64, 100 epochs, drop-path 0.1. For the
few-shot FGVC experiments the paper uses FacT-TT with 61K parameters (r = 16: 2*768*16 + 144*256).
ViT and Eva: Swin's and ConvNeXt's stages have different widths, so the factors cannot be shared as the paper
defines them. On Eva, DINOv3's fused qkv is tensorised as ViT's; separate q/k/v projections would be three
D x D sites (their Tucker columns in q, k, v order). EVA-02's SwiGLU MLP is refused: its two input maps and
its output are 8D/3 = 2048 wide for D = 768, not a multiple of D, so they do not split into the D x D blocks
the tensor is made of. LayerScale, registers and the pooling head do not touch the adapted Linears.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import C, MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import LinearSite, block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.mergeable import MergeableLinear, merge_linear_wrappers

FACTORS_ATTR = "fact"  # where the shared factors live on the backbone (removed again by merge)


@dataclasses.dataclass
class FacTTTConfig(MethodConfig):
    """FacT options; defaults = the paper's FacT-TT4 row.

    Attributes:
        rank: r, width of the shared factors and cores.
        scale: s, the factor on every increment.
        dropout: dropout after the core (training only).
    """

    rank: int = 4
    scale: float = 1.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"FacT rank must be an integer >= 1 (paper: 1..32), got {self.rank!r}")
        if not self.scale > 0:
            raise ConfigError(f"FacT scale must be > 0 (paper sweeps 0.01..100), got {self.scale!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"FacT dropout must be in [0, 1), got {self.dropout!r}")


@dataclasses.dataclass
class FacTTKConfig(FacTTTConfig):
    """FacT-TK options; defaults = the paper's FacT-TK8 row."""

    rank: int = 8
    scale: float = 10.0


class FacTFactors(PeftModule):
    """The factors shared by every site: ``u`` (r, D), ``v`` (D, r); Tucker adds ``core`` and ``p``."""

    def __init__(self, dim: int, rank: int, num_matrices: int | None = None) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.empty(rank, dim))  # weight of nn.Linear(D, r)
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))
        self.v = nn.Parameter(torch.zeros(dim, rank))  # weight of nn.Linear(r, D), zero: identity at init
        if num_matrices is not None:
            self.core = nn.Parameter(torch.empty(rank, rank, rank))
            self.p = nn.Parameter(torch.empty(rank, num_matrices))
            nn.init.xavier_uniform_(self.core)
            nn.init.xavier_uniform_(self.p)

    def tucker_slices(self, start: int, count: int) -> torch.Tensor:
        """``core x_3 p[:, start:start+count]``, shape (r, r, count)."""
        return self.core @ self.p[:, start : start + count]


class FacTLinear(MergeableLinear):
    """``y = base(x) + s * V_blocks dropout(K U_blocks x)`` for one site.

    The input is ``groups_in`` chunks of D and the output ``groups_out`` chunks of D; ``U`` / ``V`` act per
    chunk and the site core ``K`` has shape ``(groups_out * r, groups_in * r)``.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        factors: FacTFactors,
        groups_out: int,
        groups_in: int,
        scale: float,
        dropout: float,
    ) -> None:
        super().__init__(base_layer)
        self._factors = (
            factors,
        )  # a reference, not a child: the factors are registered once, on the backbone
        self.groups_out, self.groups_in, self.scale = groups_out, groups_in, scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def factors(self) -> FacTFactors:
        return self._factors[0]

    def site_core(self) -> torch.Tensor:
        """K, shape ``(groups_out * r, groups_in * r)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factors
        rank = f.u.shape[0]
        h = x.unflatten(-1, (self.groups_in, -1)) @ f.u.t()  # (..., gi, r)
        h = self.dropout(h.flatten(-2) @ self.site_core().t())  # (..., go*r)
        d = h.unflatten(-1, (self.groups_out, rank)) @ f.v.t()  # (..., go, D)
        return self.base_layer(x) + self.scale * d.flatten(-2)

    def delta_weight(self) -> torch.Tensor:
        f = self.factors
        rank = f.u.shape[0]
        k = self.site_core().view(self.groups_out, rank, self.groups_in, rank)
        dw = torch.einsum("dt,atbs,se->adbe", f.v, k, f.u)  # (go, D, gi, D)
        return self.scale * dw.reshape(self.out_features, self.in_features)


class FacTTTLinear(FacTLinear):
    """Tensor-Train site: the core is this site's own parameter (``nn.Linear`` init, as the reference)."""

    def __init__(
        self,
        base_layer: nn.Linear,
        factors: FacTFactors,
        groups_out: int,
        groups_in: int,
        scale: float,
        dropout: float,
    ) -> None:
        super().__init__(base_layer, factors, groups_out, groups_in, scale, dropout)
        rank = factors.u.shape[0]
        self.core = nn.Parameter(torch.empty(groups_out * rank, groups_in * rank))
        # fan_in = groups_in * r: the same bound as the reference's nn.Linear(r, r) / (r, 4r) / (4r, r)
        nn.init.kaiming_uniform_(self.core, a=math.sqrt(5))

    def site_core(self) -> torch.Tensor:
        return self.core


class FacTTKLinear(FacTLinear):
    """Tucker site: the core is read from the shared Tucker factors at columns ``start:start+count``.

    ``layout`` says how the (r, r, count) slice becomes K, exactly as the reference code builds it:
    ``stacked`` (q/k/v/proj: the transposed r x r slices stacked), ``fc1`` (slice reshaped to (r, 4r),
    transposed) or ``fc2`` (slice reshaped to (r, 4r)).
    """

    LAYOUTS = ("stacked", "fc1", "fc2")

    def __init__(
        self,
        base_layer: nn.Linear,
        factors: FacTFactors,
        groups_out: int,
        groups_in: int,
        scale: float,
        dropout: float,
        start: int,
        count: int,
        layout: str,
    ) -> None:
        super().__init__(base_layer, factors, groups_out, groups_in, scale, dropout)
        if layout not in self.LAYOUTS:
            raise ValueError(f"layout must be one of {self.LAYOUTS}, got {layout!r}")
        self.start, self.count, self.layout = start, count, layout

    def site_core(self) -> torch.Tensor:
        m = self.factors.tucker_slices(self.start, self.count)  # (r, r, count)
        rank = m.shape[0]
        if self.layout == "fc1":
            return m.reshape(rank, rank * self.count).t()  # (4r, r)
        if self.layout == "fc2":
            return m.reshape(rank, rank * self.count)  # (r, 4r)
        return m.permute(2, 1, 0).reshape(self.count * rank, rank)  # (count*r, r), rows j*r + b


def _check_sites(model: nn.Module) -> tuple[int, int, dict[str, list[LinearSite]]]:
    """(D, MLP ratio, the qkv / proj / mlp_in / mlp_out sites) of a ViT or Eva, checked for FacT's tensorisation."""
    dim = model.embed_dim
    sites = {name: block_sites(model, name, transformer_blocks(model)) for name in ("qkv", "proj", "mlp_in", "mlp_out")}
    qkv, mlp_in = sites["qkv"][0], sites["mlp_in"][0]
    hidden = mlp_in.parts[0].layer.out_features
    if len(mlp_in.parts) != 1 or hidden % dim or qkv.out_features != 3 * dim or qkv.in_features != dim:
        raise MethodNotSupportedError(
            f"FacT tensorises D x D weights: it needs qkv {dim}->{3 * dim} and one MLP input Linear whose width is a "
            f"multiple of {dim}, got qkv {qkv.in_features}->{qkv.out_features} and {len(mlp_in.parts)} MLP input "
            f"Linear(s) of width {hidden} (EVA-02's SwiGLU is 8D/3 wide)"
        )
    return dim, hidden // dim, sites


class _FacT(PeftMethod[C]):
    family = "partial"
    subfamily = "reparameter"
    mergeable = True
    backbones = ("vit", "eva")
    refusals = {
        "swin": "its factors are shared by every D x D weight of the network, and Swin's stages have different "
        "widths",
        "convnext": "its factors are shared by every D x D weight of a transformer, and ConvNeXt's stages have "
        "different widths and no attention",
    }
    notes = {"rope": "rotary embeddings act after the projections and do not touch the tensorised weights"}
    tucker = False

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        dim, ratio, sites = _check_sites(model)
        per_block = 4 + 2 * ratio  # q, k, v, proj, fc1 chunks, fc2 chunks
        blocks = len(transformer_blocks(model))
        ref = model.patch_embed.proj.weight
        factors = FacTFactors(dim, cfg.rank, blocks * per_block if self.tucker else None).to(
            ref.device, ref.dtype
        )
        # site: (groups_out per slot, groups_in, first Tucker column in the block, columns per slot, layout)
        layout = {
            "qkv": (1, 1, 0, 1, "stacked"),
            "proj": (1, 1, 3, 1, "stacked"),
            "mlp_in": (ratio, 1, 4, ratio, "fc1"),
            "mlp_out": (1, ratio, 4 + ratio, ratio, "fc2"),
        }
        for site_name, (g_out, g_in, col, count, kind) in layout.items():
            for b, site in enumerate(sites[site_name]):
                for part in site.parts:  # fused qkv: 3 slots in one Linear; EVA-style q/k/v: one each
                    n, first = len(part.slots), part.slots[0]
                    if self.tucker:
                        start = b * per_block + col + first * count
                        wrapper: FacTLinear = FacTTKLinear(
                            part.layer, factors, g_out * n, g_in, cfg.scale, cfg.dropout, start, count * n, kind
                        )
                    else:
                        wrapper = FacTTTLinear(part.layer, factors, g_out * n, g_in, cfg.scale, cfg.dropout)
                    replace_module(model, part.name, wrapper.to(ref.device, ref.dtype))
        setattr(model, FACTORS_ATTR, factors)
        return model

    def merge(self, model: nn.Module) -> nn.Module:
        merge_linear_wrappers(model)
        if isinstance(getattr(model, FACTORS_ATTR, None), FacTFactors):
            delattr(model, FACTORS_ATTR)
        return model


class FacTTT(_FacT[FacTTTConfig]):
    """FacT with Tensor-Train factors (per-site cores)."""

    name = "fact_tt"
    config_cls = FacTTTConfig


class FacTTK(_FacT[FacTTKConfig]):
    """FacT with Tucker factors (one shared core tensor and a site-mixing matrix)."""

    name = "fact_tk"
    config_cls = FacTTKConfig
    tucker = True
