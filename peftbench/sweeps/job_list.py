"""A Hydra sweeper that launches a given list of jobs (``hydra/sweeper=jobs hydra.sweeper.jobs=<file.json>``).

Hydra's basic sweeper launches the cartesian product of the command line's lists; peftbench-tune needs jobs whose
values differ together (a trial's learning rate *and* rank), so it writes them, one override list per job, to a
JSON file and runs ``peftbench-train -m`` with this sweeper. The jobs go through the configured launcher like
any multirun (``hydra/launcher=local|slurm``); overrides given on the command line apply to every job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from peftbench.errors import ConfigError, user_error_exit


class JobListSweeper(Sweeper):
    """Launch the jobs listed in ``jobs`` (a JSON list of override lists) as one batch.

    Args:
        jobs: path of the JSON file.
    """

    def __init__(self, jobs: str | None = None) -> None:
        super().__init__()
        self.jobs = jobs
        self.config: Any = None
        self.launcher: Any = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def _read_jobs(self) -> list[list[str]]:
        try:
            jobs = json.loads(Path(str(self.jobs)).read_text())
        except (OSError, ValueError, TypeError) as exc:
            raise user_error_exit(ConfigError(
                f"hydra.sweeper.jobs={self.jobs}: not a readable JSON list of jobs ({exc})")) from None
        if not isinstance(jobs, list) or not all(isinstance(j, list) and all(isinstance(o, str) for o in j)
                                                 for j in jobs):
            raise user_error_exit(ConfigError(
                f"hydra.sweeper.jobs={self.jobs}: expected a JSON list of override lists, e.g. [[\"seed=0\"]]"))
        return jobs

    def sweep(self, arguments: list[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        swept = [o.input_line for o in parser.parse_overrides(list(arguments)) if o.is_sweep_override()]
        if swept:
            raise user_error_exit(ConfigError(
                f"hydra/sweeper=jobs launches the listed jobs; a list on the command line ({', '.join(swept)}) "
                "would be ambiguous: put the values into the jobs file"))
        batch = [[*arguments, *job] for job in self._read_jobs()]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if not batch:
            return []
        self.validate_batch_is_legal(batch)
        results = self.launcher.launch(batch, initial_job_idx=0)
        for r in results:
            _ = r.return_value  # raises the first failed job's error, after every job of the batch ran
        return [results]
