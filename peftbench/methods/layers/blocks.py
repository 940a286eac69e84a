"""Small structural helpers shared by methods: finding blocks and swapping module instances."""

from __future__ import annotations

from torch import nn

from peftbench.errors import MethodNotSupportedError


def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The transformer blocks of a timm ViT (``blocks.i``) or Swin (``layers.s.blocks.i``), in order.

    Returns:
        ``(qualified_name, block)`` pairs.
    """
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if isinstance(model, VisionTransformer):
        return [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
    if isinstance(model, SwinTransformer):
        return [
            (f"layers.{s}.blocks.{i}", b)
            for s, stage in enumerate(model.layers)
            for i, b in enumerate(stage.blocks)
        ]
    raise MethodNotSupportedError(
        f"cannot find transformer blocks in {type(model).__name__}; supported: timm VisionTransformer, SwinTransformer"
    )


def replace_module(root: nn.Module, qualified_name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``qualified_name`` inside ``root``; return the module that was there."""
    parent_name, _, child = qualified_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old
