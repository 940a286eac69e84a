"""HST: hierarchical side-tuning, a four-stage convolutional-transformer side network fed by a frozen ViT.

Paper: Lin, Wu, Yang, Huang, Huang, Jin (2023), "Hierarchical Side-Tuning for Vision Transformers" (arXiv 2310.05393).
Reference implementation followed: AFeng-x/HST @ ee89571, ``models/vit_hsn.py`` (``ViT_HSN``: ``__init__`` defaults,
``freeze_vit``, ``forward_features``, ``forward``) and ``models/vit_custom_modules.py`` (``Head``,
``OverlapPatchEmbed``, ``M_Block``, ``M_C_Attention``, ``Mlp_LE``), with ``train.py`` and
``train_scripts/vit/{vtab,fgvc}/*`` for how it is trained.

Backbone side: before block i a learnable meta token m_i (one per block) joins the sequence; after the block, its
output (the "meta register") and the block's patch tokens are kept and the token is dropped again. The reference
puts it in front of the class token; here it sits right after the prefix tokens (class, registers), which is the
same function on a ViT (attention without position-dependent terms is order-free) and lets Eva's rotary
embeddings skip it as they skip the prefix. The
backbone's final norm and class token are unused. Side network (the HSN): a conv stem on the image (3x3/2 conv,
BatchNorm, ReLU, 2x2/2 conv, LayerNorm: H/4), then stages of widths (32, 48, 64, 72), each after the first opened
by a 3x3/2 conv + LayerNorm (H/8, H/16, H/32). Stage s pairs one side block with each backbone block of its quarter
(blocks 0-2, 3-5, 6-8, 9-11): the block's patch features, brought to the stage's grid (bilinear) and width (the
stage's bridge, a Linear D -> d_s), are added to the side stream after a cross-attention whose keys/values are
two tokens: the bridged, LayerNormed meta register and the mean of the bridged features; then an MLP (ratio 4).
Each stage ends in a LayerNorm. The classifier reads the mean of the last stage's tokens through a BatchNorm
without affine parameters: the task head is a Linear from d_last (72), not from D.

Also trained, as the reference's ``freeze_vit``: the LayerNorms inside the backbone blocks (``tune_block_norms``).
With the meta tokens entering every block, gradients flow back through the whole backbone: HST saves no backward
pass (unlike LST). The bridge is applied before the bilinear resize (the reference resizes the D-channel map first);
both are linear with weights summing to one, so the result is the same up to float rounding.

Count on ViT-B/16 (head excluded): stem 5,120, stage embeddings 83,496, side blocks 462,312, stage norms 432,
bridges 166,104, meta-register norms 1,296, meta tokens 9,216, backbone block norms 36,864: 764,840. The head is
73 C (72 C + C). V-PETL Bench prints 0.78M on VTAB-1k and FGVC (the paper's abstract too); the YAML says how that
arises.

Structure (wrap, never patch): ``model.patch_embed`` -> :class:`ImageTap` (hands the image to the side network for
this forward), ``model.blocks`` -> :class:`HierarchicalSideNetwork` (base_layer = the blocks; returns the last
stage's tokens), ``model.norm`` -> :class:`SidePool` (mean + BatchNorm, base_layer = the unused final norm),
``model.head`` -> a fresh Linear(d_last, C), initialised as the reference's.

Other backbones. The classifier reads the side network's pooled features whatever the backbone's head pools:
:class:`SidePool` repeats the pooled vector over the prefix positions and one patch position, so a class-token
pool, a patch average (EVA-02) and SigLIP's attention pool (wrapped by :class:`PooledTokenOnly`, frozen and
unused) all pass it on unchanged; a post-pool ``fc_norm`` (EVA-02) is bypassed (:class:`Unused`) as the final
norm is. Registers are prefix tokens: neither meta register nor patch feature. CLIP's ``norm_pre`` runs before
the blocks and stays frozen. Eva: each frozen attention gets the meta token without a rotary position
(:class:`~peftbench.methods.layers.tokens.RotaryFreeTokens`), the blocks sit in a one-element ``ModuleList`` that
passes the rotary embeddings on, and the LayerNorms trained inside the blocks include SwiGLU's inner norm
(EVA-02); the side blocks' MLP ratio and q/k/v bias follow the backbone's (one SwiGLU branch: 8/3), as the
reference passes its ViT's ``mlp_ratio`` and ``qkv_bias`` to the side network. Swin and ConvNeXt are refused:
the meta tokens need one global token sequence through every block (Swin attends within shifted windows, on a
grid that shrinks stage by stage; ConvNeXt has no tokens).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule, method_owned_parameters
from peftbench.methods.layers.blocks import backbone_family, block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.checks import check_positive_int
from peftbench.methods.layers.select import layernorm_parameters, unique
from peftbench.methods.layers.tokens import RotaryFreeTokens, like_tensor


@dataclasses.dataclass
class HSTConfig(MethodConfig):
    """HST options; defaults are the reference's ``ViT_HSN`` for ViT-B/16 (764,840 parameters besides the head).

    Attributes:
        dims: width of each side stage (the first stage works at a quarter of the image resolution).
        heads: attention heads of each stage's side blocks.
        stage_ends: index of the last backbone block feeding each stage; null = equal parts, rounded down (the
            paper's quarters [2, 5, 8, 11] on 12 blocks).
        meta_tokens: meta tokens put in front of each block's input.
        tune_block_norms: also train the LayerNorms inside the backbone blocks (the reference does).
    """

    dims: list[int] = dataclasses.field(default_factory=lambda: [32, 48, 64, 72])
    heads: list[int] = dataclasses.field(default_factory=lambda: [2, 4, 8, 12])
    stage_ends: list[int] | None = None
    meta_tokens: int = 1
    tune_block_norms: bool = True

    def __post_init__(self) -> None:
        dims, heads = list(self.dims), list(self.heads)
        if not dims or len(heads) != len(dims):
            raise ConfigError(f"hst dims and heads must be non-empty lists of equal length, got {dims} and {heads}")
        for d, h in zip(dims, heads, strict=True):
            check_positive_int("hst", "dims", d)
            check_positive_int("hst", "heads", h)
            if d % h:
                raise ConfigError(f"hst stage width {d} is not divisible by its {h} heads; the paper: dims "
                                  "[32, 48, 64, 72], heads [2, 4, 8, 12]")
        if self.stage_ends is not None:
            ends = list(self.stage_ends)
            ints = all(not isinstance(e, bool) and isinstance(e, int) for e in ends)
            rising = ints and all(b > a for a, b in zip(ends[:-1], ends[1:], strict=True))
            if not rising or len(ends) != len(dims) or ends[0] < 0:
                raise ConfigError(f"hst stage_ends must be null or {len(dims)} increasing block indices (one per "
                                  f"stage, the last = the last block), got {ends!r}; the paper: [2, 5, 8, 11]")
        check_positive_int("hst", "meta_tokens", self.meta_tokens)


def _init_linear(layer: nn.Linear) -> None:
    nn.init.trunc_normal_(layer.weight, std=0.02, a=-2.0, b=2.0)  # timm's trunc_normal_(std=.02), as the reference
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _init_conv(conv: nn.Conv2d) -> None:
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _linear(i: int, o: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(i, o, bias=bias)
    _init_linear(layer)
    return layer


class SideEmbed(nn.Module):
    """A stage's entrance: the stem (stage 0: conv 3x3/2 no bias, BatchNorm, ReLU, conv 2x2/2) or a 3x3/2 conv,
    then a LayerNorm. ``(B, C, H, W) -> (B, h w, d)`` and the new grid."""

    def __init__(self, in_chans: int, dim: int, stem: bool) -> None:
        super().__init__()
        if stem:
            self.proj = nn.Sequential(nn.Conv2d(in_chans, dim, 3, 2, padding=1, bias=False), nn.BatchNorm2d(dim),
                                      nn.ReLU(inplace=True), nn.Conv2d(dim, dim, 2, 2))
        else:
            self.proj = nn.Sequential(nn.Conv2d(in_chans, dim, 3, 2, padding=1))
        for m in self.proj:
            if isinstance(m, nn.Conv2d):
                _init_conv(m)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)  # (B, d, h, w)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), (h, w)


class SideBlock(nn.Module):
    """The reference's ``M_Block``: cross-attention to the two register tokens, + the backbone feature, MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.q, self.k, self.v = (_linear(dim, dim, qkv_bias) for _ in range(3))
        self.proj = _linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(_linear(dim, hidden), nn.GELU(), _linear(hidden, dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _attend(self, x: torch.Tensor, registers: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q(x).reshape(b, n, self.heads, -1).transpose(1, 2)  # (B, h, n, d/h)
        k = self.k(registers).reshape(b, -1, self.heads, d // self.heads).transpose(1, 2)  # (B, h, 2, d/h)
        v = self.v(registers).reshape(b, -1, self.heads, d // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d/h)) v
        return self.proj(out.transpose(1, 2).reshape(b, n, d))

    def forward(self, x: torch.Tensor, registers: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attend(self.norm1(x), registers))
        x = x + feature  # the backbone block's bridged patch features
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SideStage(nn.Module):
    """One HSN stage: entrance, one side block per backbone block of the stage, final LayerNorm."""

    def __init__(self, in_chans: int, dim: int, heads: int, depth: int, stem: bool, mlp_ratio: float,
                 qkv_bias: bool, drop_paths: list[float]) -> None:
        super().__init__()
        self.embed = SideEmbed(in_chans, dim, stem)
        self.blocks = nn.ModuleList(SideBlock(dim, heads, mlp_ratio, qkv_bias, p) for p in drop_paths[:depth])
        self.norm = nn.LayerNorm(dim, eps=1e-6)


class _ImageSlot:
    """The image of the current forward, handed from :class:`ImageTap` to :class:`HierarchicalSideNetwork`.

    A plain object shared by the two wrappers (not a module: it holds no state to save); emptied when read, so no
    image outlives its forward.
    """

    def __init__(self) -> None:
        self.image: torch.Tensor | None = None

    def take(self) -> torch.Tensor:
        image, self.image = self.image, None
        if image is None:
            raise RuntimeError("hst: the side network needs the image; run the whole model (patch_embed first)")
        return image


class ImageTap(PeftModule):
    """The frozen patch embedding, passing the image on to the side network's stem."""

    def __init__(self, base_layer: nn.Module, slot: _ImageSlot) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.slot = slot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.slot.image = x  # (B, 3, H, W)
        return self.base_layer(x)


class HierarchicalSideNetwork(PeftModule):
    """The frozen blocks with a meta token in front of each, and the HSN that reads them.

    Input: the embedded tokens ``(B, N, D)``. Output: the last stage's tokens ``(B, h w, d_last)``.
    """

    def __init__(self, base_layer: nn.Sequential, slot: _ImageSlot, dim: int, prefix: int, grid: tuple[int, int],
                 in_chans: int, ends: list[int], cfg: HSTConfig, mlp_ratio: float, qkv_bias: bool,
                 drop_path: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.slot = slot
        self.prefix, self.grid, self.meta_count = prefix, grid, cfg.meta_tokens
        depth = len(base_layer)
        starts = [0] + [e + 1 for e in ends[:-1]]
        self.stage_of = [next(s for s, e in enumerate(ends) if i <= e) for i in range(depth)]
        self.meta = nn.Parameter(torch.empty(depth, cfg.meta_tokens, dim))  # (L, M, D)
        for i in range(depth):
            nn.init.xavier_uniform_(self.meta.data[i : i + 1])  # as the reference's (1, M, D) tensors
        self.bridges = nn.ModuleList(_linear(dim, d) for d in cfg.dims)
        self.register_norms = nn.ModuleList(nn.LayerNorm(cfg.dims[self.stage_of[i]]) for i in range(depth))
        sizes = [e - s + 1 for s, e in zip(starts, ends, strict=True)]
        rates = torch.linspace(0, drop_path, sum(sizes)).tolist()  # the reference's side stochastic-depth rule
        self.stages = nn.ModuleList(
            SideStage(in_chans if s == 0 else cfg.dims[s - 1], d, h, n, s == 0, mlp_ratio, qkv_bias,
                      rates[sum(sizes[:s]):])
            for s, (d, h, n) in enumerate(zip(cfg.dims, cfg.heads, sizes, strict=True))
        )
        self.starts = starts

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        image = self.slot.take()
        b, m, p = x.shape[0], self.meta_count, self.prefix
        gh, gw = self.grid
        registers, features = [], []
        for i, block in enumerate(self.base_layer):
            x = torch.cat([x[:, :p], self.meta[i].expand(b, -1, -1), x[:, p:]], dim=1)  # (B, P + M + N, D)
            x = block(x, **kwargs)  # Eva: rotary embeddings (none for the meta tokens)
            registers.append(x[:, p : p + m])
            features.append(x[:, p + m :])  # the patch tokens, (B, gh gw, D)
            x = torch.cat([x[:, :p], x[:, p + m :]], dim=1)
        if features[0].shape[1] != gh * gw:
            raise RuntimeError(f"hst expects a {gh}x{gw} patch grid, got {features[0].shape[1]} tokens")
        side = image
        for s, stage in enumerate(self.stages):
            side, (h, w) = stage.embed(side)  # (B, h w, d)
            bridge = self.bridges[s]
            for j, side_block in enumerate(stage.blocks):
                i = self.starts[s] + j
                feat = bridge(features[i]).transpose(1, 2).reshape(b, -1, gh, gw)  # (B, d, gh, gw)
                feat = F.interpolate(feat, size=(h, w), mode="bilinear", align_corners=False)
                feat = feat.flatten(2).transpose(1, 2)  # (B, h w, d)
                tokens = torch.cat([self.register_norms[i](bridge(registers[i])), feat.mean(1, keepdim=True)], 1)
                side = side_block(side, tokens, feat)
            side = stage.norm(side)
            if s < len(self.stages) - 1:
                side = side.transpose(1, 2).reshape(b, -1, h, w)  # (B, d, h, w) for the next entrance
        return side


class SidePool(PeftModule):
    """Mean of the last stage's tokens through a BatchNorm without affine parameters; ``base_layer`` is the
    backbone's final norm, frozen and unused.

    Returns ``(B, P + 1, d)``: the pooled vector at the ``P`` prefix positions and one patch position, so the
    backbone's own pooling (class token ``x[:, 0]``, the mean of ``x[:, P:]``, an attention pool reading one token)
    hands exactly that vector to the classifier.
    """

    def __init__(self, base_layer: nn.Module, dim: int, prefix: int) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.positions = int(prefix) + 1

    def forward(self, side: torch.Tensor) -> torch.Tensor:
        pooled = self.bn(side.mean(dim=1))  # (B, n, d) -> (B, d)
        return pooled.unsqueeze(1).expand(-1, self.positions, -1)  # (B, P + 1, d)


class PooledTokenOnly(PeftModule):
    """In place of an attention-pool head (SigLIP's MAP, frozen and unused): the side network's pooled vector."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]  # (B, P + 1, d) copies of the pooled vector -> (B, d)


class Unused(PeftModule):
    """A frozen module the side network's features bypass (EVA-02's ``fc_norm``: the head reads the BatchNorm)."""

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _stage_ends(cfg: HSTConfig, depth: int) -> list[int]:
    stages = len(cfg.dims)
    if cfg.stage_ends is not None:
        ends = list(cfg.stage_ends)
        if ends[-1] != depth - 1:
            raise ConfigError(f"hst stage_ends {ends} must end at this backbone's last block ({depth - 1})")
        return ends
    if depth < stages:
        raise ConfigError(f"hst needs a backbone block per side stage: {depth} blocks, {stages} stages; use fewer "
                          "method.dims / method.heads")
    return [(s + 1) * depth // stages - 1 for s in range(stages)]


def apply_hst(model: nn.Module, cfg: HSTConfig) -> nn.Module:
    """Attach the hierarchical side network to a timm ViT or Eva in place (see the module docstring)."""
    blocks = model.blocks
    dim, depth, prefix = model.embed_dim, len(blocks), int(model.num_prefix_tokens)
    ends = _stage_ends(cfg, depth)
    first = transformer_blocks(model)[:1]
    qkv, mlp_in = block_sites(model, "qkv", first)[0], block_sites(model, "mlp_in", first)[0]
    eva = backbone_family(model) == "eva"
    if eva and getattr(model, "rope", None) is not None:  # the meta tokens get no rotary position
        for name, block in transformer_blocks(model):
            replace_module(model, f"{name}.attn", RotaryFreeTokens(block.attn, "after_prefix"))
    slot = _ImageSlot()
    gh, gw = model.patch_embed.grid_size
    side = HierarchicalSideNetwork(
        blocks, slot, dim, prefix, (int(gh), int(gw)), model.patch_embed.proj.in_channels, ends, cfg,
        mlp_in.parts[0].layer.out_features / dim, any(p.layer.bias is not None for p in qkv.parts),
        float(getattr(blocks[-1].drop_path1, "drop_prob", 0.0)),
    )
    like = like_tensor(model)
    factory = {"dtype": like.dtype, "device": like.device}
    num_classes = model.get_classifier().out_features
    replace_module(model, "patch_embed", ImageTap(model.patch_embed, slot))
    side = side.to(**factory)
    # Eva iterates its blocks, passing the rotary embeddings to each: one element holding the side network
    replace_module(model, "blocks", nn.ModuleList([side]) if eva else side)
    replace_module(model, "norm", SidePool(model.norm, cfg.dims[-1], prefix).to(**factory))
    if isinstance(getattr(model, "attn_pool", None), nn.Module):
        replace_module(model, "attn_pool", PooledTokenOnly(model.attn_pool))
    if not isinstance(getattr(model, "fc_norm", nn.Identity()), nn.Identity):
        replace_module(model, "fc_norm", Unused(model.fc_norm))
    replace_module(model, "head", _linear(cfg.dims[-1], num_classes).to(**factory))
    return model


def side_network(model: nn.Module) -> HierarchicalSideNetwork | None:
    """The model's :class:`HierarchicalSideNetwork` (ViT: ``model.blocks``; Eva: ``model.blocks[0]``), if any."""
    return next((m for m in model.modules() if isinstance(m, HierarchicalSideNetwork)), None)


class HST(PeftMethod[HSTConfig]):
    """HST: a 4-stage side network (widths 32-72) reading meta registers and features of every ViT block."""

    name = "hst"
    family = "addition"
    subfamily = "side"
    config_cls = HSTConfig
    backbones = ("vit", "eva")
    refusals = {
        "swin": "HST's meta tokens join one global token sequence through every block, and its side network reads "
        "one patch grid; Swin attends within shifted windows on a grid that shrinks stage by stage",
        "convnext": "HST's meta tokens join the token sequence of every transformer block; a ConvNeXt has no tokens",
    }
    notes = {
        "registers": "registers are prefix tokens: neither meta register nor patch feature",
        "layerscale": "the block's LayerScale is frozen; its LayerNorms train",
        "norm_pre": "norm_pre runs before the blocks and stays frozen",
        "map_head": "the frozen attention pool is bypassed: the head reads the side network's pooled features",
        "avg_pool": "the patch average and fc_norm are bypassed: the head reads the side network's pooled features",
        "rope": "the meta tokens get no rotary position, as the prefix tokens",
        "swiglu": "SwiGLU's inner LayerNorm trains with the block norms; side MLP ratio 8/3, the backbone's",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        self.check_backbone(model)
        return apply_hst(model, self.config)

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """The side network and meta tokens, and (``tune_block_norms``) the LayerNorms in the backbone blocks."""
        own = list(method_owned_parameters(model))
        side = side_network(model)
        norms = layernorm_parameters(side.base_layer) if self.config.tune_block_norms and side is not None else []
        yield from unique(own + norms)
