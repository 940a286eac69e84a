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
