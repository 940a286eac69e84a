"""Hydra: a parallel and a sequential low-rank branch on the attention output and MLP output projections.

Paper: Kim, Yang, Kim, Hong, Park (2023), "Hydra: Multi-head Low-rank Adaptation for Parameter Efficient
Fine-tuning" (arXiv:2309.06922). Reference implementation followed: extremebird/Hydra @ 4138457
``vtab1k/hydra.py`` (``Hydra_layer``, ``forward_vit_hydra_attn``, ``forward_vit_hydra_ffn``, ``set_hydra``
with ``method='hydra_both'``, ``reparameterize``) and ``vtab1k/train.py`` / ``vtab1k/configs/hydra_both/<task>.yaml``:

* a frozen Linear ``W0`` (``attn.proj`` and ``mlp.fc2`` of every block) computes
  ``y = W0 x + b0 + s * [P(x) + S(W0 x + b0)]``: the parallel branch ``P`` reads the layer's input, the
  sequential branch ``S`` its output; each branch is ``up(dropout(down(.)))``, linear (no activation), with
  biases, down ``in -> r``, up ``r -> out``, r = 2 (``train_hydra.sh``: ``dim=2``);
* init: down xavier-uniform, up zero, every bias zero, so the model is the backbone at init;
* both branches are linear in ``x``, so after training the layer folds into one Linear
  (``reparameterize``): ``W = W0 + s (Wp + Ws W0)``, ``b = b0 + s (bp + Ws b0 + bs)`` with
  ``Wp = Up_p Dn_p``, ``bp = Up_p bd_p + bu_p`` and likewise for ``S``. The merged backbone is a plain timm model;
* s and the dropout are per task in the reference (``configs/hydra_both/<task>.yaml``: s in 0.1 ... 4.5,
  dropout 0, 0.1 or 0.2); they are in the recipe ``configs/experiment/hydra/hydra.yaml``. The defaults here are
  ``Hydra_layer``'s own (s = 1, which is also the median of the 19 per-task values, dropout 0).

Count on ViT-B/16 without head, r = 2: 12 x [3 (2*768 + 2 + 768) + (3072*2 + 2 + 2*768 + 768)] = 239,712.
The Hydra README table and V-PETL Bench print 0.28M: they count the head averaged over the 19 VTAB-1k tasks
(940 classes x 769 / 19 = 38,045; their linear probe is 0.04M), 239,712 + 38,045 = 277,757.

Backbones. The two layers are the logical ``proj`` and ``mlp_out`` sites of every transformer block
(:func:`~peftbench.methods.layers.blocks.block_sites`): Swin's ``SwinTransformerBlock`` and Eva's blocks have the
same ``attn.proj`` and ``mlp.fc2`` Linears (no published Swin or Eva setting). On EVA-02's SwiGLU MLP the parallel
branch of ``mlp.fc2`` reads fc2's input, the gated hidden after SwiGLU's inner LayerNorm; LayerScale, registers,
rotary embeddings and the pooling head do not touch the two Linears. ConvNeXt is refused: its blocks have no
attention output projection, and the reference defines only ``hydra_both`` (no MLP-only form). Deviation: the
reference's own merge (``set_hydraWeight``) reads ``mlp.fc2``'s weight when merging the attention branch (a bug,
not reproduced).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.bottleneck import init_projections
from peftbench.methods.layers.checks import check_dropout, check_positive_int, is_positive_number
from peftbench.methods.layers.mergeable import MergeableLinear, merge_linear_wrappers

SITES = ("proj", "mlp_out")  # 'hydra_both': the attention output projection and the MLP's output Linear


@dataclasses.dataclass
class HydraConfig(MethodConfig):
    """Hydra options; defaults are the reference's r = 2 with ``Hydra_layer``'s s = 1 and dropout 0.

    Attributes:
        dim: r, the rank of each branch.
        scale: s, the branches' scale.
        dropout: dropout between down and up (training only).
    """

    dim: int = 2
    scale: float = 1.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_positive_int("hydra", "dim", self.dim)
        if not is_positive_number(self.scale):
            raise ConfigError(f"hydra scale must be a number > 0, got {self.scale!r}; e.g. method.scale=0.1")
        check_dropout("hydra", self.dropout)


class HydraLinear(MergeableLinear):
    """``y = base(x) + s * [par_up(drop(par_down(x))) + seq_up(drop(seq_down(base(x))))]``.

    Args:
        base_layer: the frozen Linear ``W0`` (in -> out).
        rank: r of both branches.
        scale: s.
        dropout: dropout on the rank-r hidden of both branches.
    """

    def __init__(self, base_layer: nn.Linear, rank: int, scale: float, dropout: float) -> None:
        super().__init__(base_layer)
        w = base_layer.weight
        factory = {"dtype": w.dtype, "device": w.device}
        fan_in, fan_out = base_layer.in_features, base_layer.out_features
        self.par_down = nn.Linear(fan_in, rank, **factory)  # parallel: reads the layer's input
        self.par_up = nn.Linear(rank, fan_out, **factory)
        self.seq_down = nn.Linear(fan_out, rank, **factory)  # sequential: reads the layer's output
        self.seq_up = nn.Linear(rank, fan_out, **factory)
        init_projections(self.par_down, self.par_up, "xavier_zero", 0.0)
        init_projections(self.seq_down, self.seq_up, "xavier_zero", 0.0)
        self.dropout = nn.Dropout(dropout)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)  # (..., out)
        par = self.par_up(self.dropout(self.par_down(x)))  # (..., out)
        seq = self.seq_up(self.dropout(self.seq_down(h)))  # (..., out)
        return h + self.scale * (par + seq)

    def delta_weight(self) -> torch.Tensor:
        w0 = self.base_layer.weight  # (out, in)
        parallel = self.par_up.weight @ self.par_down.weight  # (out, in)
        sequential = self.seq_up.weight @ self.seq_down.weight @ w0  # (out, out) @ (out, in)
        return self.scale * (parallel + sequential)

    def delta_bias(self) -> torch.Tensor:
        b0 = self.base_layer.bias
        parallel = self.par_up(self.par_down.bias)  # Up_p bd_p + bu_p, (out,)
        seq_in = self.seq_down.bias if b0 is None else self.seq_down(b0)  # Dn_s b0 + bd_s, (r,)
        return self.scale * (parallel + self.seq_up(seq_in))


def apply_hydra(model: nn.Module, cfg: HydraConfig) -> nn.Module:
    """Wrap the attention output projection and the MLP output Linear of every block with :class:`HydraLinear`.

    Args:
        model: a timm ViT, Eva or Swin.
        cfg: the Hydra options.

    Returns:
        The same model, adapted in place.
    """
    for site in SITES:
        for linear_site in block_sites(model, site, transformer_blocks(model)):
            for part in linear_site.parts:
                replace_module(model, part.name, HydraLinear(part.layer, cfg.dim, cfg.scale, cfg.dropout))
    return model


class Hydra(PeftMethod[HydraConfig]):
    """Hydra: parallel + sequential rank-2 branches on ``attn.proj`` and ``mlp.fc2``, merged after training."""

    name = "hydra"
    family = "partial"
    subfamily = "reparameter"
    config_cls = HydraConfig
    mergeable = True
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "Hydra's branches go on each block's attention output projection and MLP output Linear "
        "(hydra_both, the reference's only form), and a ConvNeXt block has no attention",
    }
    notes = {
        "swiglu": "the parallel branch of mlp.fc2 reads the SwiGLU hidden (after its inner LayerNorm)",
        "layerscale": "the branches sit inside the layer scale (on the Linears before it)",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_hydra(model, self.config)

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_linear_wrappers(model)
