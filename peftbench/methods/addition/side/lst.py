"""LST: ladder side-tuning, a small side transformer fed by the frozen backbone, trained without backpropagating through it.

Paper: Sung, Cho, Bansal (NeurIPS 2022), "LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer
Learning". Reference implementation followed: ylsung/Ladder-Side-Tuning (``CLIP-ViL/src/lxrt/modeling.py``
``construct_side_network`` / ``merge_backbone_to_side`` for the encoder ladder, ``seq2seq/third_party/models/t5/
modeling_bottleneck_t5.py`` for the side network's final LayerNorm, ``seq2seq/scripts/ladder_side_tuning_base.sh``
and ``training_args.py`` for the defaults).

The side network is the backbone shrunk by the reduction factor r: width d = D / r, the backbone's number of
heads and MLP ratio (timm ``Block``s of width d). Its input is the embedding output down-projected
(``first_downsample``, D -> d). Before side block i, the output of backbone block i comes in through a ladder:
``side = g_i * side + (1 - g_i) * down_i(h_i)`` with ``g_i = sigmoid(alpha_i / T)``, alpha_i learned (init 0,
T = 0.1). After the last side block, a LayerNorm of width d and an up-projection d -> D give the features the
classifier reads; the backbone's own final output and final norm are not used.

Why LST and not DTL (Fu et al., AAAI 2024): DTL adds its side output back into the backbone stream after
blocks 6-11 (heekhero/DTL ``models/vision_transformer.py``: ``x = x + fusion_residuals``), so its gradients
pass through those backbone blocks and their activations must be kept. In LST the backbone's outputs only
enter the side network through the ladders, so the backbone can run entirely under ``torch.no_grad()``:
no backbone activation is stored for backward, the memory saving that defines the method. Only the ladder
inputs (one B x N x D tensor per block, needed for the down-projections' weight gradients) are kept.

Defaults (ViT-B/16 on VTAB-1k): r = 8 (the paper's and the GLUE script's), a side block and a ladder at every
one of the 12 blocks, biases on the down/up projections (``add_bias_sampling True`` in the official script),
learnable gates. Count: side blocks 12 * (12 d^2 + 13 d) with d = 96, first downsample + 12 ladders
13 * (D d + d), upsample (d D + D), final LayerNorm 2d, 12 gates: 2,376,492 = the "2.38M" of LST in V-PETL Bench's
VTAB-1k table.

Deliberate deviations: the side network starts from random init (timm ``Block`` init), which is the official
CLIP-ViL code's default (``load_side_pretrained_weights=""``); the paper's GLUE/VL-T5 runs instead initialise it
from the backbone, structurally pruned by Fisher information (``fisher-v2``), which needs task data and a
backward pass before training and is not implemented. ViT and Eva: Swin's stages change width and token count
(patch merging), which LST's ladder does not define; Swin raises, as ConvNeXt (no token sequence).

Structure (wrap, never patch): ``model.blocks`` -> :class:`LadderSideNetwork` (base_layer = the frozen blocks,
run under ``torch.no_grad()``; returns the side hidden states, B x N x d), ``model.norm`` -> :class:`SideOutput`
(the side network's final LayerNorm + up-projection take the place of the backbone's final norm, which is kept
as its frozen, unused ``base_layer``). Pooling and the timm head are unchanged, so the harness's head is the
classifier.

Other backbones: the ladders read every block's output whatever its inside (registers, LayerScale, CLIP's
``norm_pre`` before the first block all stay in the frozen path). On Eva the blocks sit in a one-element
``ModuleList`` holding the :class:`LadderSideNetwork`, which passes Eva's rotary embeddings on to the frozen
blocks; the side blocks are plain pre-norm timm ``Block`` s (GELU MLP with the backbone's hidden-to-width ratio,
8/3 on EVA-02's SwiGLU; no rotary embeddings), a stated choice: LST's side network is the backbone shrunk, and
the reference's side network is a plain transformer of the backbone's type. SigLIP's attention-pool head and
EVA-02's average pool + ``fc_norm`` stay frozen and pool the side output, as the class token does on ViT-B/16.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, PeftModule
from peftbench.methods.layers.blocks import backbone_family, block_sites, replace_module, transformer_blocks
from peftbench.methods.layers.tokens import like_tensor


@dataclasses.dataclass
class LSTConfig(MethodConfig):
    """Ladder side-tuning options; defaults give the 2.38M side network of the VTAB-1k tables on ViT-B/16.

    Attributes:
        reduction_factor: r, side width d = D / r (must divide D and leave d divisible by the heads).
        side_layers: indices of the backbone blocks that get a ladder and a side block; None = every block.
        gate_alpha: initial gate logit alpha (gate = sigmoid(alpha / T); 0 -> an even mix).
        gate_temperature: T.
        bias: biases on the down- and up-projections.
    """

    reduction_factor: int = 8
    side_layers: list[int] | None = None
    gate_alpha: float = 0.0
    gate_temperature: float = 0.1
    bias: bool = True

    def __post_init__(self) -> None:
        r = self.reduction_factor
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ConfigError(f"lst reduction_factor must be an integer >= 1, got {r!r}; the paper uses 8")
        if self.side_layers is not None:
            layers = list(self.side_layers)
            if not layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers):
                raise ConfigError(
                    f"lst side_layers must be null (every block) or a non-empty list of block indices >= 0, got {layers!r}"
                )
            if len(set(layers)) != len(layers):
                raise ConfigError(f"lst side_layers has duplicates: {layers!r}")
        if not self.gate_temperature > 0:
            raise ConfigError(f"lst gate_temperature must be > 0, got {self.gate_temperature!r} (paper: 0.1)")


class LadderSideNetwork(PeftModule):
    """Runs the frozen blocks without autograd and the side transformer beside them.

    Input: the embedding output ``(B, N, D)``. Output: the side network's hidden states ``(B, N, d)``.
    """

    def __init__(
        self,
        base_layer: nn.Sequential,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        layers: list[int],
        cfg: LSTConfig,
    ) -> None:
        super().__init__()
        self.base_layer = base_layer
        side = dim // cfg.reduction_factor
        self.layers = sorted(layers)
        self.temperature = cfg.gate_temperature
        self.first_downsample = nn.Linear(dim, side, bias=cfg.bias)
        self.downsamples = nn.ModuleDict({str(i): nn.Linear(dim, side, bias=cfg.bias) for i in self.layers})
        self.gates = nn.Parameter(torch.full((len(self.layers),), float(cfg.gate_alpha)))  # (S,) gate logits
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.side_blocks = nn.ModuleDict(
            {
                str(i): Block(side, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, norm_layer=norm)
                for i in self.layers
            }
        )

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        x = x.detach()  # (B, N, D): nothing flows back into the embeddings either
        side = self.first_downsample(x)  # (B, N, d)
        gates = torch.sigmoid(self.gates / self.temperature)  # (S,)
        slot = {i: s for s, i in enumerate(self.layers)}
        for i, block in enumerate(self.base_layer):
            with torch.no_grad():  # the backbone keeps no activations for backward
                x = block(x, **kwargs)  # (B, N, D); Eva: rotary embeddings
            if i in slot:
                g = gates[slot[i]]
                side = g * side + (1 - g) * self.downsamples[str(i)](x)  # ladder: mix in backbone block i
                side = self.side_blocks[str(i)](side)  # (B, N, d)
        return side


class SideOutput(PeftModule):
    """The side network's final LayerNorm and up-projection, in place of the backbone's final norm.

    ``base_layer`` (the backbone's final norm) is kept frozen and unused: LST discards the backbone's output.
    """

    def __init__(self, base_layer: nn.Module, side: int, dim: int, bias: bool) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.side_norm = nn.LayerNorm(side, eps=1e-6)
        self.upsample = nn.Linear(side, dim, bias=bias)

    def forward(self, side: torch.Tensor) -> torch.Tensor:
        return self.upsample(self.side_norm(side))  # (B, N, d) -> (B, N, D)


def apply_lst(model: nn.Module, cfg: LSTConfig) -> nn.Module:
    """Attach a ladder side network to a timm ViT or Eva in place.

    Args:
        model: timm VisionTransformer or Eva.
        cfg: LST options.

    Returns:
        The same model; its forward now runs the backbone without autograd and classifies the side output.
    """
    blocks = model.blocks
    dim, depth = model.embed_dim, len(blocks)
    first = transformer_blocks(model)[:1]
    qkv, mlp_in = block_sites(model, "qkv", first)[0], block_sites(model, "mlp_in", first)[0]
    num_heads = blocks[0].attn.num_heads
    qkv_bias = any(p.layer.bias is not None for p in qkv.parts)
    mlp_ratio = mlp_in.parts[0].layer.out_features / dim  # SwiGLU: one branch's hidden width
    r = cfg.reduction_factor
    if dim % r or (dim // r) % num_heads:
        valid = [f for f in range(1, dim + 1) if dim % f == 0 and (dim // f) % num_heads == 0]
        raise ConfigError(
            f"lst reduction_factor={r} does not fit this backbone (width {dim}, {num_heads} heads): the side width "
            f"D / r must be an integer divisible by the heads; valid factors: {valid}"
        )
    layers = list(range(depth)) if cfg.side_layers is None else list(cfg.side_layers)
    if max(layers) >= depth:
        raise ConfigError(
            f"lst side_layers {layers} name blocks beyond this backbone's {depth} (valid: 0..{depth - 1})"
        )
    like = like_tensor(model)
    side = LadderSideNetwork(blocks, dim, num_heads, mlp_ratio, qkv_bias, layers, cfg)
    side = side.to(dtype=like.dtype, device=like.device)
    out = SideOutput(model.norm, dim // r, dim, cfg.bias)
    # Eva iterates its blocks, passing the rotary embeddings to each: one element holding the side network
    replace_module(model, "blocks", nn.ModuleList([side]) if backbone_family(model) == "eva" else side)
    replace_module(model, "norm", out.to(dtype=like.dtype, device=like.device))
    return model


class LadderSideTuning(PeftMethod[LSTConfig]):
    """LST: side transformer of width D / 8 fed by ladders from every block; no backward through the backbone."""

    name = "lst"
    family = "addition"
    subfamily = "side"
    config_cls = LSTConfig
    backbones = ("vit", "eva")
    refusals = {
        "swin": "Swin's stages change width and token count (patch merging), which LST's ladders do not define",
        "convnext": "LST's side network is a transformer fed token by token from every block; a ConvNeXt has "
        "no token sequence",
    }
    notes = {
        "rope": "rotary embeddings pass to the frozen blocks; the side blocks are plain ViT blocks without them",
        "swiglu": "side blocks use a GELU MLP at the backbone's hidden ratio (8/3)",
        "map_head": "the frozen attention pool reads the side network's up-projected output",
        "avg_pool": "the frozen average pool + fc_norm read the side network's up-projected output",
    }

    def apply(self, model: nn.Module) -> nn.Module:
        self.check_backbone(model)
        return apply_lst(model, self.config)
