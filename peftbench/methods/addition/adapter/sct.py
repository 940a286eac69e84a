"""SCT: salient channel tuning, a K x K linear map on the K most task-salient channels of every block.

Paper: Zhao, Wang, Zhao, Luo, Wang, Shou (IJCV 2024; arXiv:2309.08513), "SCT: A Simple Baseline for
Parameter-Efficient Fine-Tuning via Salient Channels".
Reference: showlab/SCT @ 384cecb: ``train_model_sct.py`` (``getSalientChannels``), ``models/vision_transformer_sct.py``
(``ChannelAdapter``, ``Block.forward``, ``Attention`` for ``sct_qkv``), ``run_model_sct.sh`` (``topN=96``,
``tuning_mode=sct_attn``); the same code is V-PETL Bench's SCT (``ImageClassification/models/vision_transformer_sct.py``).

* Selection (before training, on the training split only, no augmentation, the pretrained model in eval
  mode): the activations at the module's site, patch tokens only (the CLS token dropped), give each channel
  j a class-aware score: the mean over the classes present of ``||X_c[:, :, j]||_2``, the L2 norm over all
  images of class c and all their patch tokens. The K channels of largest score are selected, per block.
* Module (``position: attn``, the default): after the attention residual add,
  ``x[..., S] <- x[..., S] + W x[..., S] + b`` with W in R^{K x K} (trunc-normal std 0.02) and b = 0 at init;
  scored on the input of ``norm2``. ``mlp``: the same on the MLP output before its residual add, scored on the
  block's output (as the code does). ``qkv``: two maps on the selected q and v channels of the fused qkv
  output, each scored there. The ``scale`` / ``scaleonx`` options of the configs are unused by the ViT
  forward pass (commented out), so they are left out.

Defaults: ViT-B/16 VTAB-1k, K = 96, ``attn``: 12 x (96 x 96 + 96) = 111,744 parameters (V-PETL Bench's
"SCT 0.11M"). Ties in the score go to the lower channel index (the code's strict threshold would select fewer
than K on a tie and then fail).

Backbones. The block's two halves come from the anatomy layer (``attention_residual`` / ``mlp_residual``), so the
map sits on the residual stream between them on every transformer block: an in-block LayerScale (DINOv2, DINOv3)
stays on its branch before the add, and Eva's rotary embeddings reach the attention. Scores are taken over patch
tokens only: every prefix token (class and registers) is dropped, as the reference drops the class token (SigLIP
has none). Swin: the reference's ``models/swin_transformer_sct.py`` puts ``sct_attn`` after the attention residual
add of every Swin block, but its released selection hooks only ViT layer names, so no Swin selection is published;
here each Swin block is scored on all its tokens (no class token) and keeps K channels whatever the stage width.
``qkv`` on EVA-02's separate projections: the q map on ``q_proj``, the v map on ``v_proj``. ConvNeXt is refused:
its blocks have no attention, so neither ``sct_attn`` nor ``sct_qkv`` has a place there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, TrainingData
from peftbench.methods.layers.blocks import (
    attention_residual,
    backbone_family,
    block_sites,
    block_width,
    mlp_residual,
    replace_module,
)
from peftbench.methods.layers.bottleneck import adapter_blocks
from peftbench.methods.layers.checks import check_choice, check_positive_int, is_positive_number
from peftbench.methods.layers.selection import SelectionModule, batches, top_k_indices

POSITIONS = ("attn", "mlp", "qkv")


@dataclasses.dataclass
class SCTConfig(MethodConfig):
    """SCT options; defaults are the official ViT-B/16 VTAB-1k setting.

    Attributes:
        top_n: K, the salient channels per block (``topN``).
        position: where the channel map acts: ``attn`` (after the attention residual add, ``sct_attn``),
            ``mlp`` (on the MLP output, ``sct_mlp``) or ``qkv`` (on the q and v outputs, ``sct_qkv``).
        init_std: standard deviation of the truncated-normal weight init (biases start at 0).
    """

    top_n: int = 96
    position: str = "attn"
    init_std: float = 0.02

    def __post_init__(self) -> None:
        check_positive_int("sct", "top_n", self.top_n)
        check_choice("sct", "position", self.position, POSITIONS)
        if not is_positive_number(self.init_std):
            raise ConfigError(f"sct init_std must be a number > 0, got {self.init_std!r}; e.g. method.init_std=0.02")


class ChannelMap(nn.Module):
    """``x[..., S] += W x[..., S] + b`` for the K channels S in ``index`` (out of place)."""

    def __init__(self, k: int, init_std: float, like: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, k, dtype=like.dtype, device=like.device))
        self.bias = nn.Parameter(torch.zeros(k, dtype=like.dtype, device=like.device))
        nn.init.trunc_normal_(self.weight, std=init_std)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        picked = x.index_select(-1, index)  # (..., K)
        return x.index_add(-1, index, F.linear(picked, self.weight, self.bias))


class SCTBlock(SelectionModule):
    """A transformer block (timm ViT, Eva or Swin) with a channel map after its attention residual add (``attn``)
    or on its MLP output inside the layer scale (``mlp``)."""

    selection_buffers = ("index",)

    def __init__(self, block: nn.Module, k: int, position: str, init_std: float) -> None:
        super().__init__()
        self.base_layer = block
        self.position = position
        self.map = ChannelMap(k, init_std, next(block.parameters()))
        self.register_buffer("index", torch.arange(k, device=self.map.weight.device))  # placeholder until prepare
        self.active = True  # False while the selection reads the pretrained activations

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x, self.index)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        b = self.base_layer
        x = attention_residual(b, x, **kwargs)  # ViT / Eva (B, N, D); Swin (B, H, W, C)
        if self.position == "attn" and self.active:
            x = self._map(x)
        return mlp_residual(b, x, self._map if self.position == "mlp" and self.active else None)


QV_SLOTS = {0: "q", 2: "v"}  # the q and v slots of the logical qkv map (q | k | v)


class SCTQKV(SelectionModule):
    """A Linear of the ``qkv`` site with channel maps on K selected channels of each q / v slot it computes.

    Args:
        qkv: timm's fused ``qkv`` (q and v slots) or EVA-02's ``q_proj`` / ``v_proj`` (one slot).
        k: K.
        init_std: trunc-normal std of the maps' weights.
        offsets: slot (``q`` / ``v``) -> its first channel in this Linear's output.
        width: the width of one slot.
    """

    def __init__(self, qkv: nn.Linear, k: int, init_std: float, offsets: dict[str, int], width: int) -> None:
        super().__init__()
        self.base_layer = qkv
        self.offsets, self.width = dict(offsets), int(width)
        self.selection_buffers = tuple(f"{slot}_index" for slot in self.offsets)  # type: ignore[misc]
        for slot, offset in self.offsets.items():
            setattr(self, f"{slot}_map", ChannelMap(k, init_std, qkv.weight))
            self.register_buffer(f"{slot}_index", torch.arange(k, device=qkv.weight.device) + offset)
        self.active = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (B, N, 3D): q | k | v, or one slot (B, N, D)
        if self.active:
            for slot in self.offsets:
                out = getattr(self, f"{slot}_map")(out, getattr(self, f"{slot}_index"))
        return out


class SCT(PeftMethod[SCTConfig]):
    """Salient channel tuning: per block a K x K map on the K channels most salient for the task."""

    name = "sct"
    family = "addition"
    subfamily = "adapter"
    config_cls = SCTConfig
    backbones = ("vit", "eva", "swin")
    refusals = {
        "convnext": "SCT's channel map follows the attention residual add (sct_attn) or sits on q and v (sct_qkv), "
        "and a ConvNeXt block has no attention; the reference covers ViT and Swin",
    }
    notes = {
        "registers": "register tokens are left out of the saliency scores, as the class token",
        "layerscale": "attn: the map acts on the stream after the layer-scaled residual add; mlp: inside the layer scale",
        "map_head": "no class token: every token is scored",
        "rope": "the rotary embeddings reach the attention; the map acts after it",
        "qkv_separate": "position qkv: the q map on q_proj, the v map on v_proj",
        "swiglu": "position mlp: the map on the SwiGLU MLP's D-wide output",
    }
    looks_at_data = True
    criterion = ("class-aware channel saliency: mean over classes of the L2 norm over the class's images and patch "
                 "tokens of each channel of the pretrained activations at the module's site; top-K per block")

    def apply(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        for name, block in adapter_blocks(model, self.name, needs=("attn", "mlp")):
            width = block_width(block)
            if cfg.top_n > width:
                raise ConfigError(f"sct top_n={cfg.top_n} exceeds the {width} channels of {name}; "
                                  f"choose method.top_n <= {width}")
            if cfg.position != "qkv":
                replace_module(model, name, SCTBlock(block, cfg.top_n, cfg.position, cfg.init_std))
                continue
            for part in block_sites(model, "qkv", [(name, block)])[0].parts:
                offsets = {QV_SLOTS[s]: i * part.slot_width for i, s in enumerate(part.slots) if s in QV_SLOTS}
                if offsets:
                    replace_module(model, part.name, SCTQKV(part.layer, cfg.top_n, cfg.init_std, offsets,
                                                                 part.slot_width))
        return model

    def prepare(self, model: nn.Module, data: TrainingData) -> dict[str, Any]:
        scores = salient_channel_scores(model, data, self.config.position)
        k, selected = self.config.top_n, {}
        for name, module in _sct_modules(model):
            if isinstance(module, SCTQKV):
                selected[name] = {}
                for slot, offset in module.offsets.items():
                    index = getattr(module, f"{slot}_index")
                    index.copy_(top_k_indices(scores[f"{name}.{slot}"], k) + offset)
                    selected[name][slot] = (index - offset).tolist()
            else:
                module.index.copy_(top_k_indices(scores[name], k))
                selected[name] = module.index.tolist()
            module.selected = True
        return {"position": self.config.position, "top_n": k, "channels": selected}


def _sct_modules(model: nn.Module) -> list[tuple[str, SCTBlock | SCTQKV]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (SCTBlock, SCTQKV))]


def class_aware_saliency(sum_sq: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """SCT's channel score from per-class sums of squared activations.

    Args:
        sum_sq: ``(num_classes, C)``: for each class, the sum over its images and patch tokens of ``x_j^2``.
        counts: ``(num_classes,)`` images per class; classes without images are left out of the mean.

    Returns:
        ``(C,)``: the mean over present classes of the per-class L2 norms ``sqrt(sum_sq)``.
    """
    present = counts > 0
    return sum_sq[present].sqrt().mean(0)


@torch.no_grad()
def salient_channel_scores(model: nn.Module, data: TrainingData, position: str) -> dict[str, torch.Tensor]:
    """Score every channel at every SCT site on the un-augmented training images (method modules off).

    Returns:
        ``{site name: (C,) scores}``; ``qkv`` sites give ``<name>.q`` and ``<name>.v``.
    """
    modules = _sct_modules(model)
    # patch tokens only: ViT / Eva drop their prefix (class, registers); Swin has none
    prefix = int(getattr(model, "num_prefix_tokens", 0)) if backbone_family(model) in ("vit", "eva") else 0
    sums: dict[str, torch.Tensor] = {}
    labels: list[torch.Tensor] = []

    def add(key: str, x: torch.Tensor) -> None:
        # (B, N, C) tokens, Swin's (B, H, W, C) map, or its qkv over windows (B * windows, area, C): per image
        tokens = x.reshape(len(labels[-1]), -1, x.shape[-1])[:, prefix:]
        sq = tokens.double().square().sum(1)  # (B, C): over patch tokens
        acc = sums.setdefault(key, torch.zeros(data.num_classes, sq.shape[-1], dtype=torch.float64, device=sq.device))
        acc.index_add_(0, labels[-1].to(sq.device), sq)

    hooks = []
    for name, module in modules:
        module.active = False
        if isinstance(module, SCTQKV):
            def qkv_hook(_m, _inp, out, module=module, name=name):
                for slot, offset in module.offsets.items():
                    add(f"{name}.{slot}", out[..., offset:offset + module.width])
            hooks.append(module.base_layer.register_forward_hook(qkv_hook))
        elif position == "attn":  # the input of norm2: the stream after the attention residual add
            hooks.append(module.base_layer.norm2.register_forward_pre_hook(
                lambda _m, inp, name=name: add(name, inp[0])))
        else:  # mlp: the block's output
            hooks.append(module.register_forward_hook(lambda _m, _inp, out, name=name: add(name, out)))
    was_training = model.training
    model.to(data.device).eval()
    counts = torch.zeros(data.num_classes, dtype=torch.long)
    try:
        for images, target in batches(data.plain, data.batch_size, data.num_workers):
            labels.append(torch.as_tensor(target))
            counts += torch.bincount(labels[-1], minlength=data.num_classes)
            model(images.to(data.device))  # fp32: the reference computes the scores without autocast
    finally:
        for h in hooks:
            h.remove()
        for _, module in modules:
            module.active = True
        model.train(was_training)
    return {key: class_aware_saliency(s.cpu(), counts).float() for key, s in sums.items()}

