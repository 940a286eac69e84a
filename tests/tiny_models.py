"""Tiny timm backbones for CPU tests (real timm classes, random init)."""

from __future__ import annotations

import timm
import torch
from torch import nn

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


def vit_b16(num_classes: int = 100) -> nn.Module:
    """ViT-B/16 at 224 (random init), for parameter counts."""
    return timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=num_classes)
