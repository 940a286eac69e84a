"""Shared pieces of the reparameter methods (LoRA, FacT, KAdaptation).

Every method here wraps ``nn.Linear`` layers of the transformer blocks in a :class:`MergeableLinear`:
the wrapper keeps the frozen original as ``base_layer`` and can express its update as a dense
``(out, in)`` weight delta (plus an optional bias delta), so :func:`merge_linear_wrappers` folds every
wrapper back into a plain ``nn.Linear`` and the merged backbone has the same class, parameter count and
outputs as the adapted one.

Sites are found structurally: a path relative to each transformer block (``attn.qkv``, ``attn.proj``,
``mlp.fc1``, ``mlp.fc2``) resolved on the blocks listed by
:func:`peftbench.methods.layers.blocks.transformer_blocks`, never by matching parameter names.
"""

from __future__ import annotations

import torch
from torch import nn

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.base import PeftModule
from peftbench.methods.layers.blocks import replace_module, transformer_blocks

# timm's fused qkv Linear writes q, k, v as three consecutive slots of width out_features // 3
QKV_SLOTS = {"q": 0, "k": 1, "v": 2}


class MergeableLinear(PeftModule):
    """A wrapper around a frozen ``nn.Linear`` whose update is a weight (and bias) delta.

    Subclasses implement :meth:`forward` (usually cheaper than materialising the delta) and
    :meth:`delta_weight`; :meth:`delta_bias` defaults to no bias change.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update of ``base_layer.weight`` in eval mode, shape ``(out, in)``."""
        raise NotImplementedError

    def delta_bias(self) -> torch.Tensor | None:
        """The update of ``base_layer.bias`` (shape ``(out,)``), or None when the bias is unchanged."""
        return None

    def merged_layer(self) -> nn.Linear:
        """The base layer with the update folded in (in place; the wrapper must be dropped after)."""
        base = self.base_layer
        with torch.no_grad():
            # Both deltas may read the original weight (e.g. RepAdapter's offset): compute them first.
            dw, db = self.delta_weight(), self.delta_bias()
            if db is not None and base.bias is None:
                raise MethodNotSupportedError(
                    f"cannot merge a bias update into {type(base).__name__} without a bias: the merged "
                    "backbone would gain parameters. Disable the method's bias option to merge."
                )
            base.weight.add_(dw.to(base.weight.dtype))
            if db is not None:
                base.bias.add_(db.to(base.bias.dtype))
        return base


def block_linears(model: nn.Module, rel_path: str) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` at ``rel_path`` inside every transformer block of a timm ViT/Swin.

    Args:
        model: timm VisionTransformer or SwinTransformer.
        rel_path: path relative to a block, e.g. ``"attn.qkv"``.

    Returns:
        ``(qualified_name, linear)`` pairs in block order.
    """
    sites = []
    for block_name, block in transformer_blocks(model):
        try:
            layer = block.get_submodule(rel_path)
        except AttributeError:
            layer = None
        if not isinstance(layer, nn.Linear):
            raise MethodNotSupportedError(
                f"{type(model).__name__} block {block_name!r} has no nn.Linear at {rel_path!r} "
                f"(found {type(layer).__name__}); the method needs timm's standard attn.qkv / attn.proj / "
                "mlp.fc1 / mlp.fc2 layers"
            )
        sites.append((f"{block_name}.{rel_path}", layer))
    return sites


def scatter_slots(delta: torch.Tensor, slots: tuple[int, ...], num_slots: int) -> torch.Tensor:
    """Place per-slot outputs into a fused output with zeros in the other slots.

    Args:
        delta: ``(..., len(slots), W)`` updates of the chosen slots.
        slots: which of the ``num_slots`` slots (e.g. q=0, v=2 of timm's fused qkv) they belong to.
        num_slots: slots in the fused output (3 for qkv).

    Returns:
        ``(..., num_slots * W)``.
    """
    if len(slots) == num_slots:  # every slot adapted, in order
        return delta.flatten(-2)
    full = delta.new_zeros(*delta.shape[:-2], num_slots, delta.shape[-1])  # (..., S, W)
    index = torch.tensor(slots, device=delta.device)
    return full.index_copy(-2, index, delta).flatten(-2)


def merge_linear_wrappers(model: nn.Module) -> nn.Module:
    """Replace every :class:`MergeableLinear` in ``model`` by its base layer with the update folded in.

    Args:
        model: a backbone with reparameter wrappers.

    Returns:
        The same model object, now without wrappers.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, MergeableLinear)]
    for name in names:
        wrapper = model.get_submodule(name)
        replace_module(model, name, wrapper.merged_layer())
    return model
