"""``peftbench-params``: build backbone + method without data, weights or network; print counts as JSON.

Example:
    peftbench-params backbone=vit_b16_in21k method=lora
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from peftbench.cli import console, hydra_config_path
from peftbench.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="params")
def _main(cfg: DictConfig) -> None:
    from peftbench.apps.params import param_report

    print(json.dumps(exit_on_user_error(param_report, cfg)))


def main() -> None:
    """Console-script entry point."""
    console(_main)


if __name__ == "__main__":
    main()
