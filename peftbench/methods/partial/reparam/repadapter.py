"""RepAdapter: a linear (activation-free) adapter before MHSA and MLP, re-parameterised into the next linear.

Paper: Luo, Huang, Zhou, Sun, Jiang, Wang, Ji (2023), "Towards Efficient Visual Adaption via Structural
Re-parameterization" (arXiv 2302.08106). Reference implementation: luogen1996/RepAdapter ``repadapter.py``
(``RepAdapter``, ``set_RepAdapter``, ``set_RepWeight``) and ``train.py``:

* adapter ``x + s * conv_B(dropout(conv_A(x)))``: ``conv_A`` a 1x1 conv D -> 8 with bias (xavier-uniform
  weight, zero bias), dropout 0.1, ``conv_B`` a 1x1 conv 8 -> D with ``groups = 2`` and bias, both zero-init
  (so the model equals the backbone at init), times the scale s;
* ``repblock`` (the main "RepAdapter" row): one adapter after ``norm1`` before the attention and one after
  ``norm2`` before the MLP of every block (ViT and Swin); ``repattn``: the attention one only;
* after training the adapter is folded into the following ``attn.qkv`` / ``mlp.fc1``
  (``W' = W (I + s B A)``, ``b' = b + s W (B a + b_B)``).

Here the adapter lives in a wrapper of that following Linear (a :class:`~peftbench.methods.partial.reparam.
wrappers.MergeableLinear` whose ``forward`` is ``base(adapter(x))``), so the merge is exactly the reference
re-parameterisation. On Swin this places the adapter after timm's window padding instead of before it;
the two agree whenever the feature map divides into windows (every standard 224-pixel config).

Defaults = the paper's VTAB-1k ViT-B/16 setting: hidden dim 8, groups 2, dropout 0.1, ``block`` placement;
s is tuned per task in {0.1, 0.5, 1, 5, 10} (``configs/repblock/<task>.yaml``; the recipe ``experiment=repadapter/repadapter`` holds them);
the default 1.0 is the class default of the reference code. Count on ViT-B/16 without head, per adapter
``conv_A`` 768x8 + 8, ``conv_B`` 768x(8/2) + 768 = 9,992; 24 adapters -> 239,808 (0.24M). The paper and
V-PETL Bench's VTAB-1k table print 0.22M, which is the weights alone: 24 x (768x8 + 768x4) = 221,184; the
reference code trains the 24 x (8 + 768) = 18,624 biases as well, so the pinned count includes them.

Backbones: the adapter sits before the ``qkv`` and ``mlp_in`` maps (:func:`~peftbench.methods.layers.blocks.
block_sites`); where a map is several Linears reading the same input (EVA-02's q / k / v projections, its
SwiGLU's two input Linears) one adapter serves them all (the first wrapper holds it) and folds into each.
Merging needs a bias in every such Linear for the adapter's offset: EVA-02's k_proj and DINOv3's qkv have
none, so there the merge is refused before anything changes. ConvNeXt has no attention: refused.

Not reproduced: ``train.py`` adds a sparsity penalty ``sparse_lambda * ||conv_B||_2`` (lambda 1) to the loss;
the harness has no hook for method losses yet.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.mergeable import MergeableLinear, merge_linear_wrappers

# placement -> the logical maps whose input gets an adapter
TARGETS: dict[str, tuple[str, ...]] = {"block": ("qkv", "mlp_in"), "attn": ("qkv",)}

@dataclasses.dataclass
class RepAdapterConfig(MethodConfig):
    """RepAdapter options; defaults are the paper's VTAB-1k setting (s = 1, tuned per task there).

    Attributes:
        hidden_dim: adapter width (8).
        groups: groups of the up-projection ``conv_B`` (2); must divide hidden_dim and the block width.
        scale: s, the factor on the adapter branch.
        dropout: dropout between the two projections (training only).
        targets: ``block`` (before attention and MLP) or ``attn`` (before attention only).
    """

    hidden_dim: int = 8
    groups: int = 2
    scale: float = 1.0
    dropout: float = 0.1
    targets: str = "block"

    def __post_init__(self) -> None:
        for key in ("hidden_dim", "groups"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"repadapter {key} must be an integer >= 1, got {value!r}")
        if self.hidden_dim % self.groups:
            raise ConfigError(
                f"repadapter groups={self.groups} must divide hidden_dim={self.hidden_dim}; "
                "e.g. method.hidden_dim=8 method.groups=2"
            )
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)):
            raise ConfigError(
                f"repadapter scale must be a number (0.1 .. 10 in the paper), got {self.scale!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"repadapter dropout must be in [0, 1), got {self.dropout!r}")
        if self.targets not in TARGETS:
            raise ConfigError(
                f"repadapter targets {self.targets!r} is not one of {', '.join(sorted(TARGETS))}; "
                "block = the paper's RepAdapter, attn = RepAdapter_attn"
            )


class RepAdapterLinear(MergeableLinear):
    """``y = base(x + s * (B dropout(A x + a) + b))`` with a grouped up-projection B.

    ``down`` is the reference ``conv_A`` (an ``nn.Linear`` D -> h); ``up_weight`` holds ``conv_B``'s grouped
    kernel as ``(G, D / G, h / G)``: output chunk g reads hidden chunk g only.
    """

    def __init__(
        self, base_layer: nn.Linear, hidden_dim: int, groups: int, scale: float, dropout: float,
        owner: RepAdapterLinear | None = None,
    ) -> None:
        super().__init__(base_layer, owner)
        dim = base_layer.in_features
        if dim % groups:
            raise ConfigError(f"repadapter groups={groups} must divide the layer width {dim} of {base_layer}")
        w = base_layer.weight
        self.groups, self.scale = groups, scale
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if owner is not None:  # another Linear of the same map holds the adapter
            return
        self.down = nn.Linear(dim, hidden_dim, dtype=w.dtype, device=w.device)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        self.up_weight = nn.Parameter(
            torch.zeros(groups, dim // groups, hidden_dim // groups, dtype=w.dtype, device=w.device)
        )
        self.up_bias = nn.Parameter(torch.zeros(dim, dtype=w.dtype, device=w.device))

    def adapter(self, x: torch.Tensor) -> torch.Tensor:
        """The adapted input ``x + s * (B dropout(A x + a) + b)``, same shape as ``x``."""
        own = self.owner
        h = self.dropout(own.down(x)).unflatten(-1, (self.groups, -1))  # (..., G, h / G)
        up = torch.einsum("...gi,goi->...go", h, own.up_weight).flatten(-2)  # (..., D)
        return x + self.scale * (up + own.up_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(self.adapter(x))

    def dense_up(self) -> torch.Tensor:
        """``conv_B`` as a dense block-diagonal ``(D, h)`` matrix."""
        return torch.block_diag(*self.owner.up_weight)

    def delta_weight(self) -> torch.Tensor:
        adapter_w = self.scale * self.dense_up() @ self.owner.down.weight  # (D, D): s B A
        return self.base_layer.weight @ adapter_w  # (out, D)

    def delta_bias(self) -> torch.Tensor:
        adapter_b = self.scale * (self.dense_up() @ self.owner.down.bias + self.owner.up_bias)  # (D,)
        return self.base_layer.weight @ adapter_b  # (out,)


def apply_repadapter(model: nn.Module, cfg: RepAdapterConfig) -> nn.Module:
    """Put a :class:`RepAdapterLinear` on every Linear chosen by ``cfg.targets`` in every block.

    Args:
        model: timm VisionTransformer or SwinTransformer.
        cfg: the RepAdapter options.

    Returns:
        The same model, adapted in place.
    """
    for site_name in TARGETS[cfg.targets]:
        for site in block_sites(model, site_name, transformer_blocks(model)):
            owner: RepAdapterLinear | None = None
            for part in site.parts:  # one adapter per map, folded into each of its Linears
                wrapper = RepAdapterLinear(part.layer, cfg.hidden_dim, cfg.groups, cfg.scale, cfg.dropout, owner)
                owner = owner or wrapper
                replace_module(model, part.name, wrapper)
    return model


class RepAdapter(PeftMethod[RepAdapterConfig]):
    """RepAdapter (``repblock``): linear adapters before MHSA and MLP, merged into qkv and fc1."""

    name = "repadapter"
    family = "partial"
    subfamily = "reparameter"
    config_cls = RepAdapterConfig
    mergeable = True
    backbones = ("vit", "eva", "swin")
    refusals = {"convnext": "its adapters sit before the attention and MLP of transformer blocks; a ConvNeXt block "
                "has no attention and its MLP follows a depthwise conv (not defined by the paper)"}
    notes = {
        "qkv_separate": "one adapter before q/k/v_proj, folded into each",
        "swiglu": "one adapter before fc1_g and fc1_x, folded into both",
        "bias_free_linear": "merge refused: the adapter's offset needs a bias in every following Linear",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_repadapter(model, self.config)

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_linear_wrappers(model)
