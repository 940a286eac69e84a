"""One JSON per run: where it lives, how it is written, how a config is hashed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
PACKAGE_PREFIX = "package:"  # backbone.weights relative to the installed peftbench package
WEIGHTS_NOT_FILES = ("hub", "none")
SCHEMA_VERSION = 1

# Keys that change where or how a run is stored or shown, not what it computes.
NON_SEMANTIC_KEYS = (
    "paths",
    "data.root",
    "data.num_workers",
    "logger",
    "on_existing",
    "resume",  # epoch checkpoints: how a run is kept, not what it computes
    "trainer.device",
    "trainer.progress",
    "trainer.num_threads",
    # input / prefix caches and compilation: how a run is computed (equal results, see engine/prefix_cache.py)
    "trainer.input_cache",
    "trainer.prefix_cache",
    "trainer.compile",
    "trainer.compile_backend",
)


def _drop(cfg: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if head not in cfg:
        return
    if rest:
        if isinstance(cfg[head], dict):
            _drop(cfg[head], rest)
    else:
        del cfg[head]


def weights_path(weights: str) -> Path:
    """The file a local ``backbone.weights`` names; ``package:<path>`` is relative to the peftbench package."""
    if weights.startswith(PACKAGE_PREFIX):
        return Path(__file__).resolve().parent.parent / weights.removeprefix(PACKAGE_PREFIX)
    return Path(weights).expanduser()


_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_sha256(weights: Any) -> str | None:
    """SHA-256 of the local weights file ``backbone.weights`` names (None for hub / none / a missing file).

    Computed once per file version in a process (keyed by path, size and modification time).
    """
    if not isinstance(weights, str) or weights in WEIGHTS_NOT_FILES:
        return None
    path = weights_path(weights)
    if not path.is_file():
        return None  # loading the backbone reports the missing file
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def config_hash(cfg: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the resolved config, without :data:`NON_SEMANTIC_KEYS`.

    A local ``backbone.weights`` file enters by its contents (:func:`weights_sha256`), not only its path, so
    two runs with the same hash trained the same model on the same data with the same settings, and a
    checkpoint replaced at the same path is a new run, not a finished one.
    """
    plain = json.loads(json.dumps(cfg, default=str))
    backbone = plain.get("backbone")
    if isinstance(backbone, dict):
        digest = weights_sha256(backbone.get("weights"))
        if digest is not None:
            backbone["weights_sha256"] = digest
    for key in NON_SEMANTIC_KEYS:
        _drop(plain, key)
    blob = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def run_dir(results_dir: str | Path, cfg: Mapping[str, Any], chash: str) -> Path:
    """``<results>/runs/<suite>/<task>/<backbone>/<method>/<protocol>-seed<seed>-<hash8>``.

    ``<method>`` is the method block's ``label`` when it has one (presets), else its ``name``.
    """
    ds, bb, m = cfg["dataset"], cfg["backbone"], cfg["method"]
    leaf = f"{cfg['protocol']}-seed{cfg['seed']}-{chash[:8]}"
    return Path(results_dir) / "runs" / ds["suite"] / ds["name"] / bb["name"] / (m.get("label") or m["name"]) / leaf


def write_json_atomic(path: str | Path, obj: Mapping[str, Any]) -> None:
    """Write JSON to a temp file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: str | Path) -> dict[str, Any]:
    """Read one run JSON (raises ``json.JSONDecodeError`` / ``OSError`` on broken files)."""
    with open(path) as f:
        return json.load(f)
