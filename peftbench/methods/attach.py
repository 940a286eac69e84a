"""Put a method on a backbone, freeze everything else, and count: the single place where trainability is set
(see :mod:`peftbench.methods.base`)."""

from __future__ import annotations

import torch
from torch import nn

from peftbench.methods.base import PeftMethod, PeftModule, count, head_parameters
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


def method_linears(model: nn.Module) -> list[nn.Module]:
    """The linear maps a method added: ``nn.Linear`` layers and modules that hold linear-map weights as raw
    parameters (named in their ``LINEAR_WEIGHTS``, e.g. LoRA's ``lora_A`` / ``lora_B``), inside a
    :class:`PeftModule` and not below a ``base_layer``."""
    found: list[nn.Module] = []

    def walk(module: nn.Module, owned: bool) -> None:
        owned = owned or isinstance(module, PeftModule)
        if owned and (isinstance(module, nn.Linear) or getattr(module, "LINEAR_WEIGHTS", ())):
            found.append(module)
        for name, child in module.named_children():
            walk(child, owned and name != "base_layer")

    walk(model, False)
    return found


@torch.no_grad()
def noah_reinit(model: nn.Module, std: float = 0.02) -> int:
    """NOAH's initialisation of the linear maps a method added (``method_init=noah``).

    NOAH builds its model with the method's layers inside, then applies the ViT weight init to every module
    before loading the pretrained backbone: every new Linear ends with trunc-normal(std) weights and zero bias,
    whatever the method's own init was (so its LoRA B is not zero and its adapters are not Xavier). Returns the
    number of modules re-initialised.
    """
    from timm.layers import trunc_normal_

    modules = method_linears(model)
    for module in modules:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                module.bias.zero_()
        for name in getattr(module, "LINEAR_WEIGHTS", ()):
            trunc_normal_(getattr(module, name), std=std)
    return len(modules)
