"""The evolutionary search of NOAH and GLoRA (the SPOS / AutoFormer scheme their repositories share).

1. Fill a population with random architectures of the space (the supernet's sampling) that satisfy the
   parameter budget; each new one is evaluated once (top-1 on the validation split with supernet weights).
2. Every generation: keep the ``select`` best seen so far, make up to ``mutation`` mutants and ``crossover``
   children of them (each try that repeats a seen architecture or breaks the budget is dropped, at most ten
   tries per wanted child, as the references), top the population up with random ones, evaluate the new ones.
3. After ``generations`` generations the best architecture seen wins (ties: the earlier one). The children of
   the last generation are ranked too (the references evaluate them but rank before making them).

The method supplies sampling, mutation, crossover and the parameter count the budget is checked against
(:class:`~peftbench.methods.unified.search.space.SearchedMethod`); ``evaluate`` is a callback. The whole state
(every evaluated architecture with its accuracy and counts, the current population, the RNG) is written as
JSON after the initial population and after each generation, so an interrupted search resumes from the last
finished generation and ends where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peftbench.atomic import write_json_atomic
from peftbench.errors import ConfigError, PeftbenchError

Arch = dict[str, list[Any]]  # slot -> one choice per position (a subnet of a searched method)

STATE_VERSION = 1


@dataclasses.dataclass
class EvolutionConfig:
    """Search settings; defaults are NOAH's ``evolution.py`` (GLoRA's are the same but for the limit).

    Attributes:
        generations: evolution epochs (``--max-epochs``).
        population: evaluated architectures per generation (``--population-num``).
        select: parents kept per generation (``--select-num``).
        mutation: mutants wanted per generation (``--mutation-num``).
        crossover: crossover children wanted per generation (``--crossover-num``).
        m_prob: mutation probability (per module type in NOAH, per support and layer in GLoRA).
        s_prob: NOAH's probability of re-drawing a module type's depth when it mutates.
        param_limit: budget in parameters, in the method's own count (NOAH 0.64M, GLoRA 1.00M); or null.
        param_limit_ratio: budget as a fraction of the largest architecture's count (when param_limit is null).
        min_param_limit: lower bound in parameters (``--min-param-limits``, 0).
    """

    generations: int = 20
    population: int = 50
    select: int = 10
    mutation: int = 25
    crossover: int = 25
    m_prob: float = 0.2
    s_prob: float = 0.4
    param_limit: float | None = 640_000
    param_limit_ratio: float | None = None
    min_param_limit: float = 0

    def __post_init__(self) -> None:
        for key in ("generations", "population", "select"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"search.evolution.{key} must be an integer >= 1, got {v!r}")
        for key in ("mutation", "crossover"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"search.evolution.{key} must be an integer >= 0, got {v!r}")
        for key in ("m_prob", "s_prob"):
            if not 0.0 <= float(getattr(self, key)) <= 1.0:
                raise ConfigError(f"search.evolution.{key} must be in [0, 1], got {getattr(self, key)!r}")
        if (self.param_limit is None) == (self.param_limit_ratio is None):
            raise ConfigError(
                "set exactly one of search.evolution.param_limit (parameters, e.g. 640000) and "
                f"search.evolution.param_limit_ratio (fraction of the largest architecture); got {self.param_limit!r} "
                f"and {self.param_limit_ratio!r}"
            )
        if self.param_limit_ratio is not None and not 0.0 < self.param_limit_ratio <= 1.0:
            raise ConfigError(f"search.evolution.param_limit_ratio must be in (0, 1], got {self.param_limit_ratio!r}")

    def limit(self, largest_budget: int) -> float:
        """The budget in parameters."""
        return float(self.param_limit) if self.param_limit is not None else self.param_limit_ratio * largest_budget


def arch_key(arch: Arch) -> str:
    """A canonical string of an architecture (the memo key)."""
    return json.dumps({k: list(arch[k]) for k in sorted(arch)}, separators=(",", ":"))


class Evolution:
    """One search; ``run`` returns the final state (see the module docstring).

    Args:
        cfg: the settings.
        sample, mutate, crossover: the method's operators, taking a ``random.Random``.
        budget: the count checked against the limit; ``params``: the trainable count (recorded).
        evaluate: validation top-1 (percent) of an architecture.
        limit: budget in parameters.
        state_path: where the JSON state lives (read first when it exists).
        seed: seeds the search's own RNG.
        log: progress lines.
    """

    def __init__(
        self,
        cfg: EvolutionConfig,
        sample: Callable[[random.Random], Arch],
        mutate: Callable[[Arch, random.Random], Arch],
        crossover: Callable[[Arch, Arch, random.Random], Arch],
        budget: Callable[[Arch], int],
        params: Callable[[Arch], int],
        evaluate: Callable[[Arch], float],
        limit: float,
        state_path: Path,
        seed: int | None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg, self.limit, self.path, self.log = cfg, limit, Path(state_path), log
        self._sample, self._mutate, self._crossover = sample, mutate, crossover
        self._budget, self._params, self._evaluate = budget, params, evaluate
        self.rng = random.Random(seed)
        self.state: dict[str, Any] = {
            "version": STATE_VERSION, "generation": 0, "limit": limit, "seen": {}, "population": [],
            "top": [], "history": [], "evaluations": 0, "rejected_budget": 0, "finished": False,
        }
        if self.path.is_file():
            self._load()

    # -- state ----------------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise PeftbenchError(f"search state {self.path} is unreadable ({exc}); delete it to restart") from None
        if state.get("version") != STATE_VERSION or state.get("limit") != self.limit:
            raise PeftbenchError(f"search state {self.path} was written with other settings; delete it to restart")
        rng = state.pop("rng")
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))
        self.state = state
        self.log(f"[search] resumed at generation {state['generation']} ({state['evaluations']} evaluated)")

    def _save(self) -> None:
        write_json_atomic(self.path, {**self.state, "rng": list(self.rng.getstate())})

    # -- operators ------------------------------------------------------------------------------
    def _admit(self, arch: Arch) -> bool:
        """Evaluate ``arch`` if it is new and within budget; True if it joined the seen set."""
        key = arch_key(arch)
        if key in self.state["seen"]:
            return False
        budget = self._budget(arch)
        if not self.cfg.min_param_limit <= budget <= self.limit:
            self.state["rejected_budget"] += 1
            return False
        acc = float(self._evaluate(arch))
        self.state["seen"][key] = {
            "arch": arch, "accuracy": acc, "budget_params": budget, "params": self._params(arch),
            "generation": self.state["generation"], "order": self.state["evaluations"],
        }
        self.state["evaluations"] += 1
        return True

    def _fill_random(self, population: list[str]) -> None:
        tries = 0
        while len(population) < self.cfg.population:
            tries += 1
            if tries > 200 * self.cfg.population:
                raise ConfigError(
                    f"only {len(population)} of {self.cfg.population} new architectures within the parameter budget "
                    f"{self.limit:.0f} were found in {tries - 1} random draws (the budget is too tight or the space "
                    "is exhausted); raise search.evolution.param_limit (or param_limit_ratio) or lower "
                    "search.evolution.population"
                )
            arch = self._sample(self.rng)
            if self._admit(arch):
                population.append(arch_key(arch))

    def _children(self, make: Callable[[], Arch], wanted: int) -> list[str]:
        out: list[str] = []
        for _ in range(10 * wanted):
            if len(out) >= wanted:
                break
            arch = make()
            if self._admit(arch):
                out.append(arch_key(arch))
        return out

    def _rank(self, keys: list[str]) -> list[str]:
        seen = self.state["seen"]
        return sorted(set(keys), key=lambda k: (-seen[k]["accuracy"], seen[k]["order"]))

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Search until ``generations`` generations are done; return the state (``best`` included)."""
        st, cfg = self.state, self.cfg
        if not st["population"] and not st["finished"]:
            self._fill_random(st["population"])
            self._save()
        while st["generation"] < cfg.generations:
            st["top"] = self._rank(st["top"] + st["population"])[: cfg.select]
            parents = [st["seen"][k]["arch"] for k in st["top"]]
            mutants = self._children(
                lambda ps=parents: self._mutate(self.rng.choice(ps), self.rng), cfg.mutation
            )
            children = self._children(
                lambda ps=parents: self._crossover(self.rng.choice(ps), self.rng.choice(ps), self.rng),
                cfg.crossover,
            )
            st["population"] = mutants + children
            self._fill_random(st["population"])
            st["generation"] += 1
            best = st["seen"][self._rank(st["top"] + st["population"])[0]]
            st["history"].append({"generation": st["generation"], "best_accuracy": best["accuracy"],
                                  "evaluations": st["evaluations"]})
            self.log(f"[search] generation {st['generation']}/{cfg.generations}: best val top-1 "
                     f"{best['accuracy']:.2f} ({best['budget_params']} params in the budget count), "
                     f"{st['evaluations']} architectures evaluated")
            self._save()
        st["top"] = self._rank(st["top"] + st["population"])[: cfg.select]
        st["best"] = st["seen"][st["top"][0]]
        st["finished"] = True
        self._save()
        return st
