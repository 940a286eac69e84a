"""Building blocks shared by the adapter methods: the bottleneck, its inits, and the two wrappers.

* :class:`Bottleneck` is ``up(dropout(act(down(norm(x)))))`` with ``down: D -> r`` and ``up: r -> D``
  (both with bias), an optional LayerNorm in front (AdaptFormer's ``adapter_layernorm_option="in"``).
* :class:`SequentialAdapter` wraps a module ``f`` as ``h + s * adapter(h)`` with ``h = f(x)`` (Houlsby /
  Pfeiffer placement: the adapter reads the sub-layer's output, before the residual add).
* :class:`ParallelAdapter` wraps ``f`` as ``f(x) + s * adapter(x)`` (AdaptFormer, Convpass, AIM's MLP
  adapter: the adapter reads the sub-layer's input).

Both wrappers keep the original sub-layer as ``base_layer`` (frozen by the harness) and forward every
extra argument to it (Eva's rotary embeddings reach its attention that way), so they replace timm's
``Block.attn`` / ``Block.mlp``, Swin's and Eva's in place without touching the blocks' code.

LayerScale (DINOv2, DeiT-III: ``ls1`` / ``ls2``; DINOv3: ``gamma_1`` / ``gamma_2``) multiplies the wrapped
sub-layer's output, so an adapter that wraps ``attn`` / ``mlp`` sits inside the layer scale: ``ls2(h + A(h))``
(sequential) or ``ls2(mlp(x) + s A(x))`` (parallel). That is where PETL_Vision (Mai et al. 2024,
OSU-MLB/PETL_Vision ``model/block.py``) puts its parallel tuning modules on DINOv2; every method here
that wraps a sub-layer follows the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.base import PeftModule
from peftbench.methods.layers.blocks import backbone_blocks
from peftbench.methods.layers.blocks import block_width as block_width  # re-exported for methods


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation of CLIP, used by NOAH's and Convpass's adapters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "quick_gelu": QuickGELU, "relu": nn.ReLU}


def _zero_biases(*layers: nn.Module) -> None:
    for layer in layers:
        if getattr(layer, "bias", None) is not None:
            nn.init.zeros_(layer.bias)


def _init_normal(down: nn.Linear, up: nn.Linear, std: float) -> None:
    # timm's trunc_normal_(w, std) keeps its default cut at +-2 (absolute): a plain normal for std << 1.
    for layer in (down, up):
        nn.init.trunc_normal_(layer.weight, std=std, a=-2.0, b=2.0)


def _init_trunc_normal(down: nn.Linear, up: nn.Linear, std: float) -> None:
    # Houlsby et al.: zero-mean Gaussian truncated at two standard deviations (near-identity adapter).
    for layer in (down, up):
        nn.init.trunc_normal_(layer.weight, std=std, a=-2.0 * std, b=2.0 * std)


def _init_kaiming_zero(down: nn.Linear, up: nn.Linear, std: float) -> None:
    # AdaptFormer's init_option="lora": down like nn.Linear's default, up zero (identity at init).
    nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
    nn.init.zeros_(up.weight)


def _init_normal_zero(down: nn.Linear, up: nn.Linear, std: float) -> None:
    # AIM: down keeps the model-wide trunc_normal(0.02) init, up (D_fc2) is zeroed.
    nn.init.trunc_normal_(down.weight, std=std, a=-2.0, b=2.0)
    nn.init.zeros_(up.weight)


def _init_xavier_zero(down: nn.Linear, up: nn.Linear, std: float) -> None:
    # Convpass: xavier-uniform down, zero up.
    nn.init.xavier_uniform_(down.weight)
    nn.init.zeros_(up.weight)


# init name -> initialiser of (down, up, std); every init zeroes both biases.
INITS: dict[str, Callable[[nn.Linear, nn.Linear, float], None]] = {
    "normal": _init_normal,
    "trunc_normal": _init_trunc_normal,
    "kaiming_zero": _init_kaiming_zero,
    "normal_zero": _init_normal_zero,
    "xavier_zero": _init_xavier_zero,
}


def init_projections(down: nn.Linear, up: nn.Linear, init: str, std: float) -> None:
    """Initialise a down/up pair in place with one of :data:`INITS`; biases are set to zero."""
    with torch.no_grad():
        INITS[init](down, up, std)
        _zero_biases(down, up)


class Bottleneck(nn.Module):
    """``up(dropout(act(down(norm(x)))))``: D -> r -> D, token-wise.

    Args:
        dim: D, the width of the stream the adapter reads and writes.
        hidden: r, the bottleneck width.
        activation: a key of :data:`ACTIVATIONS`.
        dropout: dropout after the activation (training only).
        init: a key of :data:`INITS`.
        init_std: standard deviation for the normal inits.
        layernorm: put a (trainable) LayerNorm on the input first.
        like: a backbone tensor whose dtype and device the new layers take.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        activation: str,
        dropout: float,
        init: str,
        init_std: float,
        like: torch.Tensor,
        layernorm: bool = False,
    ) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.norm = nn.LayerNorm(dim, **factory) if layernorm else nn.Identity()
        self.down = nn.Linear(dim, hidden, **factory)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, dim, **factory)
        init_projections(self.down, self.up, init, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.down(self.norm(x)))  # (..., r)
        return self.up(self.dropout(h))  # (..., D)


class SequentialAdapter(PeftModule):
    """``h + scale * adapter(h)`` with ``h = base_layer(x, ...)``: the adapter reads the sub-layer's output."""

    def __init__(self, base_layer: nn.Module, adapter: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter
        self.scale = float(scale)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        h = self.base_layer(x, *args, **kwargs)  # (..., D)
        return h + self.scale * self.adapter(h)


class ParallelAdapter(PeftModule):
    """``base_layer(x, ...) + scale * adapter(x)``: the adapter reads the sub-layer's input."""

    def __init__(self, base_layer: nn.Module, adapter: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter
        self.scale = float(scale)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.base_layer(x, *args, **kwargs) + self.scale * self.adapter(x)


def _block_classes() -> dict[type, tuple[str, ...]]:
    """Block class -> the sub-layers an adapter may wrap there (pre-norm transformer blocks; ConvNeXt's MLP)."""
    from timm.models.convnext import ConvNeXtBlock
    from timm.models.eva import EvaBlock
    from timm.models.swin_transformer import SwinTransformerBlock
    from timm.models.vision_transformer import Block

    transformer = ("attn", "mlp", "norm2", "tokens")
    return {Block: transformer, SwinTransformerBlock: transformer, EvaBlock: transformer, ConvNeXtBlock: ("mlp",)}


# what a method may need of a block, in words
NEEDS = {
    "attn": "self-attention sub-layer",
    "mlp": "MLP",
    "norm2": "pre-norm FFN (the un-normalised stream beside it)",
    "tokens": "token sequence (a block-level tuner reads and writes (B, N, D) tokens)",
}


def adapter_blocks(
    model: nn.Module, method: str, needs: tuple[str, ...] = ("attn", "mlp")
) -> list[tuple[str, nn.Module]]:
    """The blocks the adapters go into, checked to have the sub-layers ``needs`` in the pre-norm order.

    Pre-norm transformer blocks (timm ViT ``Block``, ``SwinTransformerBlock``, ``EvaBlock``) offer ``attn``,
    ``mlp``, ``norm2`` and ``tokens`` (see :data:`NEEDS`); a ``ConvNeXtBlock`` offers only its ``mlp``
    (channels-last, after the depthwise conv and norm). Other classes (post-norm, parallel blocks, ...) order their sub-layers differently, so the
    placement would not be the paper's: they raise, as do blocks lacking a needed sub-layer.

    Args:
        model: a timm ViT, Eva, Swin or ConvNeXt.
        method: the method's name, for the message.
        needs: the sub-layers the method wraps or reads.

    Returns:
        ``(qualified_name, block)`` pairs, in depth order.
    """
    classes = _block_classes()
    blocks = backbone_blocks(model)
    for name, block in blocks:
        offered = classes.get(type(block))
        if offered is None:
            raise MethodNotSupportedError(
                f"method {method!r} adds adapters to timm's pre-norm blocks (vision_transformer.Block, "
                f"swin_transformer.SwinTransformerBlock, eva.EvaBlock); {name} is a {type(block).__name__}. "
                "Use a standard ViT, Eva or Swin backbone."
            )
        missing = [NEEDS[sub] for sub in needs if sub not in offered]
        if missing:
            raise MethodNotSupportedError(
                f"method {method!r} needs each block's {' and '.join(missing)}; {name} is a {type(block).__name__}, "
                "whose only sub-layer an adapter can wrap is its channels-last MLP (a ConvNeXt block has no "
                "attention, and its MLP reads the depthwise conv's normalised output, not the residual stream)"
            )
    return blocks


def reference_tensor(module: nn.Module) -> torch.Tensor:
    """A parameter of ``module`` whose dtype and device new layers should take."""
    return next(module.parameters())
