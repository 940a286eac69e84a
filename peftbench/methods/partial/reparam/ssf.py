"""SSF: scale and shift the features after every linear map and norm, merged into them after training.

Paper: Lian, Zhou, Feng, Wang (2022), "Scaling & Shifting Your Features: A New Baseline for Efficient
Model Tuning" (NeurIPS). Reference implementation: dongzelian/SSF ``models/vision_transformer.py`` and
``models/swin_transformer.py`` (``tuning_mode == 'ssf'``): ``y = x * gamma + beta`` with per-channel gamma,
beta (``init_ssf_scale_shift``: gamma ~ N(1, 0.02), beta ~ N(0, 0.02)) after

* the attention ``qkv`` (3D channels) and ``proj``, the MLP ``fc1`` (hidden) and ``fc2``;
* each block's ``norm1`` and ``norm2``;
* the patch-embedding conv (and its norm when it has one, as in Swin);
* the final norm; on Swin also after each PatchMerging norm (before the bias-free ``reduction``).

That is, structurally: every LayerNorm outside the head, every Linear inside a transformer block, and the
patch-embedding conv. Each site is a :class:`SSFWrapper` (wrap, never patch) that keeps the original as
``base_layer``; :meth:`SSF.merge` folds gamma / beta into that layer's weight and bias
(``W' = diag(gamma) W``, ``b' = gamma * b + beta``) and puts it back, so the merged backbone is a plain timm
model with the original parameter count.

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
from peftbench.methods.layers.blocks import replace_module, transformer_blocks


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


class SSFWrapper(PeftModule):
    """``y = base_layer(x) * ssf_scale + ssf_shift`` along the layer's output channels.

    Args:
        base_layer: a LayerNorm, Linear (channels last) or Conv2d (channels at dim 1), kept frozen.
        init_std: init spread of scale (around 1) and shift (around 0).
    """

    def __init__(self, base_layer: nn.Module, init_std: float = 0.02) -> None:
        super().__init__()
        self.base_layer = base_layer
        dim = _out_channels(base_layer)
        self.channels_last = not isinstance(base_layer, nn.Conv2d)
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

    def merged_layer(self) -> nn.Module:
        """The base layer with scale and shift folded into its weight and bias (in place)."""
        base = self.base_layer
        weight, bias = getattr(base, "weight", None), getattr(base, "bias", None)
        if not isinstance(weight, nn.Parameter) or not isinstance(bias, nn.Parameter):
            raise MethodNotSupportedError(
                f"cannot merge SSF into {base}: it needs both a weight and a bias to absorb the scale and "
                "shift without adding parameters. Set trainer.merge=false for this backbone."
            )
        with torch.no_grad():
            scale = self.ssf_scale.to(weight.dtype)
            weight.mul_(scale.view((-1,) + (1,) * (weight.dim() - 1)))  # scale output channels
            bias.mul_(scale).add_(self.ssf_shift.to(bias.dtype))
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
        model: timm VisionTransformer or SwinTransformer.

    Returns:
        Names of every LayerNorm outside the head, every Linear inside a block, and the patch-embedding conv.
    """
    head = model.get_classifier()
    head_ids = {id(m) for m in head.modules()} if isinstance(head, nn.Module) else set()
    in_blocks = {id(m) for _, block in transformer_blocks(model) for m in block.modules()}
    patch_proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    sites = []
    for name, m in model.named_modules():
        if id(m) in head_ids:
            continue
        if (
            isinstance(m, nn.LayerNorm)
            or (isinstance(m, nn.Linear) and id(m) in in_blocks)
            or (isinstance(m, nn.Conv2d) and m is patch_proj)
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


def merge_ssf(model: nn.Module) -> nn.Module:
    """Replace every :class:`SSFWrapper` by its base layer with scale and shift folded in.

    Args:
        model: a backbone adapted by :func:`apply_ssf`.

    Returns:
        The same model object, now a plain backbone.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, SSFWrapper)]
    for name in names:
        replace_module(model, name, model.get_submodule(name).merged_layer())
    return model


class SSF(PeftMethod[SSFConfig]):
    """Scale and shift after every linear map and norm; merges into them for inference."""

    name = "ssf"
    family = "partial"
    subfamily = "reparameter"
    config_cls = SSFConfig
    mergeable = True
    backbones = ("vit", "swin")

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_ssf(model, self.config)

    def merge(self, model: nn.Module) -> nn.Module:
        return merge_ssf(model)
