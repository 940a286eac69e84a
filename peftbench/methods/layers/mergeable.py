"""Shared pieces of the reparameter methods (LoRA, FacT, KAdaptation).

Every method here wraps ``nn.Linear`` layers of the transformer blocks in a :class:`MergeableLinear`:
the wrapper keeps the frozen original as ``base_layer`` and can express its update as a dense
``(out, in)`` weight delta (plus an optional bias delta), so :func:`merge_linear_wrappers` folds every
wrapper back into a plain ``nn.Linear`` and the merged backbone has the same class, parameter count and
outputs as the adapted one.

Sites are found structurally (:func:`peftbench.methods.layers.blocks.block_sites`: the logical ``qkv``,
``proj``, ``mlp_in``, ``mlp_out`` maps of every block), never by matching parameter names. Where a logical
map is computed by several Linears (EVA-02's ``q_proj`` | ``k_proj`` | ``v_proj``, SwiGLU's ``fc1_g`` |
``fc1_x``) and the method's update of the map has a factor on the input side that the paper shares across
the whole output (LoRA's A on the fused qkv, RepAdapter's adapter before qkv), the first part's wrapper owns
that factor and the other parts' wrappers read it (:attr:`MergeableLinear.owner`): same function class and
count as on the fused layer; the factor is applied once per part, and dropout masks are drawn per part.
"""

from __future__ import annotations

import torch
from torch import nn

from peftbench.errors import MethodNotSupportedError
from peftbench.methods.base import PeftModule
from peftbench.methods.layers.blocks import block_linears as block_linears  # re-exported for methods
from peftbench.methods.layers.blocks import replace_module

# timm's fused qkv Linear writes q, k, v as three consecutive slots of width out_features // 3
QKV_SLOTS = {"q": 0, "k": 1, "v": 2}


class MergeableLinear(PeftModule):
    """A wrapper around a frozen ``nn.Linear`` whose update is a weight (and bias) delta.

    Subclasses implement :meth:`forward` (usually cheaper than materialising the delta) and
    :meth:`delta_weight`; :meth:`delta_bias` defaults to no bias change.
    """

    def __init__(self, base_layer: nn.Linear, owner: MergeableLinear | None = None) -> None:
        super().__init__()
        self.base_layer = base_layer
        # a reference, not a child: the shared factors are registered once, on the owner
        self._owner = (owner,) if owner is not None else ()

    @property
    def owner(self) -> MergeableLinear:
        """The wrapper holding the factors shared by the parts of one logical site (``self`` when unshared)."""
        return self._owner[0] if self._owner else self

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

    def merge_problem(self) -> str | None:
        """Why the update cannot be folded into ``base_layer`` without adding parameters, or None."""
        with torch.no_grad():
            if self.base_layer.bias is None and self.delta_bias() is not None:
                return (
                    f"cannot merge a bias update into {type(self.base_layer).__name__}({self.in_features}, "
                    f"{self.out_features}, bias=False): the merged backbone would gain parameters"
                )
        return None

    def merged_layer(self) -> nn.Linear:
        """The base layer with the update folded in (in place; the wrapper must be dropped after)."""
        base = self.base_layer
        problem = self.merge_problem()
        if problem:
            raise MethodNotSupportedError(f"{problem}. Disable the method's bias option to merge.")
        with torch.no_grad():
            # Both deltas may read the original weight (e.g. RepAdapter's offset): compute them first.
            dw, db = self.delta_weight(), self.delta_bias()
            base.weight.add_(dw.to(base.weight.dtype))
            if db is not None:
                base.bias.add_(db.to(base.bias.dtype))
        return base


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
    problems = [f"{n}: {p}" for n in names if (p := model.get_submodule(n).merge_problem())]
    if problems:  # refuse before changing anything
        raise MethodNotSupportedError(
            f"cannot merge this method into the backbone ({len(problems)} layer(s)): {problems[0]} (EVA-02's k_proj "
            "and DINOv3's qkv are bias-free). Set trainer.merge=false for this backbone, or disable the method's "
            "bias update where it has one."
        )
    for name in names:
        wrapper = model.get_submodule(name)
        replace_module(model, name, wrapper.merged_layer())
    return model
