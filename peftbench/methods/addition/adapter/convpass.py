"""Convpass: convolutional bypasses in parallel with every block's attention and MLP (ViT only).

Paper: Jie & Deng (2022), "Convolutional Bypasses Are Better Vision Transformer Adapters" (technical
report). Reference implementation followed: JieShibo/PETL-ViT ``convpass/vtab/convpass.py`` (``Convpass``,
``forward_block``, ``set_Convpass``) and ``convpass/vtab/train.py``:

* a block computes ``x + MSA(LN1(x)) + s * C(LN1(x))`` then ``x + MLP(LN2(x)) + s * C'(LN2(x))``;
* ``C`` = Linear D -> h (xavier-uniform, zero bias), QuickGELU, 3x3 Conv2d h -> h (padding 1, zero bias)
  on the patch tokens laid out on their grid, QuickGELU, dropout 0.1, Linear h -> D (weight and bias
  zero, so the model is the backbone at init), h = 8;
* the class token goes through the same conv as a 1x1 map with zero padding, i.e. only the kernel's
  centre tap (done here for every prefix token: class and register tokens);
* conv init per task (``xavier_init`` in ``configs/convpass/<task>.yaml``): ``identity`` (zero kernel
  plus the identity at the centre tap) or ``xavier`` (xavier-uniform); s per task from
  {0.01, 0.1, 1, 10, 100} in the same files: the recipe ``experiment=convpass/convpass`` holds both per task.

Defaults: s = 1 and ``conv_init: identity``, the defaults of ``set_Convpass`` (s = 1 is also the median of
the per-task values). Recipe (paper Table 8, ``train.py``): AdamW lr 1e-3, wd 1e-4,
batch 64, 100 epochs, cosine with 10 warm-up epochs, drop-path 0.1. Count on ViT-B/16 without head,
2L((2h + 1)D + 9h^2 + 2h) = 24 x 13,648 = 327,552: the 0.33M of the paper's Table 1 (the ``convpass``
form; ``convpass_attn``, the attention bypass only, is not registered).

Structure (wrap, never patch): ``block.attn`` and ``block.mlp`` become
:class:`~peftbench.methods.layers.bottleneck.ParallelAdapter` s (they already receive LN1(x) /
LN2(x)), whose branch is a :class:`ConvBypass`. The grid (H, W) and the number of prefix tokens are read
from the model (``patch_embed.grid_size``, ``num_prefix_tokens``), so any fixed image size works (4x4
on the test models, 14x14 on ViT-B/16 at 224), with or without a class token: DINOv2's and DINOv3's
registers take the centre tap like the class token, SigLIP has no prefix token. Eva blocks (EVA-02, DINOv3)
take the same two wrappers; the rotary embeddings reach the wrapped attention unchanged. Swin raises: its
attention sees shifted windows, and the bypass needs the whole feature map. Deliberate deviation: the reference draws separate drop-path masks
for the sub-layer and its bypass; here both share ``drop_path1`` / ``drop_path2`` (identical with the
harness's default drop-path 0).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import block_width, replace_module
from peftbench.methods.layers.bottleneck import (
    ParallelAdapter,
    QuickGELU,
    adapter_blocks,
    init_projections,
    reference_tensor,
)
from peftbench.methods.layers.checks import (
    check_choice,
    check_dropout,
    check_positive_int,
    is_positive_number,
)

CONV_INITS = ("identity", "xavier")


@dataclasses.dataclass
class ConvpassConfig(MethodConfig):
    """Convpass options; defaults are the reference's ``set_Convpass`` defaults (h = 8, s = 1, identity conv).

    Attributes:
        dim: h, the bypass width (input and output channels of the 3x3 conv).
        scale: s (per task: ``experiment=convpass/convpass``).
        conv_init: ``identity`` / ``xavier`` (per task likewise).
        dropout: dropout before the up projection (training only).
    """

    dim: int = 8
    scale: float = 1.0
    conv_init: str = "identity"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_positive_int("convpass", "dim", self.dim)
        if not is_positive_number(self.scale):
            raise ConfigError(
                f"convpass scale must be a number > 0, got {self.scale!r}; e.g. method.scale=10 (per-task values: "
                "experiment=convpass/convpass)"
            )
        check_choice("convpass", "conv_init", self.conv_init, CONV_INITS)
        check_dropout("convpass", self.dropout)


class ConvBypass(nn.Module):
    """Down -> QuickGELU -> 3x3 conv on the patch grid -> QuickGELU -> dropout -> up, on ``(B, N, D)`` tokens.

    Args:
        width: D, the token width.
        dim: h, the bypass width.
        grid: (H, W), the patch grid; the tokens are ``num_prefix`` prefix tokens then H * W patches.
        num_prefix: class (and register) tokens in front of the patches.
        conv_init: ``identity`` or ``xavier``.
        dropout: dropout before the up projection.
        like: a backbone tensor whose dtype and device the new layers take.
    """

    def __init__(
        self,
        width: int,
        dim: int,
        grid: tuple[int, int],
        num_prefix: int,
        conv_init: str,
        dropout: float,
        like: torch.Tensor,
    ) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix = int(num_prefix)
        self.down = nn.Linear(width, dim, **factory)
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, **factory)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(dim, width, **factory)
        init_projections(self.down, self.up, "xavier_zero", 0.0)
        with torch.no_grad():
            if conv_init == "identity":
                self.conv.weight.zero_()
                self.conv.weight[:, :, 1, 1] = torch.eye(dim, **factory)
            else:
                nn.init.xavier_uniform_(self.conv.weight)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        (H, W), P = self.grid, self.num_prefix
        if N != P + H * W:
            raise MethodNotSupportedError(
                f"convpass expects {P} prefix tokens + a {H}x{W} patch grid = {P + H * W} tokens, got {N}; "
                "feed images of the size the backbone was built for (backbone img_size)"
            )
        h = self.act(self.down(x))  # (B, N, h)
        patches = h[:, P:].transpose(1, 2).reshape(B, -1, H, W)  # (B, h, H, W), row-major like the tokens
        patches = self.conv(patches).flatten(2).transpose(1, 2)  # (B, H*W, h)
        # A 3x3 conv with zero padding on a 1x1 map sees only its centre tap.
        prefix = F.linear(h[:, :P], self.conv.weight[:, :, 1, 1], self.conv.bias)  # (B, P, h)
        h = self.act(torch.cat((prefix, patches), dim=1))  # (B, N, h)
        return self.up(self.dropout(h))  # (B, N, D)


def apply_convpass(model: nn.Module, cfg: ConvpassConfig, method: str = "convpass") -> nn.Module:
    """Put a convolutional bypass in parallel with ``attn`` and ``mlp`` of every ViT block.

    Args:
        model: a timm VisionTransformer with a fixed image size.
        cfg: the Convpass options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    if getattr(model, "dynamic_img_size", False):
        raise MethodNotSupportedError(
            f"method {method!r} lays the patch tokens on the grid fixed at build time; this backbone has "
            "dynamic_img_size=True. Build it with a fixed img_size."
        )
    scale, conv_init = float(cfg.scale), cfg.conv_init
    grid = tuple(model.patch_embed.grid_size)
    num_prefix = int(model.num_prefix_tokens)
    for name, block in adapter_blocks(model, method):
        width, like = block_width(block), reference_tensor(block)
        for sub in ("attn", "mlp"):
            bypass = ConvBypass(width, cfg.dim, grid, num_prefix, conv_init, cfg.dropout, like)  # type: ignore[arg-type]
            replace_module(model, f"{name}.{sub}", ParallelAdapter(getattr(block, sub), bypass, scale))
    return model


class Convpass(PeftMethod[ConvpassConfig]):
    """Convpass: a 3x3-conv bypass (h = 8) beside every block's attention and MLP, scaled by s."""

    name = "convpass"
    family = "addition"
    subfamily = "adapter"
    config_cls = ConvpassConfig
    backbones = ("vit", "eva")
    notes = {
        "registers": "register tokens take the conv's centre tap, as the class token",
        "map_head": "no prefix token: every token is a patch on the grid",
        "layerscale": "bypasses inside the layer scale (PETL_Vision's placement on DINOv2)",
        "rope": "the rotary embeddings reach the wrapped attention unchanged",
    }
    refusals = {
        "swin": "its attention sees shifted windows, and the bypass needs the whole patch grid",
        "convnext": "Convpass is a convolutional bypass for the token blocks of a ViT; a ConvNeXt block is "
        "already a convolution on the grid",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_convpass(model, self.config, self.name)
