"""Structural selection of existing backbone parameters, shared by the specification methods.

Every selector works on module types and positions (``nn.LayerNorm``, the ``bias`` of an affine layer,
the transformer blocks of :func:`peftbench.methods.layers.blocks.transformer_blocks`), never on parameter-name
substrings, and always leaves the classification head out (the harness trains it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn

# Layers whose ``bias`` is a bias term in the BitFit sense (an additive per-channel offset).
BIAS_OWNERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.modules.conv._ConvNd,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
)


def head_module_ids(model: nn.Module) -> set[int]:
    """Ids of the classifier module and everything below it (``get_classifier()``)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()


def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` except the classifier head and its children."""
    head = head_module_ids(model)
    return [m for m in model.modules() if id(m) not in head]


def unique(params: Iterable[nn.Parameter]) -> Iterator[nn.Parameter]:
    """Yield each parameter once, in first-seen order."""
    seen: set[int] = set()
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            yield p


def _qkv_bias_vectors(module: nn.Module) -> list[nn.Parameter]:
    """The q and v bias vectors Eva's fused attention keeps beside a bias-free ``qkv`` (k's is a zero buffer)."""
    from timm.models.eva import EvaAttention

    if not isinstance(module, EvaAttention):
        return []
    return [p for p in (module.q_bias, module.v_bias) if isinstance(p, nn.Parameter)]


def bias_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The bias of every Linear, Conv and norm layer outside the head (LayerNorm beta included).

    Args:
        model: any timm backbone.

    Returns:
        The bias parameters, in module order. Swin's ``relative_position_bias_table`` is an attention
        logit table, not the bias of an affine layer, and is not selected; Eva's fused attention keeps its qkv
        bias as ``q_bias`` / ``v_bias`` vectors, which are.
    """
    out = []
    for m in backbone_modules(model):
        bias = getattr(m, "bias", None)
        if isinstance(m, BIAS_OWNERS) and isinstance(bias, nn.Parameter):
            out.append(bias)
        out.extend(_qkv_bias_vectors(m))
    return out


def layernorm_parameters(model: nn.Module, weights: bool = True, biases: bool = True) -> list[nn.Parameter]:
    """The gamma (``weight``) and/or beta (``bias``) of every ``nn.LayerNorm`` outside the head.

    Args:
        model: any timm backbone.
        weights: include the gammas.
        biases: include the betas.

    Returns:
        The selected parameters, in module order.
    """
    out = []
    for m in backbone_modules(model):
        if isinstance(m, nn.LayerNorm):
            if weights and isinstance(m.weight, nn.Parameter):
                out.append(m.weight)
            if biases and isinstance(m.bias, nn.Parameter):
                out.append(m.bias)
    return out
