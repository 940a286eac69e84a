"""``peftbench-params``: build backbone + method without data, weights or network; print counts as JSON.

Example:
    peftbench-params backbone=vit_b16_in21k method=lora
"""

from __future__ import annotations

import dataclasses
import json

import hydra
from omegaconf import DictConfig

from peftbench.cli import config_dir, console, reporting_user_errors


def param_report(cfg: DictConfig) -> dict:
    """Counts for the composed backbone x method (random init; the head sized for the dataset)."""
    from peftbench.config import to_plain
    from peftbench.methods import build_method
    from peftbench.methods.base import split_method_block, with_dataset_context
    from peftbench.methods.prepare import prepare_model
    from peftbench.models import build_backbone, make_backbone_config

    plain = to_plain(cfg)
    backbone = dataclasses.replace(make_backbone_config(plain["backbone"]), weights="none")
    name, label, method_opts = split_method_block(plain["method"])
    ds = plain["dataset"]
    method = build_method(name, with_dataset_context(name, method_opts, ds["name"], ds.get("suite")))
    num_classes = int(plain["dataset"]["num_classes"])
    model = build_backbone(backbone, num_classes)
    counts = prepare_model(model, method)
    return {
        "backbone": backbone.name,
        "method": label,
        "registered_method": method.name,
        "family": method.family,
        "subfamily": method.subfamily,
        "num_classes": num_classes,
        **counts.to_dict(),
    }


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="params")
def _main(cfg: DictConfig) -> None:
    print(json.dumps(reporting_user_errors(param_report, cfg)))


def main() -> None:
    """Console-script entry point."""
    console(_main)


if __name__ == "__main__":
    main()
