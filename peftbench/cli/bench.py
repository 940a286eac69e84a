"""``peftbench-bench``: step cost, memory and inference throughput of backbone x method on random inputs.

Examples:
    peftbench-bench backbone=vit_b16_in21k method=lora
    peftbench-bench backbone=vit_b16_in21k all_methods=true   # every method -> results/benchmarks/<device>.csv
    peftbench-bench -m method=linear,full backbone=vit_test csv=results/benchmarks/cpu.csv
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from peftbench.cli import console, hydra_config_path
from peftbench.errors import exit_on_user_error


def _command() -> str:
    """The command line that produced this output (console script and overrides)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        overrides = []
    return " ".join(["peftbench-bench", *overrides])


@hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="bench")
def _main(cfg: DictConfig) -> None:
    from peftbench.apps.bench import bench

    print(json.dumps(exit_on_user_error(bench, cfg, _command())))


def main() -> None:
    """Console-script entry point."""
    console(_main)


if __name__ == "__main__":
    main()
