"""Backbones: timm models with weights from the hub, a local file, or none."""

from __future__ import annotations

from peftbench.models.backbone import (
    BackboneConfig,
    backbone_data_config,
    build_backbone,
    make_backbone_config,
)

__all__ = ["BackboneConfig", "backbone_data_config", "build_backbone", "make_backbone_config"]
