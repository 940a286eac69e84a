"""``peftbench-bench``: step cost, memory and inference throughput of backbone x method on random inputs.

Examples:
    peftbench-bench backbone=vit_b16_in21k method=lora
    peftbench-bench backbone=vit_b16_in21k all_methods=true   # every method -> results/benchmarks/<device>.csv
    peftbench-bench -m method=linear,full backbone=vit_test csv=results/benchmarks/cpu.csv
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from peftbench.cli import config_dir, console, reporting_user_errors


def _command() -> str:
    """The command line that produced this output (console script and overrides)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        overrides = []
    return " ".join(["peftbench-bench", *overrides])


def _bench(cfg: DictConfig) -> dict:
    from peftbench.bench import BenchConfig, run_bench, run_sweep
    from peftbench.config import build_config, to_plain
    from peftbench.methods.base import split_method_block
    from peftbench.models import make_backbone_config

    plain = to_plain(cfg)
    bench = build_config(BenchConfig, plain["bench"], "bench")
    backbone = make_backbone_config(plain["backbone"])
    if bench.num_threads > 0:
        import torch

        torch.set_num_threads(bench.num_threads)
    if plain.get("all_methods"):
        return run_sweep(backbone, bench, Path(plain.get("out_dir") or "results/benchmarks"), _command(),
                         plain.get("methods") or None)
    name, label, method = split_method_block(plain["method"])
    result = run_bench(backbone, name, method, bench, label=label)
    if plain.get("csv"):
        import pandas as pd

        path = Path(plain["csv"])
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([result]).to_csv(path, mode="a", header=not path.exists(), index=False)
    return result


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="bench")
def _main(cfg: DictConfig) -> None:
    print(json.dumps(reporting_user_errors(_bench, cfg)))


def main() -> None:
    """Console-script entry point."""
    console(_main)


if __name__ == "__main__":
    main()
