"""Per-run metric logs: a CSV and a JSON-lines file always; Weights & Biases when ``logger=wandb``."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from peftbench.errors import ConfigError

LOGGERS = ("csv", "wandb")


@dataclasses.dataclass
class LoggerConfig:
    """The ``logger:`` group."""

    name: str = "csv"
    project: str = "peftbench"
    entity: str | None = None
    group: str | None = None  # None: the sweep folder's name in a multirun (runs of one sweep together)
    mode: str = "offline"  # offline (sync later with `wandb sync`) | online | auto (online if credentials exist) | disabled

    def __post_init__(self) -> None:
        if self.name not in LOGGERS:
            raise ConfigError(f"unknown logger {self.name!r}; valid choices: {', '.join(LOGGERS)} (logger=<name>)")
        if self.mode not in ("auto", "online", "offline", "disabled"):
            raise ConfigError(f"logger.mode={self.mode!r}; valid: auto, online, offline, disabled")


class RunLogger:
    """Writes ``metrics.csv`` and ``metrics.jsonl`` in the run folder; mirrors to wandb if enabled."""

    def __init__(
        self, run_dir: Path, cfg: LoggerConfig, run_name: str, config: dict[str, Any], keep_epochs: int = 0
    ) -> None:
        self.csv_path = run_dir / "metrics.csv"
        self.jsonl_path = run_dir / "metrics.jsonl"
        # A resumed run keeps the records of the epochs its checkpoint holds; anything later is redone.
        kept = _records_up_to(self.jsonl_path, keep_epochs) if keep_epochs else []
        self.csv_path.unlink(missing_ok=True)
        self.jsonl_path.unlink(missing_ok=True)
        self._fields: list[str] = []
        for record in kept:
            self._append(record)
        self._wandb = None
        if cfg.name == "wandb":
            self._wandb = _start_wandb(cfg, run_dir, run_name, config)

    def log(self, record: dict[str, Any]) -> None:
        self._append(record)
        if self._wandb is not None:
            self._wandb.log(record)

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        new = [k for k in record if k not in self._fields]
        if new:
            self._fields += new
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, self._fields).writerow(record)

    def _rewrite_csv(self) -> None:
        # A new column appeared: rewrite the CSV from the JSON-lines log so every row has every column.
        rows = [json.loads(line) for line in self.jsonl_path.read_text().splitlines()]
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, self._fields)
            writer.writeheader()
            writer.writerows(rows)

    def finish(self, summary: dict[str, Any]) -> None:
        if self._wandb is not None:
            self._wandb.summary.update(summary)
            self._wandb.finish()


def _records_up_to(path: Path, epoch: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("epoch", 0) <= epoch and not r.get("final")]


def sweep_group() -> str | None:
    """The Hydra multirun's folder name (one wandb group per sweep); ``None`` outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).name


def _start_wandb(cfg: LoggerConfig, run_dir: Path, run_name: str, config: dict[str, Any]):
    import wandb

    mode = cfg.mode
    if mode == "auto":
        has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
        mode = "online" if has_key else "offline"
    # The config passed to wandb is the resolved run config, which holds no credentials.
    return wandb.init(
        project=cfg.project, entity=cfg.entity, group=cfg.group or sweep_group(), name=run_name, dir=str(run_dir),
        config=config, mode=mode, reinit=True,
    )
