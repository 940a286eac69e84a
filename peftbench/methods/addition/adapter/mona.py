"""Mona: multi-cognitive visual adapters (multi-scale depth-wise convolutions) after both sub-layers of every block.

Paper: Yin, Hu, Li, Zhang, Yang (CVPR 2025), "5%>100%: Breaking Performance Shackles of Full Fine-Tuning on
Visual Recognition Tasks". Reference implementation followed: Leiyi-Hu/mona @ 5deeac9
``Swin-Transformer-Classification/mmcls/models/backbones/swin_transformer_mona.py`` (``MonaOp``, ``Mona``,
``SwinTransformerBlock.forward``, ``init_weights``; identical in the detection and segmentation copies):

* two Monas per block, each on the residual stream right after a residual add:
  ``x = x + attn(norm1(x)); x = Mona1(x); x = x + mlp(norm2(x)); x = Mona2(x)``;
* ``Mona(x) = x + up(dropout(gelu(op(down(LN(x) * gamma + x * gammax)))))``: its own LayerNorm, a scaled
  norm with ``gamma`` (per channel, init 1e-6) and ``gammax`` (per channel, init 1), down D -> 64, up 64 -> D
  (64 for every stage width), dropout 0.1;
* ``op`` on the 64-channel map: ``z = x + (dw3(x) + dw5(x) + dw7(x)) / 3`` with depth-wise 3x3 / 5x5 / 7x7
  convolutions (zero padding, biases), then ``z + proj(z)`` with a 1x1 convolution;
* init (``init_weights``): down / up truncated normal std 0.02 with zero biases, LayerNorm (1, 0), the
  convolutions at PyTorch's default init. Not an identity at init (``up`` is not zero).

The paper evaluates Swin only (Swin-B / Swin-L on COCO, ADE20K, VOC, DOTA, Flowers, Pets); the authors have
not defined a ViT form (Leiyi-Hu/mona issues #10 and #19: "ViT not tried", the class token has no place on the
grid). On a ViT this module puts the patch tokens on their grid (``patch_embed.grid_size``, row-major) and
passes each prefix token (class, registers) through ``op`` as its own zero-padded 1x1 map, i.e. through the
kernels' centre taps, as Convpass's reference does with its conv bypass: peftbench's extension, with no
published ViT configuration, parameter count or VTAB-1k result behind it. Count on ViT-B/16 without head:
24 x (2*64*768 + 64^2 + 88*64 + 5*768) = 24 x 111,872 = 2,684,928 (analytic).

Structure (wrap, never patch): each block becomes a :class:`ViTMonaBlock` / :class:`SwinMonaBlock` whose
frozen ``base_layer`` is the original block; the wrapper runs the block's two halves from the anatomy layer
(``attention_residual``, ``mlp_residual``: exactly the block's own computation) with a Mona after each, so
drop-path and layer scale act as in the block. Swin's stream is already the ``(B, H, W, C)`` map.

Other backbones, through the same ViT extension: Eva blocks (EVA-02, DINOv3) take the ViT wrapper, the rotary
embeddings reaching the attention; an in-block LayerScale (DINOv2, DINOv3) stays on its branch, before the
residual add the Mona follows; SigLIP has no prefix token, so every token is on the grid. ConvNeXt is refused:
Mona follows the attention and the MLP residual adds of a transformer block, and a ConvNeXt block has one
convolutional residual branch (the authors define no form for it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule, backbone_family
from peftbench.methods.layers.blocks import attention_residual, mlp_residual, replace_module
from peftbench.methods.layers.bottleneck import (
    adapter_blocks,
    block_width,
    init_projections,
    reference_tensor,
)
from peftbench.methods.layers.checks import check_dropout, check_positive_int

KERNELS = (3, 5, 7)  # the depth-wise filters of MonaOp
GAMMA_INIT = 1e-6  # the scaled norm's initial weight on LN(x); x itself enters with weight 1


@dataclasses.dataclass
class MonaConfig(MethodConfig):
    """Mona options; defaults are the reference's (hidden width 64, dropout 0.1).

    Attributes:
        dim: the width of the convolved map (the reference's fixed 64).
        dropout: dropout after the GELU (training only).
    """

    dim: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_positive_int("mona", "dim", self.dim)
        check_dropout("mona", self.dropout)


class MultiScaleConv(nn.Module):
    """``z = x + mean(dw3, dw5, dw7)(x)``, then ``z + proj(z)``, on ``(B, c, H, W)`` maps (the reference's MonaOp)."""

    def __init__(self, channels: int, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels, **factory) for k in KERNELS
        )
        self.projector = nn.Conv2d(channels, channels, kernel_size=1, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x + sum(conv(x) for conv in self.convs) / len(self.convs)  # (B, c, H, W)
        return z + self.projector(z)

    def forward_single(self, t: torch.Tensor) -> torch.Tensor:
        """The same op on tokens that are each their own 1x1 map: only the kernels' centre taps see them.

        Args:
            t: ``(B, P, c)`` tokens.

        Returns:
            ``(B, P, c)``.
        """
        taps = sum(conv.weight[:, 0, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] for conv in self.convs)
        biases = sum(conv.bias for conv in self.convs)
        z = t + (t * taps + biases) / len(self.convs)  # (B, P, c)
        return z + F.linear(z, self.projector.weight[:, :, 0, 0], self.projector.bias)


class MonaAdapter(nn.Module):
    """``x + up(dropout(gelu(op(down(LN(x) * gamma + x * gammax)))))`` on a channel-last map and prefix tokens.

    Args:
        width: D, the stream's width.
        dim: c, the width of the convolved map.
        dropout: dropout after the GELU.
        like: a backbone tensor whose dtype and device the new layers take.
    """

    def __init__(self, width: int, dim: int, dropout: float, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.norm = nn.LayerNorm(width, **factory)
        self.gamma = nn.Parameter(torch.full((width,), GAMMA_INIT, **factory))
        self.gammax = nn.Parameter(torch.ones(width, **factory))
        self.down = nn.Linear(width, dim, **factory)
        self.op = MultiScaleConv(dim, like)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(dim, width, **factory)
        init_projections(self.down, self.up, "normal", 0.02)  # the backbone's trunc_normal(0.02), zero biases

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.norm(x) * self.gamma + x * self.gammax)  # (..., c)

    def _residual(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.dropout(F.gelu(h)))  # (..., D)

    def forward(
        self, grid: torch.Tensor, prefix: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Adapt the tokens on the grid and, apart from them, the prefix tokens.

        Args:
            grid: ``(B, H, W, D)``, the patch tokens on their grid (Swin: the whole stream).
            prefix: ``(B, P, D)`` class / register tokens, or None.

        Returns:
            ``(grid, prefix)`` adapted, same shapes (prefix None when none was given).
        """
        h = self.op(self._project(grid).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, H, W, c)
        out = self._residual(grid, h)
        if prefix is None:
            return out, None
        return out, self._residual(prefix, self.op.forward_single(self._project(prefix)))


class ViTMonaBlock(PeftModule):
    """A timm ViT ``Block`` or ``EvaBlock`` with a Mona after the attention residual and one after the MLP residual."""

    def __init__(self, base_layer: nn.Module, mona1: MonaAdapter, mona2: MonaAdapter, grid: tuple[int, int], num_prefix: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.mona1 = mona1
        self.mona2 = mona2
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix = int(num_prefix)

    def _mona(self, mona: MonaAdapter, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        (H, W), P = self.grid, self.num_prefix
        if N != P + H * W:
            raise MethodNotSupportedError(
                f"mona expects {P} prefix tokens + a {H}x{W} patch grid = {P + H * W} tokens, got {N}; "
                "feed images of the size the backbone was built for (backbone img_size)"
            )
        grid, prefix = mona(x[:, P:].reshape(B, H, W, D), x[:, :P] if P else None)
        parts = ([prefix] if prefix is not None else []) + [grid.reshape(B, H * W, D)]
        return torch.cat(parts, dim=1)  # (B, N, D)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        x = self._mona(self.mona1, attention_residual(self.base_layer, x, **kwargs))  # Eva: rotary embeddings
        return self._mona(self.mona2, mlp_residual(self.base_layer, x))


class SwinMonaBlock(PeftModule):
    """A timm ``SwinTransformerBlock`` (stream ``(B, H, W, C)``) with the reference's two Monas."""

    def __init__(self, base_layer: nn.Module, mona1: MonaAdapter, mona2: MonaAdapter) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.mona1 = mona1
        self.mona2 = mona2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mona1(attention_residual(self.base_layer, x))[0]  # (B, H, W, C): shifted-window attention
        return self.mona2(mlp_residual(self.base_layer, x))[0]


def apply_mona(model: nn.Module, cfg: MonaConfig, method: str = "mona") -> nn.Module:
    """Put two Monas into every transformer block of a timm ViT / Eva (fixed image size) or Swin.

    Args:
        model: a timm VisionTransformer, Eva or SwinTransformer.
        cfg: the Mona options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    vit = backbone_family(model) in ("vit", "eva")
    if vit and getattr(model, "dynamic_img_size", False):
        raise MethodNotSupportedError(
            f"method {method!r} lays the patch tokens on the grid fixed at build time; this backbone has "
            "dynamic_img_size=True. Build it with a fixed img_size."
        )
    for name, block in adapter_blocks(model, method):
        width, like = block_width(block), reference_tensor(block)
        mona1, mona2 = (MonaAdapter(width, cfg.dim, cfg.dropout, like) for _ in range(2))
        if vit:
            rows, cols = model.patch_embed.grid_size
            wrapper: PeftModule = ViTMonaBlock(block, mona1, mona2, (rows, cols), int(model.num_prefix_tokens))
        else:
            wrapper = SwinMonaBlock(block, mona1, mona2)
        replace_module(model, name, wrapper)
    return model


class Mona(PeftMethod[MonaConfig]):
    """Mona: two multi-scale-convolution adapters (hidden 64) per block, after each residual add."""

    name = "mona"
    family = "addition"
    subfamily = "adapter"
    config_cls = MonaConfig
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "Mona follows the attention and the MLP residual adds of a transformer block; a ConvNeXt block has "
        "one convolutional residual branch, for which the authors define no Mona",
    }
    notes = {
        "registers": "register tokens go through the convolutions' centre taps, as the class token",
        "layerscale": "each Mona follows the residual add, outside the layer scale",
        "map_head": "no prefix token: every token is on the grid",
        "rope": "the rotary embeddings reach the attention; the Monas act on the stream after it",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_mona(model, self.config, self.name)
