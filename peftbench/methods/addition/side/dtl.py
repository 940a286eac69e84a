"""DTL: disentangled transfer learning, a compact side network of low-rank maps whose running sum re-enters the later blocks.

Paper: Fu, Zhu, Wu (AAAI 2024), "DTL: Disentangled Transfer Learning for Visual Recognition" (arXiv 2312.07856).
Reference implementation followed: heekhero/DTL @ bf6c51e, ``models/vision_transformer.py`` (``LoRALinear``,
``swish``, ``VisionTransformer.forward``), ``models/swin_transformer.py`` (``BasicLayer.forward``),
``train_vit_vtab.py`` (``mark_trainable_parameters``: only the ``lora_*`` tensors and the head train) and
``train_scripts/vit/vtab/*/train_dtl.sh`` (the defaults, identical for all 19 tasks).

The compact side network (CSN): before every backbone block i >= ``read_from`` a rank-r map without bias
(``B_i A_i``, D -> r -> D) reads the block's input and adds it to a running sum h; after every block
i >= ``add_from``, ``swish(h) = h * sigmoid(beta * h)`` is added to the backbone stream (DTL+, ``fusion_size`` k > 0,
first passes it through one depthwise k x k convolution over the patch grid, shared by all blocks; prefix tokens
pass unconvolved). A is kaiming-uniform and B zero (as LoRA), so the side output is zero at init.

Where gradients flow: blocks 0 .. add_from have no trainable input, so autograd records nothing in them and keeps
none of their activations (only the maps' inputs are kept, for the A gradients); from block add_from + 1 on, the
block input carries the side output and autograd keeps those blocks' activations to backpropagate through them.

Pooling: the reference ViT averages the patch tokens and then applies the final LayerNorm (``x[:, 1:].mean(1)``,
then ``norm``) instead of timm's class token after the norm; ``pool="avg"`` (default) does the same with the frozen
pretrained norm, ``pool="token"`` keeps timm's class-token pooling. Swin and EVA-02 (timm's ``avg`` pool, then
``fc_norm``) already pool that way. A backbone without a class token to replace keeps its own pooling: SigLIP's
frozen attention-pool head reads the adapted tokens (``pool="token"`` is refused there).

Defaults (ViT-B/16, VTAB-1k): r = 2, beta = 100, maps before blocks 0-11, adds after blocks 6-11, no DWConv (DTL).
Swin (reference ``swin_transformer.py``): each stage keeps its own running sum, block indices count over all stages,
DTL+ has one DWConv per stage (a stage without an add gets no maps: they would reach nothing); its Swin-B scripts
use r = 4, read_from = 4, add_from = 14 (set them as options; add_from null would give 12).

Structure (wrap, never patch): ``model.blocks`` (Swin: each ``layers[s].blocks``) -> :class:`CompactSideNetwork`
(base_layer = the frozen blocks); ``pool="avg"`` on a class-token ViT also wraps ``model.norm`` in
:class:`PatchMeanNorm` (base_layer = the frozen final norm, applied to the mean of the patch tokens).

Other backbones: the maps are token-wise, so they read and write every token of a ViT or Eva stream (registers,
like the class token, are in the running sum; the mean pool and DTL+'s grid leave every prefix token out). Eva's
blocks sit in a one-element ``ModuleList`` holding the side network, which passes the rotary embeddings on to
them. The side output is added after the whole block, outside any in-block LayerScale. ConvNeXt is refused: the
reference (heekhero/DTL) defines the side network on the token streams of ViT and Swin blocks only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import backbone_family, replace_module
from peftbench.methods.layers.checks import check_choice, check_positive_int, is_positive_number
from peftbench.methods.layers.tokens import like_tensor

POOLS = ("avg", "token")


@dataclasses.dataclass
class DTLConfig(MethodConfig):
    """DTL options; defaults are the official ViT-B/16 VTAB-1k scripts' (36,864 parameters on ViT-B/16).

    Attributes:
        rank: r of every low-rank map (D -> r -> D, no bias).
        beta: the swish's beta, ``h * sigmoid(beta * h)`` (fixed, not trained).
        read_from: first block (0-based, counted over all blocks) whose input a map reads; every later block too.
        add_from: first block after which the side output is added to the stream; every later block too.
            null = the second half of the blocks (depth // 2: the paper's 6 on ViT-B/16).
        fusion_size: k of the depthwise k x k convolution of DTL+; 0 = DTL (none).
        pool: ``avg`` (the reference: mean of the patch tokens, then the final norm) or ``token`` (timm's CLS).
    """

    rank: int = 2
    beta: float = 100.0
    read_from: int = 0
    add_from: int | None = None
    fusion_size: int = 0
    pool: str = "avg"

    def __post_init__(self) -> None:
        check_positive_int("dtl", "rank", self.rank)
        if not is_positive_number(self.beta):
            raise ConfigError(f"dtl beta must be a number > 0, got {self.beta!r}; the paper uses 100")
        for option in ("read_from", "add_from", "fusion_size"):
            value = getattr(self, option)
            if option == "add_from" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"dtl {option} must be an integer >= 0, got {value!r}; e.g. method.{option}=0")
        if self.add_from is not None and self.read_from > self.add_from:
            raise ConfigError(
                f"dtl read_from={self.read_from} is after add_from={self.add_from}: the side output would be added "
                "before any map has read a block; set read_from <= add_from (the paper: 0 and 6)"
            )
        check_choice("dtl", "pool", self.pool, POOLS)


def swish(h: torch.Tensor, beta: float) -> torch.Tensor:
    """``h * sigmoid(beta * h)`` (the reference's activation of the side output)."""
    return h * torch.sigmoid(beta * h)


class LowRankMap(nn.Module):
    """``B A x`` with ``A: D -> r`` (kaiming-uniform, nn.Linear's default) and ``B: r -> D`` (zero), no biases."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)  # A, kaiming-uniform (a = sqrt 5) as the reference
        self.up = nn.Linear(rank, dim, bias=False)  # B
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class CompactSideNetwork(PeftModule):
    """A run of frozen blocks with DTL's maps before them and the side output added after them.

    Tokens are ``(B, N, D)`` with ``prefix`` leading tokens and a ``grid`` of patches (ViT), or ``(B, H, W, D)``
    (Swin, ``grid=None``). The running sum starts at zero for every call (every Swin stage has its own).

    Args:
        base_layer: the frozen blocks, in order.
        dim: their width D.
        reads: local indices of the blocks whose input a map reads.
        adds: local indices of the blocks after which the side output is added.
        cfg: DTL options.
        prefix: class/register tokens before the patches (ViT).
        grid: the patch grid (ViT) or None (tokens already laid out as ``B, H, W, D``).
    """

    def __init__(self, base_layer: nn.Sequential, dim: int, reads: list[int], adds: list[int], cfg: DTLConfig,
                 prefix: int = 0, grid: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.maps = nn.ModuleDict({str(i): LowRankMap(dim, cfg.rank) for i in reads})
        self.adds = frozenset(adds)
        self.beta = float(cfg.beta)
        self.prefix, self.grid = prefix, grid
        k = cfg.fusion_size
        self.fusion = (nn.Conv2d(dim, dim, k, padding="same", groups=dim, bias=False) if k and adds else None)

    def _fuse(self, s: torch.Tensor) -> torch.Tensor:
        """DTL+'s depthwise convolution over the patch grid (identity for DTL)."""
        if self.fusion is None:
            return s
        if self.grid is None:  # (B, H, W, D)
            return self.fusion(s.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        b, n, d = s.shape
        gh, gw = self.grid
        if n - self.prefix != gh * gw:
            raise RuntimeError(f"dtl fusion expects {self.prefix} + {gh}x{gw} tokens, got {n}: the input size changed")
        patches = s[:, self.prefix:].reshape(b, gh, gw, d).permute(0, 3, 1, 2)  # (B, D, gh, gw)
        fused = self.fusion(patches).permute(0, 2, 3, 1).reshape(b, gh * gw, d)
        return torch.cat([s[:, : self.prefix], fused], dim=1)  # (B, N, D)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        side: torch.Tensor | None = None  # the running sum h, shaped like x
        for i, block in enumerate(self.base_layer):
            key = str(i)
            if key in self.maps:
                read = self.maps[key](x)
                side = read if side is None else side + read
            x = block(x, **kwargs)  # Eva: rotary embeddings
            if i in self.adds and side is not None:
                x = x + self._fuse(swish(side, self.beta))  # the side output re-enters the stream
        return x


class PatchMeanNorm(PeftModule):
    """The reference's pooling on a class-token ViT: the final norm of the mean of the patch tokens.

    Returns ``(B, 1, D)`` so that timm's class-token pooling (``x[:, 0]``) reads it; ``base_layer`` is the frozen
    pretrained final norm.
    """

    def __init__(self, base_layer: nn.Module, prefix: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.prefix = prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x[:, self.prefix:].mean(dim=1, keepdim=True))  # (B, N, D) -> (B, 1, D)


def _add_from(cfg: DTLConfig, depth: int) -> int:
    """The first block with an add: ``add_from``, or the second half of the blocks when it is null."""
    add_from = depth // 2 if cfg.add_from is None else cfg.add_from
    if add_from >= depth or cfg.read_from > add_from:
        raise ConfigError(
            f"dtl add_from={add_from} (read_from={cfg.read_from}) does not fit this backbone's {depth} blocks: "
            f"need read_from <= add_from <= {depth - 1}; null puts the adds on the second half (the paper: 6 of 12)"
        )
    return add_from


def _apply_tokens(model: nn.Module, cfg: DTLConfig) -> None:
    """DTL on a timm ViT or Eva (one token sequence through every block)."""
    blocks = model.blocks
    depth, prefix = len(blocks), int(getattr(model, "num_prefix_tokens", 0))
    add_from = _add_from(cfg, depth)
    pool = "map" if getattr(model, "attn_pool", None) is not None else getattr(model, "global_pool", None)
    if pool not in ("token", "avg", "map") or (cfg.pool == "token" and pool != "token"):
        raise ConfigError(
            f"dtl pool={cfg.pool!r} needs a backbone whose head pools the class token (timm global_pool 'token'); "
            f"this one pools with {pool!r}. Use method.pool=avg (the reference's pooling), or a class-token backbone "
            "such as vit_b16_in21k"
        )
    gh, gw = model.patch_embed.grid_size
    grid = (int(gh), int(gw)) if cfg.fusion_size else None
    side = CompactSideNetwork(blocks, model.embed_dim, list(range(cfg.read_from, depth)),
                              list(range(add_from, depth)), cfg, prefix, grid)
    like = like_tensor(model)
    side = side.to(dtype=like.dtype, device=like.device)
    # Eva iterates its blocks, passing the rotary embeddings to each: one element holding the side network
    replace_module(model, "blocks", nn.ModuleList([side]) if backbone_family(model) == "eva" else side)
    if cfg.pool == "avg" and pool == "token":  # 'avg' already pools the patches before fc_norm; 'map' is kept
        replace_module(model, "norm", PatchMeanNorm(model.norm, prefix))


def _apply_swin(model: nn.Module, cfg: DTLConfig) -> None:
    if cfg.pool != "avg":
        raise ConfigError("dtl pool='token' is for class-token ViTs; Swin has no class token (use pool=avg)")
    add_from = _add_from(cfg, sum(len(stage.blocks) for stage in model.layers))
    start = 0
    for s, stage in enumerate(model.layers):
        n = len(stage.blocks)
        reads = [i - start for i in range(max(start, cfg.read_from), start + n)]
        adds = [i - start for i in range(max(start, add_from), start + n)]
        if adds:  # the running sum restarts per stage: maps in a stage without an add would reach nothing
            like = stage.blocks[0].attn.qkv.weight
            side = CompactSideNetwork(stage.blocks, stage.blocks[0].attn.qkv.in_features, reads, adds, cfg)
            replace_module(model, f"layers.{s}.blocks", side.to(dtype=like.dtype, device=like.device))
        start += n


class DTL(PeftMethod[DTLConfig]):
    """DTL: rank-2 side maps before every block, their swish-ed running sum added after blocks 6-11."""

    name = "dtl"
    family = "addition"
    subfamily = "side"
    config_cls = DTLConfig
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "DTL's compact side network reads and writes the token stream of transformer blocks (the "
        "reference defines it for ViT and Swin); a ConvNeXt's convolutional stages have no such placement",
    }
    notes = {
        "registers": "register tokens are in the running sum; the mean pool and DTL+'s grid leave them out",
        "layerscale": "the side output is added after the block, outside its layer scale",
        "map_head": "no class token: the frozen attention-pool head reads the adapted tokens (pool=token refused)",
        "avg_pool": "timm's patch average + fc_norm is the reference's pooling already",
        "rope": "the side network passes the rotary embeddings on to the frozen blocks",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        fam = self.check_backbone(model)
        (_apply_swin if fam == "swin" else _apply_tokens)(model, self.config)
        return model
