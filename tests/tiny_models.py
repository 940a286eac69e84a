"""Tiny timm backbones for CPU tests (real timm classes, random init), one per architecture class and feature.

``ARCHS`` is the architecture list the method contract runs over: each entry names its family (what methods
declare support for) and builds a fresh model. ``vit`` and ``swin`` are the original tiny models; the others
are the ``configs/backbone/<name>_test.yaml`` backbones (the same files ``peftbench-train backbone=...`` uses),
built through the harness's own backbone builder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import timm
import torch
from omegaconf import OmegaConf
from torch import nn

from peftbench.models import build_backbone, make_backbone_config
from peftbench.paths import config_dir

VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3)
SWIN_KWARGS = dict(img_size=32, patch_size=4, window_size=4, embed_dim=24, depths=(1, 1), num_heads=(1, 2))


def tiny_vit(num_classes: int = 5, seed: int = 0) -> nn.Module:
    """A 3-block timm VisionTransformer on 32x32 inputs (16 patch tokens + CLS)."""
    torch.manual_seed(seed)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, **VIT_KWARGS)


def tiny_swin(num_classes: int = 5, seed: int = 0) -> nn.Module:
    """A 2-stage timm SwinTransformer on 32x32 inputs."""
    torch.manual_seed(seed)
    return timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, num_classes=num_classes, **SWIN_KWARGS
    )


def from_config(name: str, num_classes: int = 5, seed: int = 0) -> nn.Module:
    """The random-init backbone of ``configs/backbone/<name>.yaml`` with a ``num_classes`` head.

    The classifier is redrawn N(0, 1/D), so that logits are O(1): timm starts Eva's head at 1/1000 of its
    init and SigLIP's at zero, which would put every effect of a method below the tests' absolute tolerances.
    """
    raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "backbone" / f"{name}.yaml"))
    torch.manual_seed(seed)
    model = build_backbone(make_backbone_config(raw), num_classes)  # type: ignore[arg-type]
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.normal_(0.0, head.in_features**-0.5)
        head.bias.zero_()
    return model


@dataclasses.dataclass(frozen=True)
class Arch:
    """One tiny test architecture: its family and a builder ``(num_classes=5, seed=0) -> model``."""

    family: str
    build: Callable[..., nn.Module]
    features: str


ARCHS: dict[str, Arch] = {
    "vit": Arch("vit", tiny_vit, "plain ViT: class token, fused qkv (supervised IN-21k, MAE)"),
    "swin": Arch("swin", tiny_swin, "shifted windows, patch merging"),
    "dinov2": Arch("vit", partial(from_config, "dinov2_test"), "registers + LayerScale (DINOv2, DeiT-III)"),
    "clip": Arch("vit", partial(from_config, "clip_test"), "norm_pre + quick-GELU, bias-free patch embedding"),
    "siglip": Arch("vit", partial(from_config, "siglip_test"), "attention-pool (MAP) head, no class token"),
    "eva02": Arch("eva", partial(from_config, "eva02_test"), "Eva: rotary, separate q/k/v, SwiGLU, avg pool"),
    "dinov3": Arch("eva", partial(from_config, "dinov3_test"), "Eva: rotary, registers, LayerScale, fused qkv"),
    "convnext": Arch("convnext", partial(from_config, "convnext_test"), "convolutional stages"),
}


def vit_b16(num_classes: int = 100) -> nn.Module:
    """ViT-B/16 at 224 (random init), for parameter counts."""
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=num_classes)


def tiny_training_data(num_classes: int = 5, n: int = 12, size: int = 32, batch_size: int = 8):
    """A :class:`~peftbench.methods.base.TrainingData` of ``n`` random RGB images (labels ``i % num_classes``)."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import Dataset
    from torchvision import transforms as T

    from peftbench.methods.base import TrainingData

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size + 8, size + 8, 3), dtype=np.uint8)) for _ in range(n)]
    norm = {"mode": "inception", "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "image_size": size}
    plain = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(norm["mean"], norm["std"])])

    class Images(Dataset):
        def __init__(self, transform) -> None:
            self.transform = transform

        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int):
            return self.transform(images[i]), i % num_classes

    return TrainingData(split="train", plain=Images(plain), with_transform=Images, num_classes=num_classes,
                        normalization=norm, device=torch.device("cpu"), dtype=None, batch_size=batch_size, seed=0)


def prepare_on_tiny_data(model: nn.Module, method) -> dict | None:
    """Run a data-selecting method's ``prepare`` on :func:`tiny_training_data`, reproducibly; else do nothing."""
    if not method.looks_at_data:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return method.prepare(model, tiny_training_data(num_classes=model.get_classifier().out_features))
