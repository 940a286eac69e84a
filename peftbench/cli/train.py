"""``peftbench-train``: one run, or a sweep with ``-m`` (Hydra multirun).

Examples:
    peftbench-train                                        # embedded offline default
    peftbench-train backbone=vit_b16_in21k method=linear dataset=vtab/cifar data.root=/data
    peftbench-train -m method=full,linear dataset=vtab/cifar,vtab/dtd seed=0,1,2
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from peftbench.cli import console, hydra_config_path
from peftbench.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name="train")
def _main(cfg: DictConfig) -> float:
    from peftbench.apps.train import run

    record = exit_on_user_error(run, cfg)
    if record is None:  # dry_run=true printed the resolved config
        return 0.0
    ident, train = record.identity, record.metrics.train
    if record.status == "pruned":  # a peftbench-tune trial run stopped by its study's pruner
        print(f"[peftbench] pruned: {ident.method} on {ident.suite}/{ident.task} ({ident.backbone}, seed {ident.seed}): "
              f"{record.message}; result: {record.provenance.run_dir}/result.json")
        return 0.0
    print(
        f"[peftbench] {record.status}: {ident.method} on {ident.suite}/{ident.task} "
        f"({ident.backbone}, {ident.protocol}, seed {ident.seed}) "
        f"top-1 {train.accuracy if train else None} on {train.accuracy_split if train else None}; "
        f"result: {record.provenance.run_dir}/result.json"
    )
    # The job's return value in a multirun: top-1 on the evaluation split (val200 under protocol=tune); a
    # diverged run counts as 0.
    return float(record.accuracy or 0.0)


def main() -> None:
    """Console-script entry point."""
    console(_main)


if __name__ == "__main__":
    main()
