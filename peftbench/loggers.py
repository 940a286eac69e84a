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
    group: str | None = None
    mode: str = "auto"  # auto = online if credentials are configured, else offline; online | offline | disabled

    def __post_init__(self) -> None:
        if self.name not in LOGGERS:
            raise ConfigError(f"unknown logger {self.name!r}; valid choices: {', '.join(LOGGERS)} (logger=<name>)")
        if self.mode not in ("auto", "online", "offline", "disabled"):
            raise ConfigError(f"logger.mode={self.mode!r}; valid: auto, online, offline, disabled")


class RunLogger:
    """Writes ``metrics.csv`` and ``metrics.jsonl`` in the run folder; mirrors to wandb if enabled."""

    def __init__(self, run_dir: Path, cfg: LoggerConfig, run_name: str, config: dict[str, Any]) -> None:
        self.csv_path = run_dir / "metrics.csv"
        self.jsonl_path = run_dir / "metrics.jsonl"
        self.csv_path.unlink(missing_ok=True)
        self.jsonl_path.unlink(missing_ok=True)
        self._fields: list[str] = []
        self._wandb = None
        if cfg.name == "wandb":
            self._wandb = _start_wandb(cfg, run_dir, run_name, config)

    def log(self, record: dict[str, Any]) -> None:
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        new = [k for k in record if k not in self._fields]
        if new:
            self._fields += new
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, self._fields).writerow(record)
        if self._wandb is not None:
            self._wandb.log(record)

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


def _start_wandb(cfg: LoggerConfig, run_dir: Path, run_name: str, config: dict[str, Any]):
    import wandb

    mode = cfg.mode
    if mode == "auto":
        has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
        mode = "online" if has_key else "offline"
    # The config passed to wandb is the resolved run config, which holds no credentials.
    return wandb.init(
        project=cfg.project, entity=cfg.entity, group=cfg.group, name=run_name, dir=str(run_dir),
        config=config, mode=mode, reinit=True,
    )
