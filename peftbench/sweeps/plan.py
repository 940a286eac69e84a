"""Expand a multirun into its jobs without running any, exactly as Hydra's basic sweeper would.

Used to check sweep presets (``sweep=vtab1k`` is 19 jobs per method) and by ``peftbench-tune`` to
list the (method, dataset, ...) combinations it selects a configuration for.
"""

from __future__ import annotations

from collections.abc import Sequence

from peftbench.errors import ConfigError

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def expand(overrides: Sequence[str], config_name: str = "train") -> list[list[str]]:
    """The jobs of ``peftbench-train -m <overrides>``: one override list per job, in launch order.

    Args:
        overrides: command-line overrides, sweeps included (``method=full,linear``, ``sweep=vtab1k``,
            ``method=glob(*)``).
        config_name: the primary config in ``configs/``.

    Returns:
        One list of ``key=value`` overrides per job (the preset's ``hydra.sweeper.params`` combined
        with the command line, command-line keys winning, as Hydra does).

    Raises:
        ConfigError: the composed sweeper is not Hydra's grid sweeper (e.g. a sweeper that picks its trials
            while it runs, so they cannot be listed in advance).
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from peftbench.paths import config_dir

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))
    cfg = loader.load_configuration(config_name, list(overrides), run_mode=RunMode.MULTIRUN, from_shell=False)
    sweeper = cfg.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        raise ConfigError(
            f"hydra.sweeper is {sweeper.get('_target_')}; only the grid (basic) sweeper's jobs can be listed in advance"
        )
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + list(overrides))
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    return jobs
