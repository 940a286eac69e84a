"""Backbone anatomy shared by every method: families, blocks, and the logical linear maps of a block.

Families (:func:`backbone_family`, by timm class):

* ``vit``: ``VisionTransformer`` (supervised IN-21k ViTs, DINOv2 with registers and LayerScale, CLIP with
  ``norm_pre`` and quick-GELU, SigLIP's attention-pool head, MAE, DeiT-III);
* ``eva``: ``Eva`` (EVA-02: rotary position embeddings, separate q/k/v projections, SwiGLU MLP; DINOv3: fused
  qkv, LayerScale ``gamma_1`` / ``gamma_2``, registers, rotary embeddings);
* ``swin``: ``SwinTransformer``; ``convnext``: ``ConvNeXt``.

A method declares the families it is defined for (``PeftMethod.backbones``) and finds what it adapts here,
structurally, never by parameter names:

* :func:`transformer_blocks`: the attention blocks (vit, eva, swin); :func:`backbone_blocks` adds ConvNeXt's;
* :func:`block_sites`: one logical linear map per block, whatever the layout: ``qkv`` (timm's fused
  ``attn.qkv`` with three slots q, k, v, or EVA-02's ``attn.q_proj`` | ``k_proj`` | ``v_proj``), ``proj``,
  ``mlp_in`` (``mlp.fc1``, or SwiGLU's ``mlp.fc1_g`` | ``fc1_x``) and ``mlp_out`` (``mlp.fc2``). A
  :class:`LinearSite` lists the ``nn.Linear`` parts whose concatenated outputs are the logical map, so "LoRA
  on qkv" means the same outputs on either layout;
* :func:`block_linears`: every ``nn.Linear`` at a block-relative path (the plain timm layout);
* :func:`post_block_modules`: what runs after the last block and before the classifier (final norms, pooling);
* :func:`attention_residual` / :func:`mlp_residual`: a transformer block's two halves, for a method that acts on the
  residual stream between them (SCT, Mona); :func:`layerscale_parameters`: the LayerScale vectors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from peftbench.errors import MethodNotSupportedError

# family -> (timm module, class name), in the order tables list them
FAMILY_CLASSES: dict[str, tuple[str, str]] = {
    "vit": ("timm.models.vision_transformer", "VisionTransformer"),
    "eva": ("timm.models.eva", "Eva"),
    "swin": ("timm.models.swin_transformer", "SwinTransformer"),
    "convnext": ("timm.models.convnext", "ConvNeXt"),
}
FAMILIES = tuple(FAMILY_CLASSES)
FAMILY_EXAMPLES = {
    "vit": "vit_b16_in21k",
    "eva": "eva02_b14_mim_in22k",
    "swin": "swin_b_in22k",
    "convnext": "convnext_b_in22k",
}
SITES = ("qkv", "proj", "mlp_in", "mlp_out")


def _family_class(family: str) -> type:
    import importlib

    module, name = FAMILY_CLASSES[family]
    return getattr(importlib.import_module(module), name)


def backbone_family(model: nn.Module) -> str:
    """Classify a timm model as one of :data:`FAMILIES` by its class, or ``other``."""
    for family in FAMILIES:
        if isinstance(model, _family_class(family)):
            return family
    return "other"


def transformer_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The transformer blocks of a timm ViT / Eva (``blocks.i``) or Swin (``layers.s.blocks.i``), in order.

    Returns:
        ``(qualified_name, block)`` pairs.
    """
    family = backbone_family(model)
    if family in ("vit", "eva"):
        return [(f"blocks.{i}", b) for i, b in enumerate(model.blocks)]
    if family == "swin":
        return [
            (f"layers.{s}.blocks.{i}", b)
            for s, stage in enumerate(model.layers)
            for i, b in enumerate(stage.blocks)
        ]
    why = "ConvNeXt has convolutional blocks, no attention" if family == "convnext" else "not a supported class"
    raise MethodNotSupportedError(
        f"cannot find transformer blocks in {type(model).__name__} ({why}); transformer blocks exist in timm "
        "VisionTransformer, Eva and SwinTransformer"
    )


def backbone_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The residual blocks in forward order: :func:`transformer_blocks`, or ConvNeXt's ``stages.s.blocks.i``."""
    if backbone_family(model) == "convnext":
        return [
            (f"stages.{s}.blocks.{i}", b)
            for s, stage in enumerate(model.stages)
            for i, b in enumerate(stage.blocks)
        ]
    return transformer_blocks(model)


def replace_module(root: nn.Module, qualified_name: str, new: nn.Module) -> nn.Module:
    """Put ``new`` at ``qualified_name`` inside ``root``; return the module that was there."""
    parent_name, _, child = qualified_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


@dataclasses.dataclass(frozen=True)
class LinearPart:
    """One ``nn.Linear`` of a logical site and the site's output slots it computes, in order."""

    name: str
    layer: nn.Linear
    slots: tuple[int, ...]

    @property
    def slot_width(self) -> int:
        """Output width of one slot."""
        return self.layer.out_features // len(self.slots)


@dataclasses.dataclass(frozen=True)
class LinearSite:
    """A logical linear map of one block: the concatenated outputs of ``parts``, all reading the same input.

    Attributes:
        block: the block's qualified name.
        site: one of :data:`SITES`.
        parts: the Linears, in slot order (one fused ``qkv``, or ``q_proj``, ``k_proj``, ``v_proj``).
        num_slots: equal-width slots of the logical output (3 for qkv: q, k, v; else one per part).
    """

    block: str
    site: str
    parts: tuple[LinearPart, ...]
    num_slots: int

    @property
    def in_features(self) -> int:
        return self.parts[0].layer.in_features

    @property
    def out_features(self) -> int:
        return sum(p.layer.out_features for p in self.parts)

    @property
    def fused(self) -> bool:
        """One Linear computes the whole site."""
        return len(self.parts) == 1


def _linear(block: nn.Module, path: str) -> nn.Linear | None:
    try:
        layer = block.get_submodule(path)
    except AttributeError:
        return None
    return layer if isinstance(layer, nn.Linear) else None


def check_fused_qkv_is_called(block_name: str, attn: nn.Module) -> None:
    """Refuse Eva attention that adds separate q/v bias parameters: its forward reads ``qkv.weight``
    directly instead of calling ``qkv``, so a wrapper around ``qkv`` would be bypassed."""
    if getattr(attn, "q_bias", None) is not None and isinstance(getattr(attn, "qkv", None), nn.Linear):
        raise MethodNotSupportedError(
            f"{block_name}.attn ({type(attn).__name__}) adds separate q/v bias parameters to a bias-free fused "
            "qkv and reads qkv.weight directly, so a method wrapping qkv would be bypassed; use a backbone "
            "without the separate q/v biases (e.g. vit_b16_dinov3, not the *_qkvb variants)"
        )


def _site(block_name: str, block: nn.Module, site: str) -> LinearSite:
    attn, mlp = getattr(block, "attn", None), getattr(block, "mlp", None)
    parts: list[tuple[str, nn.Linear | None]]
    if site == "qkv":
        if attn is None:
            raise MethodNotSupportedError(
                f"{block_name} ({type(block).__name__}) has no attention, so no qkv projection to adapt"
            )
        check_fused_qkv_is_called(block_name, attn)
        if _linear(block, "attn.qkv") is not None:
            parts = [("attn.qkv", _linear(block, "attn.qkv"))]
        else:
            parts = [(f"attn.{p}_proj", _linear(block, f"attn.{p}_proj")) for p in "qkv"]
        num_slots = 3
    elif site == "proj":
        parts = [("attn.proj", _linear(block, "attn.proj") if attn is not None else None)]
        num_slots = 1
    elif site == "mlp_in":
        if _linear(block, "mlp.fc1") is not None or mlp is None or not hasattr(mlp, "fc1_g"):
            parts = [("mlp.fc1", _linear(block, "mlp.fc1"))]
        else:
            parts = [("mlp.fc1_g", _linear(block, "mlp.fc1_g")), ("mlp.fc1_x", _linear(block, "mlp.fc1_x"))]
        num_slots = len(parts)
    elif site == "mlp_out":
        parts = [("mlp.fc2", _linear(block, "mlp.fc2"))]
        num_slots = 1
    else:
        raise ValueError(f"unknown site {site!r}; valid: {', '.join(SITES)}")
    missing = [path for path, layer in parts if layer is None]
    if missing:
        raise MethodNotSupportedError(
            f"{block_name} ({type(block).__name__}) has no nn.Linear at {', '.join(missing)} for its {site!r} map; "
            "the method needs timm's attn.qkv (or q_proj/k_proj/v_proj), attn.proj, mlp.fc1 (or fc1_g/fc1_x), "
            "mlp.fc2 layers"
        )
    per_part = num_slots // len(parts)
    linear_parts = tuple(
        LinearPart(f"{block_name}.{path}", layer, tuple(range(i * per_part, (i + 1) * per_part)))
        for i, (path, layer) in enumerate(parts)
        if layer is not None
    )
    return LinearSite(block_name, site, linear_parts, num_slots)


def block_sites(model: nn.Module, site: str, blocks: list[tuple[str, nn.Module]] | None = None) -> list[LinearSite]:
    """The logical linear map ``site`` (see :data:`SITES`) of every block, in block order.

    Args:
        model: a timm ViT, Eva, Swin (or ConvNeXt for the ``mlp_*`` sites).
        site: ``qkv``, ``proj``, ``mlp_in`` or ``mlp_out``.
        blocks: the blocks to read (default :func:`backbone_blocks`).

    Returns:
        One :class:`LinearSite` per block.
    """
    return [_site(name, block, site) for name, block in (blocks or backbone_blocks(model))]


def block_linears(model: nn.Module, rel_path: str) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` at ``rel_path`` (e.g. ``"attn.qkv"``) inside every transformer block.

    Returns:
        ``(qualified_name, linear)`` pairs in block order.
    """
    sites = []
    for block_name, block in transformer_blocks(model):
        layer = _linear(block, rel_path)
        if layer is None:
            raise MethodNotSupportedError(
                f"{type(model).__name__} block {block_name!r} has no nn.Linear at {rel_path!r}; the method needs "
                "timm's standard attn.qkv / attn.proj / mlp.fc1 / mlp.fc2 layers"
            )
        if rel_path == "attn.qkv":
            check_fused_qkv_is_called(block_name, block.attn)
        sites.append((f"{block_name}.{rel_path}", layer))
    return sites


def all_block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` of the transformer blocks (their logical sites, in block then site order)."""
    out = []
    for name, block in transformer_blocks(model):
        for site in SITES:
            out += [(p.name, p.layer) for p in _site(name, block, site).parts]
    return out


def iter_linears_in_blocks(model: nn.Module) -> Iterator[nn.Module]:
    """Every module inside the residual blocks (:func:`backbone_blocks`), for type-based selectors."""
    for _, block in backbone_blocks(model):
        yield from block.modules()


def post_block_modules(model: nn.Module) -> list[nn.Module]:
    """The modules with parameters that run after the last block and before the classifier, in order.

    ViT / Eva: ``norm``, ``attn_pool`` (SigLIP's attention pooling), ``fc_norm``; Swin: ``norm``; ConvNeXt:
    ``norm_pre`` and the head's ``norm`` (the classifier itself, ``get_classifier()``, is the harness's).
    """
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    # ConvNeXt's norm_pre sits after the stages; ViT / Eva's runs before the blocks
    names = ("norm_pre",) if backbone_family(model) == "convnext" else ("norm", "attn_pool", "fc_norm")
    candidates = [getattr(model, n, None) for n in names]
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module) and head is not classifier:
        candidates += [m for m in head.children() if m is not classifier]
    found = []
    for m in candidates:
        if isinstance(m, nn.Module) and m is not classifier and any(True for _ in m.parameters()):
            found.append(m)
    return found


def _layer_scale(block: nn.Module, branch: int, y: torch.Tensor) -> torch.Tensor:
    """``y`` through the block's LayerScale of ``branch`` (1: attention, 2: MLP), if it has one.

    ViT ``Block``: the ``ls1`` / ``ls2`` modules (``nn.Identity`` without layer scale); ``EvaBlock``: the
    ``gamma_1`` / ``gamma_2`` vectors (None without); Swin: none.
    """
    module = getattr(block, f"ls{branch}", None)
    if module is not None:
        return module(y)
    gamma = getattr(block, f"gamma_{branch}", None)
    return y if gamma is None else gamma * y


def attention_residual(block: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """The first half of a pre-norm transformer block: ``x + drop_path1(ls1(attn(norm1(x))))``.

    Computed exactly as the block's own forward does it, for timm's ViT ``Block`` (``ls1``), ``EvaBlock``
    (``gamma_1``; ``kwargs`` carry the rotary embeddings to the attention) and ``SwinTransformerBlock`` (the
    shifted-window attention ``_attn`` on the ``(B, H, W, C)`` map). ``mlp_residual(block, attention_residual(
    block, x))`` equals ``block(x)``.
    """
    if hasattr(block, "_attn"):  # SwinTransformerBlock: window partition, shift and merge around its attention
        return x + block.drop_path1(block._attn(block.norm1(x)))
    return x + block.drop_path1(_layer_scale(block, 1, block.attn(block.norm1(x), **kwargs)))


def mlp_residual(block: nn.Module, x: torch.Tensor,
                 after_mlp: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The second half of a pre-norm transformer block: ``x + drop_path2(ls2(mlp(norm2(x))))``.

    Token-wise, so Swin's ``(B, H, W, C)`` map needs no reshape (the block flattens it; the result is the same).
    ``after_mlp``, if given, acts on the MLP's output inside the layer scale: ``ls2(after_mlp(mlp(norm2(x))))``.
    """
    y = block.mlp(block.norm2(x))
    if after_mlp is not None:
        y = after_mlp(y)
    return x + block.drop_path2(_layer_scale(block, 2, y))


def layerscale_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LayerScale vectors of the residual blocks, in block order: ViT ``ls1.gamma`` / ``ls2.gamma`` (DINOv2,
    DeiT-III), Eva ``gamma_1`` / ``gamma_2`` (DINOv3), ConvNeXt's ``gamma``; empty on backbones without."""
    out = []
    for _, block in backbone_blocks(model):
        for owner, name in ((getattr(block, "ls1", None), "gamma"), (getattr(block, "ls2", None), "gamma"),
                            (block, "gamma_1"), (block, "gamma_2"), (block, "gamma")):
            p = getattr(owner, name, None) if owner is not None else None
            if isinstance(p, nn.Parameter):
                out.append(p)
    return out


def block_width(block: nn.Module) -> int:
    """D, the width of a transformer block's residual stream (its first LayerNorm's size)."""
    norm = getattr(block, "norm1", None)
    if norm is None:  # ConvNeXt: one norm after the depthwise conv
        norm = block.norm
    return int(norm.normalized_shape[-1])


# backbone features a method's placement may have to translate (see backbone_features); the support matrix
# prints a method's note (PeftMethod.notes) for each feature the backbone has
FEATURES: dict[str, str] = {
    "registers": "register tokens after the class token (DINOv2-reg, DINOv3)",
    "layerscale": "LayerScale on the residual branches (DINOv2, DeiT-III, DINOv3, ConvNeXt)",
    "norm_pre": "a LayerNorm before the first block (CLIP's ln_pre)",
    "map_head": "attention-pooling head (SigLIP), no class token",
    "avg_pool": "the head averages the patch tokens (EVA-02)",
    "rope": "rotary position embeddings on q and k (EVA-02, DINOv3)",
    "qkv_separate": "separate q / k / v projections (EVA-02)",
    "swiglu": "SwiGLU MLP with two input Linears (EVA-02)",
    "bias_free_linear": "block Linears without bias (EVA-02's k_proj, DINOv3's qkv)",
    "bias_free_patch_embed": "bias-free patch embedding (CLIP)",
    "convnext": "convolutional stages (ConvNeXt)",
}


def backbone_features(model: nn.Module) -> tuple[str, ...]:
    """The :data:`FEATURES` ``model`` has, in the order of that table."""
    family = backbone_family(model)
    found: set[str] = set()
    if family == "convnext":
        found.add("convnext")
    if getattr(model, "reg_token", None) is not None:
        found.add("registers")
    for m in model.modules():
        name = type(m).__name__
        if name == "LayerScale" or getattr(m, "gamma_1", None) is not None or (
            name == "ConvNeXtBlock" and getattr(m, "gamma", None) is not None
        ):
            found.add("layerscale")
    if family in ("vit", "eva"):
        if isinstance(getattr(model, "norm_pre", None), nn.LayerNorm):
            found.add("norm_pre")
        if getattr(model, "attn_pool", None) is not None:
            found.add("map_head")
        elif getattr(model, "global_pool", None) == "avg":
            found.add("avg_pool")
        if getattr(model, "rope", None) is not None:
            found.add("rope")
        proj = getattr(getattr(model, "patch_embed", None), "proj", None)
        if isinstance(proj, nn.Conv2d) and proj.bias is None:
            found.add("bias_free_patch_embed")
    if family in ("vit", "eva", "swin"):
        for name, block in transformer_blocks(model):
            qkv, mlp_in = _site(name, block, "qkv"), _site(name, block, "mlp_in")
            found |= {"qkv_separate"} if not qkv.fused else set()
            found |= {"swiglu"} if len(mlp_in.parts) == 2 else set()
            if any(p.layer.bias is None for s in (qkv, mlp_in) for p in s.parts):
                found.add("bias_free_linear")
    return tuple(f for f in FEATURES if f in found)
