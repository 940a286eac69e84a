"""GPS: gradient-based parameter selection, the K input connections of every neuron with the largest gradient.

Paper: Zhang, Zhang, Gao, Zhang, Shutova, Zhou, Zhang (CVPR 2024; arXiv:2312.10136), "Gradient-based Parameter
Selection for Efficient Fine-Tuning".
Reference: FightingFighting/GPS @ 72e0c31: ``train_gps.py`` (``calculate_gradient``, ``create_dataload``),
``utils/pruning.py`` (``prune_by_percentile_gradient_perCell``), ``utils/cuda.py`` (the gradient mask),
``utils/loss_utils.py`` (``SupConLoss``), ``data/transforms_factory.py`` (``transforms_contrastaug_train``),
``train_scripts/vit/{vtab,fgvc}/*/train_gps.sh`` (per-task ``--times_para``, lr, batch size, drop path).

* Selection (before training, on the training split only): the pretrained model in training mode, every batch
  of the training split (shuffled, the partial last batch dropped) in two random views (random resized crop
  0.08-1, flip, colour jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale p 0.2), the supervised contrastive loss
  (temperature 0.07, no projection head) on the pooled pre-logits features; the gradients of all batches are
  summed (one backward per batch, never zeroed). For every weight of a Linear / Conv layer outside the head
  (the patch-embedding kernel read as ``(out, in * kh * kw)``), each output neuron (row) keeps the K input
  connections with the largest ``|gradient|``.
* Training: only those K entries per row change, plus every bias of those layers in full (the mask of
  ``pruning.py`` frees every parameter whose name has ``bias`` outside the norms: on Swin also the relative
  position bias tables) and the head; LayerNorms, position embedding and class token stay frozen.
  Deliberate re-expression: the reference masks the gradients of the full weights under Adam with weight
  decay 0; here each selected entry is a zero-initialised delta (and each bias a zero-initialised bias delta)
  added to the frozen weight, which takes exactly the same steps under Adam(W) without weight decay and merges
  back into a plain backbone. Set ``trainer.weight_decay=0`` as every reference script does: with decay the
  delta, not the weight, would shrink.

Defaults: ViT-B/16 VTAB-1k, K = 1 (the scripts' ``--times_para 1`` on 18 of 19 tasks; the per-task K are in the
recipe ``configs/experiment/gps/gps.yaml``). Count without head: K x rows + biases, rows = biases = 768 + 12 x
(2304 + 768 + 3072 + 768) = 83,712, so (K + 1) x 83,712 = 167,424 for K = 1.

Backbones. The rule is structural, so it reads every backbone the same way: every Linear and Conv weight outside
the classifier (EVA-02's q / k / v projections and SwiGLU's two input Linears are rows of their own, as the rows
of a fused layer; SigLIP's attention-pool Linears too), every bias of those layers, and every LayerScale vector
(the reference's mask frees every name with ``gamma``: ConvNeXt's layer scale in its ``models/convnext.py``, and
by the same rule DINOv2's ``ls*.gamma`` and DINOv3's ``gamma_1`` / ``gamma_2``). The reference covers ViT, Swin
and ConvNeXt (``models/``); ConvNeXt's depth-wise 7x7 kernels are read as ``(C, 49)``. Registers, class tokens
and position embeddings stay frozen, as the reference's ``cls_token`` / ``pos_embed``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms as T

from peftbench.errors import ConfigError
from peftbench.methods.base import MethodConfig, PeftMethod, TrainingData, method_owned_parameters
from peftbench.methods.layers.blocks import (
    backbone_blocks,
    check_fused_qkv_is_called,
    layerscale_parameters,
    replace_module,
)
from peftbench.methods.layers.checks import is_positive_number
from peftbench.methods.layers.select import backbone_modules
from peftbench.methods.layers.selection import SelectionModule, batches, top_k_indices


@dataclasses.dataclass
class GPSConfig(MethodConfig):
    """GPS options; defaults are the official ViT-B/16 VTAB-1k setting.

    Attributes:
        top_k: K, input connections kept per output neuron (``--times_para``).
        temperature: temperature of the supervised contrastive loss of the selection.
        train_biases: also train in full what the reference's mask frees besides the selected entries: every bias
            of the selected layers (Swin: the relative position bias tables) and every LayerScale vector.
    """

    top_k: int = 1
    temperature: float = 0.07
    train_biases: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"gps top_k must be an integer >= 1, got {self.top_k!r}; e.g. method.top_k=1")
        if not is_positive_number(self.temperature):
            raise ConfigError(f"gps temperature must be a number > 0, got {self.temperature!r}; the paper uses 0.07")
        if not isinstance(self.train_biases, bool):
            raise ConfigError(f"gps train_biases must be true or false, got {self.train_biases!r}")


class SparseDelta(SelectionModule):
    """A frozen Linear / Conv2d whose weight gets ``delta`` at K selected columns of every row (``index``)."""

    selection_buffers = ("index",)

    def __init__(self, base: nn.Linear | nn.Conv2d, k: int, train_bias: bool) -> None:
        super().__init__()
        w = base.weight
        rows, cols = w.shape[0], w[0].numel()
        self.base_layer = base
        self.register_buffer("index", torch.arange(k, device=w.device).repeat(rows, 1))  # placeholder until prepare
        self.delta = nn.Parameter(torch.zeros(rows, k, dtype=w.dtype, device=w.device))
        has_bias = train_bias and base.bias is not None
        self.delta_bias = nn.Parameter(torch.zeros(rows, dtype=w.dtype, device=w.device)) if has_bias else None
        self.cols = cols

    def weight(self) -> torch.Tensor:
        w = self.base_layer.weight
        return w.flatten(1).scatter_add(1, self.index, self.delta.to(w.dtype)).view_as(w)

    def bias(self) -> torch.Tensor | None:
        b = self.base_layer.bias
        return b if self.delta_bias is None else b + self.delta_bias.to(b.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.base_layer, nn.Linear):
            return F.linear(x, self.weight(), self.bias())
        return self.base_layer._conv_forward(x, self.weight(), self.bias())

    def merged_layer(self) -> nn.Module:
        """The base layer with the deltas folded in (in place; drop the wrapper after)."""
        with torch.no_grad():
            weight, bias = self.weight(), self.bias()
            self.base_layer.weight.copy_(weight)
            if bias is not None:
                self.base_layer.bias.copy_(bias)
        return self.base_layer


def gps_modules(model: nn.Module) -> list[tuple[str, SparseDelta]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SparseDelta)]


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, ``SupConLoss`` with ``contrast_mode='all'``).

    Args:
        features: ``(B, V, D)``, V views of each of B images (normalised here).
        labels: ``(B,)``.
        temperature: the softmax temperature (the base temperature equals it, as in the reference).

    Returns:
        The mean over all B * V anchors of minus the mean log-probability of their positives (same label,
        other than themselves).
    """
    b, v, _ = features.shape
    z = F.normalize(features.float(), dim=-1).transpose(0, 1).reshape(v * b, -1)  # view-major, as torch.unbind
    logits = z @ z.T / temperature
    logits = logits - logits.max(1, keepdim=True).values.detach()
    y = labels.repeat(v)
    not_self = ~torch.eye(v * b, dtype=torch.bool, device=z.device)
    positive = (y[:, None] == y[None, :]) & not_self
    log_prob = logits - torch.log((logits.exp() * not_self).sum(1, keepdim=True))
    return -((log_prob * positive).sum(1) / positive.sum(1)).mean()


class TwoViews:
    """Two independent draws of ``transform`` of one image (the reference's ``TwoCropTransform``)."""

    def __init__(self, transform: T.Compose) -> None:
        self.transform = transform

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(image), self.transform(image)


def contrastive_views(norm: dict[str, Any]) -> TwoViews:
    """The reference's ``transforms_contrastaug_train`` at the run's size, interpolation and normalisation."""
    steps: list[Any] = [
        T.RandomResizedCrop(norm["image_size"], scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                            interpolation=T.InterpolationMode(norm["interpolation"])),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
    ]
    if norm.get("mode") != "none":
        steps.append(T.Normalize(norm["mean"], norm["std"]))
    return TwoViews(T.Compose(steps))


def connection_top_k(grad: torch.Tensor, k: int) -> torch.Tensor:
    """The K input connections of every output neuron with the largest ``|grad|``: ``(out, K)``, ascending."""
    return top_k_indices(grad.detach().flatten(1).abs().float(), k)


def accumulate_gradients(model: nn.Module, views: Iterator[tuple[Any, Any]], temperature: float,
                         device: torch.device, dtype: torch.dtype | None) -> int:
    """Sum the SupCon gradients of every batch of ``views`` into the frozen weights' ``.grad``; return the batches."""
    n = 0
    for (v1, v2), y in views:
        x = torch.cat([v1, v2]).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            f = model.forward_head(model.forward_features(x), pre_logits=True)
        f1, f2 = f.float().split(len(y))
        supcon_loss(torch.stack([f1, f2], 1), torch.as_tensor(y, device=device), temperature).backward()
        n += 1
    return n


class GPS(PeftMethod[GPSConfig]):
    """Gradient-based parameter selection: K input connections per neuron, chosen by gradient, plus biases."""

    name = "gps"
    family = "partial"
    subfamily = "specification"
    config_cls = GPSConfig
    mergeable = True
    backbones = ("vit", "eva", "swin", "convnext")
    notes = {
        "layerscale": "LayerScale vectors train in full (the reference's mask frees every 'gamma')",
        "map_head": "the attention-pool Linears are selected like every Linear outside the classifier",
        "qkv_separate": "q_proj, k_proj, v_proj: K connections per row of each, as the rows of a fused qkv",
        "swiglu": "fc1_g, fc1_x, fc2: K connections per row of each",
        "bias_free_linear": "a bias-free Linear trains only its selected entries",
        "bias_free_patch_embed": "the bias-free patch embedding trains only its selected entries",
        "convnext": "every conv (stem, downsampling, depth-wise 7x7 read as (C, 49)) and MLP Linear; LayerScale in "
        "full (the reference's models/convnext.py)",
    }
    looks_at_data = True
    criterion = ("|gradient| of each weight entry under the supervised contrastive loss (T 0.07) of two augmented "
                 "views, summed over the training split; top-K input connections per output neuron")

    def apply(self, model: nn.Module) -> nn.Module:
        k = self.config.top_k
        for name, block in backbone_blocks(model):
            if isinstance(getattr(block, "attn", None), nn.Module):
                check_fused_qkv_is_called(name, block.attn)  # a wrapper of qkv must be called
        names = {id(m): n for n, m in model.named_modules()}
        for module in backbone_modules(model):
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                if k > module.weight[0].numel():
                    raise ConfigError(f"gps top_k={k} exceeds the {module.weight[0].numel()} inputs of "
                                      f"{names[id(module)]}; choose method.top_k <= that")
                replace_module(model, names[id(module)], SparseDelta(module, k, self.config.train_biases))
        return model

    def trainable_parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        yield from method_owned_parameters(model)
        if self.config.train_biases:  # the reference's name rule: 'bias' (Swin's tables) and 'gamma' (LayerScale)
            from timm.models.swin_transformer import WindowAttention

            for m in backbone_modules(model):
                if isinstance(m, WindowAttention):
                    yield m.relative_position_bias_table
            yield from layerscale_parameters(model)

    def prepare(self, model: nn.Module, data: TrainingData) -> dict[str, Any]:
        wrapped = gps_modules(model)
        for _, m in wrapped:
            m.base_layer.weight.requires_grad_(True)
            m.base_layer.weight.grad = None
        was_training = model.training
        model.to(data.device).train()  # as the reference: drop path active, if the backbone has it
        views = data.with_transform(contrastive_views(data.normalization))
        generator = torch.Generator().manual_seed(data.seed) if data.seed is not None else None
        try:
            n_batches = accumulate_gradients(
                model, batches(views, data.batch_size, data.num_workers, shuffle=True,
                               drop_last=len(views) > data.batch_size, generator=generator),
                self.config.temperature, data.device, data.dtype)
            layers, digest = {}, hashlib.sha256()
            k = self.config.top_k
            for name, m in wrapped:
                grad = m.base_layer.weight.grad
                if grad is None:
                    raise RuntimeError(f"gps: no gradient reached {name}; the selection needs the whole backbone "
                                       "in the loss's graph")
                m.index.copy_(connection_top_k(grad, k))
                m.selected = True
                digest.update(m.index.cpu().numpy().tobytes())
                layers[name] = {"rows": m.index.shape[0], "inputs": m.cols, "selected": m.index.numel()}
        finally:
            for _, m in wrapped:
                m.base_layer.weight.requires_grad_(False)
            for p in model.parameters():
                p.grad = None
            model.train(was_training)
        return {"top_k": k, "batches": n_batches, "selected_weights": sum(v["selected"] for v in layers.values()),
                "index_sha256": digest.hexdigest(), "layers": layers}

    def merge(self, model: nn.Module) -> nn.Module:
        for name, m in gps_modules(model):
            replace_module(model, name, m.merged_layer())
        return model
