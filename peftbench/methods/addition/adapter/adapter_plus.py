"""Adapter+: a post-block bottleneck adapter with a learned channel-wise scaling.

Paper: Steitz & Roth (CVPR 2024), "Adapters Strike Back". Reference implementation followed: visinf/adapter_plus
@ 191c4ab ``adapter_plus/vit_adapter.py`` (``Adapter``, ``AdapterBlock.forward_post``) with the configuration
``conf/adapter/adapter_plus.yaml`` over ``conf/adapter/base_adapter.yaml`` (the paper's final VTAB choice):

* placement ``post``: after the block's MLP residual add, ``y = block(x)``, output ``y + s * A(y)``;
* ``A`` = ``up(dropout(gelu(down(y))))``, down D -> r and up r -> D with biases, no LayerNorm
  (``norm_layer: false``), dropout 0, r = 8 (``dim: 8``);
* ``s``: a learned channel-wise scaling, one value per channel initialised to 1 (``scaling: channel``);
* init ``houlsby``: both projections N(0, 0.01^2) truncated at 2 sigma, both biases zero (a near-identity
  adapter, not an exact one);
* stochastic depth on the adapter branch, ``drop_path: 0.1`` (besides the ViT's own drop-path 0.1 of the recipe).

The per-task r of the paper's "Adapter+ opt." (r chosen per task on the validation split,
``conf/experiment/{vtab,fgvc}/adapter_plus_dim1-32.yaml``) are in the recipe
``configs/experiment/adapter_plus/adapter_plus_opt.yaml``. Recipe of the reference (``conf/config.yaml``,
``conf/train/``): AdamW lr 1e-3, wd 1e-4 (none on biases and scalings), batch 64, 100 epochs, 10 linear warm-up
epochs from lr/100, cosine to lr/1000, ViT drop-path 0.1, test accuracy after the last epoch, mean of seeds 18,
45, 25.

Count on ViT-B/16 without head, r = 8: 12 x (768*8 + 8 + 8*768 + 768 + 768) = 165,984. The paper's Fig. 1
(``assets/params_accuracy.png``) puts Adapter+ r = 8 at 0.20M: it counts the head averaged over the 19 VTAB-1k
tasks (its linear-probing line sits at 0.04M; ``get_results.ipynb`` averages the runs' trainable parameters),
165,984 + 940 x 769 / 19 = 204,029. The per-task r of "Adapter+ opt." give 0.27M the same way.

Structure (wrap, never patch): each block becomes a :class:`PostAdapterBlock` whose frozen ``base_layer`` is the
original block. The paper and the reference code cover ViTs only; the adapter reads the block's output token by
token, so the same placement exists on every backbone: Eva blocks (the rotary embeddings pass to the block),
Swin (the ``(B, H, W, C)`` output) and ConvNeXt (each block's channels-first ``(B, C, H, W)`` output, per pixel).
The adapter is outside any LayerScale (it follows the residual add) and adapts every token, prefix tokens
(class, registers) included, as the reference adapts the class token.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from timm.layers import DropPath
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import backbone_family, replace_module
from peftbench.methods.layers.bottleneck import Bottleneck, adapter_blocks, block_width, reference_tensor
from peftbench.methods.layers.checks import check_dropout, check_positive_int

HOULSBY_STD = 0.01  # the paper's value (Houlsby et al.'s code uses 0.001)


@dataclasses.dataclass
class AdapterPlusConfig(MethodConfig):
    """Adapter+ options; defaults are the paper's VTAB-1k configuration without per-task tuning (r = 8).

    Attributes:
        dim: r, the bottleneck width.
        dropout: dropout after the GELU (training only).
        drop_path: stochastic depth on the adapter branch (training only).
    """

    dim: int = 8
    dropout: float = 0.0
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        check_positive_int("adapter_plus", "dim", self.dim)
        check_dropout("adapter_plus", self.dropout)
        if isinstance(self.drop_path, bool) or not isinstance(self.drop_path, (int, float)) or not (
            0.0 <= self.drop_path < 1.0
        ):
            raise ConfigError(
                f"adapter_plus drop_path must be in [0, 1), got {self.drop_path!r}; the paper uses "
                "method.drop_path=0.1"
            )


class PostAdapterBlock(PeftModule):
    """``y + drop_path(A(y)) * s`` with ``y = base_layer(x, ...)``: the adapter after the whole block.

    Args:
        base_layer: the frozen transformer block.
        adapter: ``A``, token-wise D -> r -> D.
        width: D, the length of the channel-wise scaling ``s`` (initialised to ones).
        drop_path: stochastic-depth rate of the adapter branch.
        like: a backbone tensor whose dtype and device ``s`` takes.
    """

    def __init__(
        self, base_layer: nn.Module, adapter: nn.Module, width: int, drop_path: float, like: torch.Tensor,
        channels_first: bool = False,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter
        self.scaling = nn.Parameter(torch.ones(width, dtype=like.dtype, device=like.device))  # (D,)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.channels_first = channels_first

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)  # ViT / Eva (B, N, D); Swin (B, H, W, D); ConvNeXt (B, D, H, W)
        if self.channels_first:
            h = y.permute(0, 2, 3, 1)  # (B, H, W, D)
            return y + (self.drop_path(self.adapter(h)) * self.scaling).permute(0, 3, 1, 2)
        return y + self.drop_path(self.adapter(y)) * self.scaling


def apply_adapter_plus(model: nn.Module, cfg: AdapterPlusConfig, method: str = "adapter_plus") -> nn.Module:
    """Put an Adapter+ after every residual block.

    Args:
        model: a timm ViT, Eva, Swin or ConvNeXt.
        cfg: the Adapter+ options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    channels_first = backbone_family(model) == "convnext"
    for name, block in adapter_blocks(model, method, needs=()):
        width, like = block_width(block), reference_tensor(block)
        adapter = Bottleneck(width, cfg.dim, "gelu", cfg.dropout, "trunc_normal", HOULSBY_STD, like)
        replace_module(model, name, PostAdapterBlock(block, adapter, width, cfg.drop_path, like, channels_first))
    return model


class AdapterPlus(PeftMethod[AdapterPlusConfig]):
    """Adapter+: a post-block adapter (r = 8) with channel-wise scaling and drop-path 0.1 in every block."""

    name = "adapter_plus"
    family = "addition"
    subfamily = "adapter"
    config_cls = AdapterPlusConfig
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "registers": "register tokens are adapted like every token",
        "layerscale": "the adapter follows the residual add, outside the layer scale",
        "rope": "the rotary embeddings pass to the wrapped block",
        "convnext": "after each block, on its channels-first output per pixel",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_adapter_plus(model, self.config, self.name)
