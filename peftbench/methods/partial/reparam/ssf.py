"""SSF: scale and shift the features after every linear map and norm, merged into them after training.

Paper: Lian, Zhou, Feng, Wang (2022), "Scaling & Shifting Your Features: A New Baseline for Efficient
Model Tuning" (NeurIPS). Reference implementation: dongzelian/SSF ``models/vision_transformer.py`` and
``models/swin_transformer.py`` (``tuning_mode == 'ssf'``): ``y = x * gamma + beta`` with per-channel gamma,
beta (``init_ssf_scale_shift``: gamma ~ N(1, 0.02), beta ~ N(0, 0.02)) after

* the attention ``qkv`` (3D channels) and ``proj``, the MLP ``fc1`` (hidden) and ``fc2``;
* each block's ``norm1`` and ``norm2``;
* the patch-embedding conv (and its norm when it has one, as in Swin);
* the final norm; on Swin also after each PatchMerging norm (before the bias-free ``reduction``);
* on ConvNeXt (``models/convnext.py``): after the stem conv and its norm, every block's depthwise conv, norm,
  ``fc1`` and ``fc2``, each downsampling norm and conv, and the final (head) norm.

That is, structurally: every LayerNorm outside the head (timm's channels-first ``LayerNorm2d`` included),
every Linear inside a block, and every conv outside the head (on ViT, Swin and Eva only the patch embedding).
On the other backbones the same rule adds CLIP's ``norm_pre``, SigLIP's attention-pool norm (its Linears are
not in a block and stay plain), EVA-02's ``fc_norm`` and its SwiGLU inner norm, and every one of EVA-02's
q / k / v projections and SwiGLU's two input Linears (the same channels as one fused Linear). Each site is a :class:`SSFWrapper` (wrap, never patch) that keeps the original as
``base_layer``; :meth:`SSF.merge` folds gamma / beta into that layer's weight and bias
(``W' = diag(gamma) W``, ``b' = gamma * b + beta``) and puts it back, so the merged backbone is a plain timm
model with the original parameter count. A bias-free patch embedding (CLIP) takes its shift in the position
embedding of the patch tokens instead (exact: the shift is added to every patch token before the position
embedding). Other bias-free layers cannot absorb a shift, so merging is refused on backbones that have them
(EVA-02's ``k_proj``, DINOv3's fused ``qkv``), before anything is changed.

Count on ViT-B/16 without head: 2 x [12 x (2304 + 768 + 3072 + 768 + 768 + 768) + 768 (patch embed)
+ 768 (final norm)] = 205,824 = the "0.21M" of V-PETL Bench's VTAB-1k table. SSF's own VTAB-1k Table
prints 0.24M because its Params column includes the task head averaged over the 19 tasks
(769 x 940 / 19 = 38,046; 205,824 + 38,046 = 243,870 -> 0.24M; its "Linear probing" row reads 0.04M,
the head alone). SSF's VTAB-1k recipe (``train_scripts/vit/vtab/*/train_ssf.sh``): AdamW, 100 epochs
(10 warm-up), batch 32, drop path 0.1, no augmentation, per-task lr 1e-3 .. 5e-2 (5e-3 for 9 of 19 tasks)
and weight decay 5e-5 or 5e-2.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import (
    backbone_blocks,
    check_fused_qkv_is_called,
    iter_linears_in_blocks,
    replace_module,
)


@dataclasses.dataclass
class SSFConfig(MethodConfig):
    """SSF options.

    Attributes:
        init_std: standard deviation of the init, gamma ~ N(1, std) and beta ~ N(0, std) (0.02 in the repo).
    """

    init_std: float = 0.02

    def __post_init__(self) -> None:
        if (
            isinstance(self.init_std, bool)
            or not isinstance(self.init_std, (int, float))
            or self.init_std < 0
        ):
            raise ConfigError(
                f"ssf init_std must be a number >= 0 (0.02 in the paper), got {self.init_std!r}"
            )


def _channels_first() -> tuple[type[nn.Module], ...]:
    from timm.layers import LayerNorm2d

    return (nn.Conv2d, LayerNorm2d)


CHANNELS_FIRST = _channels_first()  # layers whose output channels are dim 1 (B, C, H, W)


class SSFWrapper(PeftModule):
    """``y = base_layer(x) * ssf_scale + ssf_shift`` along the layer's output channels.

    Args:
        base_layer: a LayerNorm, Linear (channels last) or Conv2d / LayerNorm2d (channels at dim 1), kept frozen.
        init_std: init spread of scale (around 1) and shift (around 0).
    """

    def __init__(self, base_layer: nn.Module, init_std: float = 0.02) -> None:
        super().__init__()
        self.base_layer = base_layer
        dim = _out_channels(base_layer)
        self.channels_last = not isinstance(base_layer, CHANNELS_FIRST)
        ref = next(base_layer.parameters(), None)
        kw = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {}
        self.ssf_scale = nn.Parameter(torch.empty(dim, **kw))
        self.ssf_shift = nn.Parameter(torch.empty(dim, **kw))
        nn.init.normal_(self.ssf_scale, mean=1.0, std=init_std)
        nn.init.normal_(self.ssf_shift, mean=0.0, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.channels_last:
            return y * self.ssf_scale + self.ssf_shift  # (..., C)
        shape = (-1,) + (1,) * (y.dim() - 2)  # (B, C, H, W): broadcast over the spatial dims
        return y * self.ssf_scale.view(shape) + self.ssf_shift.view(shape)

    def merged_layer(self, shift_into: torch.Tensor | None = None) -> nn.Module:
        """The base layer with scale and shift folded into its weight and bias (in place).

        Args:
            shift_into: for a bias-free layer, a tensor the shift is added to instead (broadcast on its last dim).
        """
        base = self.base_layer
        weight, bias = getattr(base, "weight", None), getattr(base, "bias", None)
        with torch.no_grad():
            scale = self.ssf_scale.to(weight.dtype)
            weight.mul_(scale.view((-1,) + (1,) * (weight.dim() - 1)))  # scale output channels
            if isinstance(bias, nn.Parameter):
                bias.mul_(scale).add_(self.ssf_shift.to(bias.dtype))
            else:
                shift_into.add_(self.ssf_shift.to(shift_into.dtype))  # type: ignore[union-attr]
        return base


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, nn.LayerNorm):
        if len(layer.normalized_shape) != 1:
            raise MethodNotSupportedError(f"SSF supports 1-D LayerNorms, got {layer}")
        return int(layer.normalized_shape[0])
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.Conv2d):
        return layer.out_channels
    raise MethodNotSupportedError(
        f"SSF wraps LayerNorm, Linear and Conv2d layers, not {type(layer).__name__}"
    )


def ssf_sites(model: nn.Module) -> list[str]:
    """Qualified names of the layers SSF follows (see the module docstring), in module order.

    Args:
        model: timm VisionTransformer, Eva, SwinTransformer or ConvNeXt.

    Returns:
        Names of every LayerNorm and conv outside the head and of every Linear inside a block.
    """
    head = model.get_classifier()
    head_ids = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    for name, block in backbone_blocks(model):
        if isinstance(getattr(block, "attn", None), nn.Module):
            check_fused_qkv_is_called(name, block.attn)
    in_blocks = {id(m) for m in iter_linears_in_blocks(model)}
    sites = []
    for name, m in model.named_modules():
        if id(m) in head_ids:
            continue
        if (
            isinstance(m, (nn.LayerNorm, nn.Conv2d))
            or (isinstance(m, nn.Linear) and id(m) in in_blocks)
        ):
            sites.append(name)
    return sites


def apply_ssf(model: nn.Module, cfg: SSFConfig) -> nn.Module:
    """Wrap every SSF site of ``model`` with a :class:`SSFWrapper`.

    Args:
        model: timm VisionTransformer or SwinTransformer.
        cfg: the SSF options.

    Returns:
        The same model, adapted in place.
    """
    for name in ssf_sites(model):
        replace_module(model, name, SSFWrapper(model.get_submodule(name), cfg.init_std))
    return model


def _patch_shift_target(model: nn.Module, name: str) -> torch.Tensor | None:
    """The position embedding of the patch tokens, when ``name`` is a bias-free patch-embedding conv before it."""
    pos = getattr(model, "pos_embed", None)
    if name != "patch_embed.proj" or not isinstance(pos, nn.Parameter) or getattr(model, "dynamic_img_size", False):
        return None
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    return pos.data[:, prefix:]  # (1, N, D) view: a shift added here reaches every patch token


def merge_ssf(model: nn.Module) -> nn.Module:
    """Replace every :class:`SSFWrapper` by its base layer with scale and shift folded in.

    Every wrapper is checked first; a bias-free layer whose shift has nowhere to go refuses the whole merge
    and leaves the model as it was.

    Args:
        model: a backbone adapted by :func:`apply_ssf`.

    Returns:
        The same model object, now a plain backbone.
    """
    wrappers = [(n, m) for n, m in model.named_modules() if isinstance(m, SSFWrapper)]
    targets = {}
    for name, wrapper in wrappers:
        if not isinstance(getattr(wrapper.base_layer, "bias", None), nn.Parameter):
            targets[name] = _patch_shift_target(model, name)
            if targets[name] is None:
                raise MethodNotSupportedError(
                    f"cannot merge SSF into {name} ({wrapper.base_layer}): it has no bias to absorb the shift, and "
                    "adding one would add parameters (EVA-02's k_proj and DINOv3's qkv are bias-free). Set "
                    "trainer.merge=false for this backbone."
                )
    for name, wrapper in wrappers:
        replace_module(model, name, wrapper.merged_layer(targets.get(name)))
    return model


class SSF(PeftMethod[SSFConfig]):
    """Scale and shift after every linear map and norm; merges into them for inference."""

    name = "ssf"
    family = "partial"
    subfamily = "reparameter"
    config_cls = SSFConfig
    mergeable = True
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "norm_pre": "norm_pre is scaled and shifted, as every LayerNorm",
        "map_head": "the attention-pool norm is wrapped; its Linears (outside the blocks) stay plain",
        "swiglu": "both SwiGLU input Linears and its inner LayerNorm are wrapped",
        "bias_free_linear": "merge refused: a bias-free Linear cannot absorb the shift",
        "bias_free_patch_embed": "the patch-embedding shift merges into the patch tokens' position embedding",
        "convnext": "after every conv, LayerNorm and MLP Linear (SSF's models/convnext.py)",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_ssf(model, self.config)

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_ssf(model)
