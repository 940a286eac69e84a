"""The package's imports point only down: read from the source (AST, imports inside functions included, nothing
executed), no module imports itself back through others, and no top-level part imports a part above it.

Layers, lowest first (the house style's map): errors / config / paths / atomic / identity / records (no torch) -> models,
data, methods, engine, loggers, prepare, sweeps, tuning -> assemble -> apps and the leaderboard (results) -> cli.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "peftbench"

LAYERS: dict[str, int] = {
    "errors": 0, "config": 0, "paths": 0, "atomic": 0, "identity": 0, "records": 0, "per_task": 0,
    "models": 1, "data": 1, "methods": 1, "engine": 1, "loggers": 1, "prepare": 1, "sweeps": 1, "tuning": 1,
    "assemble": 2,
    "apps": 3, "results": 3,
    "cli": 4,
}
NO_TORCH = ("peftbench.errors", "peftbench.config", "peftbench.paths", "peftbench.atomic", "peftbench.identity",
            "peftbench.records", "peftbench.per_task")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The peftbench modules ``path`` imports anywhere in its body (``from x import y`` counts ``x.y`` when that
    is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_top_level_part_has_a_layer():
    parts = {_part(m) for m in _modules()} - {""}
    assert parts == set(LAYERS), f"parts without a layer: {parts - set(LAYERS)}; layers naming no part: {set(LAYERS) - parts}"


def test_no_import_cycle_between_modules():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_top_level_parts():
    parts: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        if _part(module):
            parts.setdefault(_part(module), set()).update(_part(t) for t in targets if _part(t) and _part(t) != _part(module))
    cycle = _cycle(parts)
    assert cycle is None, "cycle between parts: " + " -> ".join(cycle or [])


def test_imports_point_only_down():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items() if _part(module)
        for target in targets if _part(target) and LAYERS[_part(target)] > LAYERS[_part(module)]
    )
    assert not upward, "imports climbing a layer:\n" + "\n".join(upward)


def test_the_checker_sees_a_lazy_import_and_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    source = "def f():\n    from peftbench.records import RunRecord\n    import peftbench.paths\n"
    tmp = PACKAGE.parent / "tests" / "_imports_probe.py"
    try:
        tmp.write_text(source)
        assert _imports(tmp, "tests._imports_probe", {"peftbench.records", "peftbench.paths"}) == {
            "peftbench.records", "peftbench.paths"}
    finally:
        tmp.unlink()


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('LOADED:' + ','.join(m for m in ('torch', 'timm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    (line,) = [x for x in out.splitlines() if x.startswith("LOADED:")]
    return set(filter(None, line.removeprefix("LOADED:").split(",")))


@pytest.mark.parametrize("module", [*NO_TORCH, "peftbench.methods.unified.search.evolution", "peftbench.methods"])
def test_the_lowest_layer_and_pure_helpers_load_no_torch(module):
    assert _loaded_after(f"import {module}") == set()


def test_reading_results_loads_no_torch(tmp_path):
    import json

    run = tmp_path / "runs" / "embedded" / "digits" / "vit_test" / "linear" / "final-seed0-0123abcd"
    run.mkdir(parents=True)
    record = {"schema_version": 1, "status": "success", "message": "", "suite": "embedded", "task": "digits",
              "group": "natural", "backbone": "vit_test", "method": "linear", "family": "baseline",
              "subfamily": "linear", "protocol": "final", "seed": 0, "finished_at": "2026-12-02T00:00:00+00:00",
              "config": {"method": {"name": "linear"}, "seed": 0},
              "metrics": {"accuracy": 50.0, "trainable_params": 10, "trainable_params_without_head": 0}}
    (run / "result.json").write_text(json.dumps(record))
    statement = ("from peftbench.cli.leaderboard import main; "
                 f"assert main(['--results-dir', {str(tmp_path)!r}, '--no-plots']) == 0")
    assert _loaded_after(statement) == set()
    assert (tmp_path / "leaderboard" / "embedded.csv").is_file()  # the run was read into a table


def test_hydra_finds_the_launchers_without_importing_submitit():
    # Hydra imports every plugin module at start-up: ours must not need the optional sweeps extra
    code = ("import sys; import hydra_plugins.peftbench_launchers as p; "
            "assert p.LocalParallelLauncher and p.SlurmLauncher; "
            "print('LOADED:' + ','.join(m for m in ('submitit', 'hydra_plugins.hydra_submitit_launcher') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LOADED:\n" in out + "\n" and out.strip().endswith("LOADED:")
