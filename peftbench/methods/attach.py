"""Put a method on a backbone, freeze everything else, and count: the single place where trainability is set
(see :mod:`peftbench.methods.base`)."""

from __future__ import annotations

from torch import nn

from peftbench.methods.base import PeftMethod, count, head_parameters
from peftbench.records import ParamCounts


def backbone_param_count(model: nn.Module) -> int:
    """Parameters of a plain backbone, the classification head excluded."""
    head = {id(p) for p in head_parameters(model)}
    return count([p for p in model.parameters() if id(p) not in head])


def attach_method(model: nn.Module, method: PeftMethod, train_head: bool = True) -> ParamCounts:
    """Apply ``method`` to ``model`` in place and set ``requires_grad`` accordingly.

    Args:
        model: a timm backbone with its task head already sized.
        method: the PEFT method to apply.
        train_head: the harness's head policy (True for every method in the tables).

    Returns:
        The parameter counts of the prepared model.
    """
    base_count = backbone_param_count(model)
    method.check_backbone(model)
    method.apply(model)
    model.requires_grad_(False)
    method_params = list(method.trainable_parameters(model))
    head = head_parameters(model) if train_head else []
    for p in method_params + head:
        p.requires_grad_(True)
    head_ids = {id(p) for p in head}
    without_head = count([p for p in method_params if id(p) not in head_ids])
    trainable = count([p for p in model.parameters() if p.requires_grad])
    return ParamCounts(
        trainable_params=trainable,
        trainable_params_without_head=without_head,
        head_params=count(head),
        total_params=count(list(model.parameters())),
        backbone_params=base_count,
        trainable_percent=100.0 * without_head / max(base_count, 1),
    )
