"""AIM (image form): a spatial adapter after attention and a scaled parallel adapter beside the MLP.

Paper: Yang, Zhu, Wang, Chen, Tian, Li (ICLR 2023), "AIM: Adapting Image Models for Efficient Video Action
Recognition". Reference implementation followed: taoyang1122/adapt-image-models
``mmaction/models/backbones/vit_imagenet.py`` / ``vit_clip.py`` (``Adapter``, the block ``forward`` and
``init_weights``) and ``swin2d_adapter.py`` (the Swin form). A block of AIM computes

* temporal adaptation ``x + T_Adapter(attn(LN1(x_t)))`` over the frames (video only),
* spatial adaptation ``x + S_Adapter(attn(LN1(x)))``, ``S_Adapter(h) = h + fc2(GELU(fc1(h)))``,
* joint adaptation ``x + mlp(LN2(x)) + s * MLP_Adapter(LN2(x))``, ``MLP_Adapter(h) = fc2(GELU(fc1(h)))``,

with ``fc1: D -> D/4``, ``fc2: D/4 -> D`` (biases; ``mlp_ratio = 0.25``), s = 0.5 (``adapter_scale``),
no dropout. Init: every Linear trunc-normal std 0.02 with zero bias (the model-wide ``_init_weights``),
then every adapter's ``fc2`` weight and bias set to zero: the model is the backbone at init. For images
there is one frame, so the temporal adapter has nothing to attend over; this module keeps the spatial
and MLP adapters (``adapters: spatial_mlp``; ``spatial`` or ``mlp`` alone for ablations).

Why AIM among the survey's adapter variants: its image part combines the two placements the other
modules here offer separately (a sequential adapter on the attention output as Houlsby, a scaled
parallel adapter on the MLP input as AdaptFormer) with a much wider bottleneck (D/4), it is
token-wise so it works on ViT and Swin alike (``swin2d_adapter.py`` puts the spatial adapter on the
window-attention output, exactly where wrapping ``attn`` puts it), and the official code fixes every
hyper-parameter. SCT needs a pass over the training data to choose its channels before training (the
method contract adapts a model without data); Mona needs the full feature map inside Swin blocks and
publishes dense-prediction results only.

Count on ViT-B/16 without head: 2 x 12 x (768*192 + 192 + 192*768 + 768) = 7,100,928 (7.1M). AIM
publishes no image-classification count; its README lists 11M tunable for ViT-B/16 with all three
adapters (3 x 12 x 295,872 = 10,651,392 plus the temporal embedding and the Kinetics head). Deliberate
deviations: the reference puts drop-path on the MLP adapter only and none on the MLP or the spatial
branch; wrapping ``attn`` / ``mlp`` puts both under timm's ``drop_path1`` / ``drop_path2``, identical
with drop-path 0 (the harness default). On Eva (EVA-02, DINOv3) the same two wrappers apply; on LayerScale
backbones both adapters sit inside the layer scale (see :mod:`~peftbench.methods.layers.bottleneck`).
"""

from __future__ import annotations

import dataclasses

from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod
from peftbench.methods.layers.blocks import block_width, replace_module
from peftbench.methods.layers.bottleneck import (
    Bottleneck,
    ParallelAdapter,
    SequentialAdapter,
    adapter_blocks,
    reference_tensor,
)
from peftbench.methods.layers.checks import check_choice, is_positive_number

# adapters option -> which of (spatial = after attention, mlp = beside the MLP) are added
ADAPTERS: dict[str, tuple[str, ...]] = {
    "spatial_mlp": ("spatial", "mlp"),
    "spatial": ("spatial",),
    "mlp": ("mlp",),
}


@dataclasses.dataclass
class AIMConfig(MethodConfig):
    """AIM options; defaults are the reference's (D/4 bottleneck, s = 0.5, both image adapters).

    Attributes:
        mlp_ratio: bottleneck width as a fraction of the block width D (``int(D * mlp_ratio)``, >= 1).
        scale: s, the factor on the parallel MLP adapter.
        adapters: ``spatial_mlp`` (both), ``spatial`` (after attention only) or ``mlp`` (beside the MLP only).
    """

    mlp_ratio: float = 0.25
    scale: float = 0.5
    adapters: str = "spatial_mlp"

    def __post_init__(self) -> None:
        for option in ("mlp_ratio", "scale"):
            value = getattr(self, option)
            if not is_positive_number(value):
                raise ConfigError(
                    f"aim {option} must be a number > 0, got {value!r}; the reference uses mlp_ratio=0.25, scale=0.5"
                )
        check_choice("aim", "adapters", self.adapters, ADAPTERS)


def apply_aim(model: nn.Module, cfg: AIMConfig, method: str = "aim") -> nn.Module:
    """Add AIM's spatial adapter after ``attn`` and its MLP adapter beside ``mlp`` in every block.

    Args:
        model: a timm ViT or Swin.
        cfg: the AIM options.
        method: the method's name, for error messages.

    Returns:
        The same model, adapted in place.
    """
    kinds = ADAPTERS[cfg.adapters]
    needs = tuple(sub for kind, sub in (("spatial", "attn"), ("mlp", "mlp")) if kind in kinds)
    for name, block in adapter_blocks(model, method, needs=needs):
        width, like = block_width(block), reference_tensor(block)
        hidden = int(width * cfg.mlp_ratio)
        if hidden < 1:
            raise ConfigError(
                f"aim mlp_ratio {cfg.mlp_ratio} leaves no bottleneck for width {width} in {name}; "
                "raise method.mlp_ratio (the reference uses 0.25)"
            )
        # GELU, no dropout; fc1 trunc-normal(0.02), fc2 zero (AIM's init_weights)
        spec = (width, hidden, "gelu", 0.0, "normal_zero", 0.02, like)
        if "spatial" in kinds:  # S_Adapter: h + adapter(h), h = attn(LN1(x))
            replace_module(model, f"{name}.attn", SequentialAdapter(block.attn, Bottleneck(*spec)))
        if "mlp" in kinds:  # MLP_Adapter: mlp(LN2(x)) + s * adapter(LN2(x))
            replace_module(model, f"{name}.mlp", ParallelAdapter(block.mlp, Bottleneck(*spec), cfg.scale))
    return model


class AIM(PeftMethod[AIMConfig]):
    """AIM's image adapters: spatial (after attention, with skip) and MLP (parallel, x 0.5), D/4 wide."""

    name = "aim"
    family = "addition"
    subfamily = "adapter"
    config_cls = AIMConfig
    backbones = ("vit", "eva", "swin")
    notes = {
        "layerscale": "both adapters inside the layer scale (PETL_Vision's placement on DINOv2)",
        "rope": "the rotary embeddings reach the wrapped attention unchanged",
    }
    refusals = {
        "convnext": "AIM adapts the self-attention and MLP of transformer blocks (its spatial adapter follows "
        "attention), and ConvNeXt blocks have no attention (use parallel_adapter for an MLP-side adapter)"
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_aim(model, self.config, self.name)
