"""``peftbench-train``: one run, or a sweep with ``-m`` (Hydra multirun).

Examples:
    peftbench-train                                        # embedded offline default
    peftbench-train backbone=vit_b16_in21k method=linear dataset=vtab/cifar data.root=/data
    peftbench-train -m method=full,linear dataset=vtab/cifar,vtab/dtd seed=0,1,2
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from peftbench.cli import config_dir, console, reporting_user_errors


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _main(cfg: DictConfig) -> float:
    from peftbench.run import run

    result = reporting_user_errors(run, cfg)
    metrics = result.get("metrics", {})
    print(
        f"[peftbench] {result['status']}: {result['method']} on {result['suite']}/{result['task']} "
        f"({result['backbone']}, {result['protocol']}, seed {result['seed']}) "
        f"top-1 {metrics.get('accuracy')} on {metrics.get('accuracy_split')}; "
        f"result: {result['run_dir']}/result.json"
    )
    # The job's objective for Hydra sweepers that optimise (Optuna): top-1 on the evaluation split
    # (val200 under protocol=tune); a diverged run counts as 0.
    return float(metrics.get("accuracy") or 0.0)


def main() -> None:
    """Console-script entry point."""
    console(_main)


if __name__ == "__main__":
    main()
