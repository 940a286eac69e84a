"""DiffFit: BitFit plus LayerNorm gammas plus learnable per-channel scale factors on the residual branches.

Paper: Xie, Yao, Shi, Liu, Zhou, Liu, Li, Li (2023), "DiffFit: Unlocking Transferability of Large Diffusion
Models via Simple Parameter-Efficient Fine-Tuning" (ICCV). DiffFit freezes the backbone and trains the bias
terms, the normalisation layers and the class-condition module, and inserts learnable scale factors
gamma (initialised to 1) into blocks: ``x = x + gamma_1 * Attn(LN(x))``, ``x = x + gamma_2 * MLP(LN(x))``.
No DiT code of the paper was available to follow; the authors' own release of the method (lawrence-cj/LLaMA-DiffFit,
``peft/src/peft/tuners/difffit.py``) makes each gamma a per-channel vector (``eta * ones(feature_dim)``,
eta = 1) and puts it in the first 14 layers (``--eta_layers [0..13]``), the same first-14-blocks
placement the paper settles on for DiT-XL/2 (the first half of its 28 blocks).

Adaptation to a ViT classifier (no VTAB-1k row exists for DiffFit on ViT-B/16, so the pinned count is
analytic; the "class-condition module" is the task head, which the harness trains):

* biases: the BitFit set (every Linear / Conv / LayerNorm bias, see ``bitfit.py``);
* norms: the gamma of every LayerNorm (their betas are already in the bias set);
* scale factors: gamma_1, gamma_2 in R^D per block in ``scale_blocks`` (default the first half,
  ceil(L / 2) blocks), init ``scale_init`` = 1, so the model equals the backbone at init.

Count on ViT-B/16 without head: biases 102,912 + LayerNorm gammas 25 x 768 = 19,200 + gammas of the first
6 blocks 6 x 2 x 768 = 9,216 -> 131,328 (0.13M).

Wrap, never patch: each block's ``drop_path1`` / ``drop_path2`` (the last op on the attention and MLP
residual branches in timm's ViT, Swin and Eva blocks) is replaced by a :class:`BranchScale` that keeps it as
``base_layer`` and multiplies its output by gamma (drop path is linear in its input, so
``gamma * drop_path(f(x)) == drop_path(gamma * f(x))``). On LayerScale backbones (DINOv2, DeiT-III: ``ls1`` /
``ls2``; DINOv3: ``gamma_1`` / ``gamma_2``) the layer scale runs before ``drop_path``, so DiffFit's gamma
multiplies the layer-scaled branch, as PETL_Vision's DiffFit on DINOv2 (``model/block.py``: ``difffit_gamma1 *
drop_path1(ls1(attn(...)))``); the layer-scale vectors themselves stay frozen (they are neither biases nor
norms).

Not reproduced: the paper gives gamma its own, larger learning rate (an ablated ratio, 10x); the harness
gives every trainable parameter the same optimizer settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import torch
from torch import nn

from peftbench.errors import ConfigError, MethodNotSupportedError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule, method_owned_parameters
from peftbench.methods.layers.blocks import replace_module, transformer_blocks
from peftbench.methods.layers.select import bias_parameters, layernorm_parameters, unique

# which blocks get scale factors, as a function of the number of blocks L
SCALE_BLOCKS: dict[str, Callable[[int], range]] = {
    "first_half": lambda n: range((n + 1) // 2),
    "all": lambda n: range(n),
    "none": lambda n: range(0),
}
BRANCHES = ("drop_path1", "drop_path2")  # attention branch, MLP branch


@dataclasses.dataclass
class DiffFitConfig(MethodConfig):
    """DiffFit options.

    Attributes:
        scale_blocks: which blocks get gamma_1 / gamma_2 (see :data:`SCALE_BLOCKS`).
        scale_init: initial value of every gamma (1 = the backbone's function at init).
    """

    scale_blocks: str = "first_half"
    scale_init: float = 1.0

    def __post_init__(self) -> None:
        if self.scale_blocks not in SCALE_BLOCKS:
            raise ConfigError(
                f"difffit scale_blocks {self.scale_blocks!r} is not one of {', '.join(sorted(SCALE_BLOCKS))}; "
                "e.g. method.scale_blocks=first_half (the paper's placement)"
            )
        if isinstance(self.scale_init, bool) or not isinstance(self.scale_init, (int, float)):
            raise ConfigError(
                f"difffit scale_init must be a number (1.0 in the paper), got {self.scale_init!r}"
            )


class BranchScale(PeftModule):
    """``y = base_layer(x) * gamma``: a learnable per-channel scale on a residual branch.

    Args:
        base_layer: the branch's last op (timm's ``DropPath`` or ``Identity``), kept frozen.
        dim: channels of the branch output (its last dimension).
        init: initial value of gamma.
    """

    def __init__(self, base_layer: nn.Module, dim: int, init: float = 1.0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) * self.gamma  # (..., D) * (D,)


def _block_dim(name: str, block: nn.Module) -> int:
    norm = getattr(block, "norm1", None)
    if not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 1:
        raise MethodNotSupportedError(
            f"block {name!r} ({type(block).__name__}) has no 1-D LayerNorm 'norm1' to read its width from; "
            "difffit needs timm's standard ViT/Swin blocks"
        )
    return int(norm.normalized_shape[0])


def apply_difffit(model: nn.Module, cfg: DiffFitConfig) -> nn.Module:
    """Wrap the attention and MLP residual branches of the chosen blocks with :class:`BranchScale`.

    Args:
        model: timm VisionTransformer or SwinTransformer.
        cfg: the DiffFit options.

    Returns:
        The same model, with gamma_1 / gamma_2 inserted in place.
    """
    blocks = transformer_blocks(model)
    for index in SCALE_BLOCKS[cfg.scale_blocks](len(blocks)):
        name, block = blocks[index]
        dim = _block_dim(name, block)
        for branch in BRANCHES:
            if not isinstance(getattr(block, branch, None), nn.Module):
                raise MethodNotSupportedError(
                    f"block {name!r} ({type(block).__name__}) has no {branch!r}; difffit scales timm's "
                    "drop_path1 (attention) and drop_path2 (MLP) residual branches"
                )
            replace_module(
                model, f"{name}.{branch}", BranchScale(getattr(block, branch), dim, cfg.scale_init)
            )
    return model


class DiffFit(PeftMethod[DiffFitConfig]):
    """Biases + LayerNorm gammas + per-block residual-branch scale factors (init 1)."""

    name = "difffit"
    family = "partial"
    subfamily = "specification"
    config_cls = DiffFitConfig
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "its scale factors sit on the attention and MLP residual branches of transformer blocks; a "
        "ConvNeXt block has one convolutional branch, already scaled by its layer scale"
    }
    notes = {"layerscale": "gamma multiplies the layer-scaled branch (PETL_Vision's DiffFit on DINOv2)"}

    def apply(self, model: nn.Module) -> nn.Module:
        return apply_difffit(model, self.config)

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from unique(
            [
                *method_owned_parameters(model),  # the gammas
                *bias_parameters(model),
                *layernorm_parameters(model, biases=False),
            ]
        )
