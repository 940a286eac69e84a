"""The identity of a run: which keys of its resolved config say what it computes, the hashes derived from
them, and the folder a run lives in.

No torch here. :func:`identity` hashes the resolved config without the keys that only say where or how a run
is stored (:data:`NON_SEMANTIC_KEYS`); the config hash (run folders, skip-if-finished), the leaderboard's
setting hash (the same without the seed) and peftbench-tune's key (without the tuned keys and the protocol) all
derive from it. The record of a run (its ``result.json``) is in :mod:`peftbench.records`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from peftbench.paths import WEIGHTS_NOT_FILES, weights_path

RESULT_FILE = "result.json"
RUN_DIR_RE = re.compile(r"^(tune|final)-seed.+-[0-9a-f]{8}$")  # the leaf folder of run_dir()

# Keys that change where or how a run is stored, shown or computed, not what it computes.
NON_SEMANTIC_KEYS = (
    "paths",
    "data.root",
    "data.num_workers",
    "logger",
    "on_existing",
    "resume",  # epoch checkpoints: how a run is kept, not what it computes
    "trial",  # peftbench-tune's link of a run to its study (where it reports), not what it computes
    "trainer.device",
    "trainer.progress",
    "trainer.num_threads",
    # input / prefix caches and compilation: how a run is computed (equal results, see engine/prefix_cache.py)
    "trainer.input_cache",
    "trainer.prefix_cache",
    "trainer.compile",
    "trainer.compile_backend",
    # which files a run writes besides its record (per-image predictions), not what it computes
    "trainer.save_predictions",
    "trainer.predictions_topk",
)

# Keys added to the config after schema 2 whose default means "as before": left out of the identity while they
# hold that default, so runs made before the key existed keep their config hash (and their run folder).
ADDED_DEFAULTS: dict[str, Any] = {
    "trainer.drop_last": False,
    "trainer.lr_schedule": "per_step",
    "trainer.cooldown_epochs": 0,
    "trainer.lr_base_batch": 0,
    "trainer.lr_schedule_lag": 0,
    "trainer.warmup_prefix": False,
    "trainer.cosine_epochs": 0,
    "trainer.eval_epochs": [],
    "data.augment": "none",
    "data.randaugment": "rand-m9-mstd0.5-inc1",
    "data.fgvc_final_train": "train_val",
    "method_init": "paper",
}


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


def _get(cfg: Mapping[str, Any], dotted: str, missing: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return missing
        node = node[part]
    return node


def _drop(cfg: dict[str, Any], dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if head not in cfg:
        return
    if rest:
        if isinstance(cfg[head], dict):
            _drop(cfg[head], rest)
    else:
        del cfg[head]


_FROM_FILE = object()
_MISSING = object()


def identity(cfg: Mapping[str, Any], without: Iterable[str] = (), weights_digest: Any = _FROM_FILE,
             precision: str | None = None) -> str:
    """SHA-256 of the canonical JSON of a resolved config, without :data:`NON_SEMANTIC_KEYS` and ``without``.

    A local ``backbone.weights`` file enters by its contents, not only its path, so two runs with the same
    identity trained the same model on the same data with the same settings, and a checkpoint replaced at
    the same path is a new run.

    Args:
        cfg: the resolved plain config (a result's ``config`` block).
        without: further dotted keys to leave out (``seed``, ``trainer.lr``, ...).
        weights_digest: the weights file's SHA-256 when already known (a result records it as
            ``backbone_weights_sha256``); by default it is read from the file.
        precision: the resolved precision (``trainer.precision: auto`` is fp32 on a CPU and bf16 on CUDA, so
            the same config computes different numbers on different devices); None for schema-1 results.

    Returns:
        64 hex digits.
    """
    plain = json.loads(json.dumps(cfg, default=str))
    backbone = plain.get("backbone")
    if isinstance(backbone, dict):
        digest = weights_sha256(backbone.get("weights")) if weights_digest is _FROM_FILE else weights_digest
        if digest is not None:
            backbone["weights_sha256"] = digest
    if precision is not None:
        plain["resolved"] = {"precision": precision}
    neutral = [k for k, v in ADDED_DEFAULTS.items() if _get(plain, k, missing=_MISSING) == v]
    for key in (*NON_SEMANTIC_KEYS, *neutral, *without):
        _drop(plain, key)
    blob = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def resolved_precision(precision: str, device_type: str) -> str:
    """The precision a run computes in: ``bf16`` / ``fp16`` when asked for, ``auto`` is bf16 on CUDA; else ``fp32``.

    Args:
        precision: ``trainer.precision`` (``auto`` | ``fp32`` | ``bf16`` | ``fp16``).
        device_type: the run's device type, ``cpu`` or ``cuda``.
    """
    if precision in ("bf16", "fp16"):
        return precision
    return "bf16" if precision == "auto" and device_type == "cuda" else "fp32"


def config_hash(cfg: Mapping[str, Any], precision: str | None = None) -> str:
    """The run's identity: equal hashes train the same thing (the run folder's suffix, skip-if-finished)."""
    return identity(cfg, precision=precision)


def setting_hash(cfg: Mapping[str, Any], weights_digest: Any = _FROM_FILE, precision: str | None = None) -> str:
    """The identity without the seed, 8 hex digits: runs that differ only in their seed share it."""
    return identity(cfg, ("seed",), weights_digest, precision)[:8]


def tune_key(cfg: Mapping[str, Any], tuned: Iterable[str]) -> str:
    """The identity without the tuned keys and the protocol: equal for every tune point of one setting."""
    return identity(cfg, (*tuned, "protocol"))


def method_setting(method_block: Mapping[str, Any]) -> str:
    """8 hex digits naming a method's options (its ``name`` and ``label`` left out)."""
    options = {k: v for k, v in method_block.items() if k not in ("name", "label")}
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_dir(results_dir: str | Path, cfg: Mapping[str, Any], chash: str) -> Path:
    """``<results>/runs/<suite>/<task>/<backbone>/<method>/<protocol>-seed<seed>-<hash8>``.

    ``<method>`` is the method block's ``label`` when it has one (presets), else its ``name``.
    """
    ds, bb, m = cfg["dataset"], cfg["backbone"], cfg["method"]
    leaf = f"{cfg['protocol']}-seed{cfg['seed']}-{chash[:8]}"
    return Path(results_dir) / "runs" / ds["suite"] / ds["name"] / bb["name"] / (m.get("label") or m["name"]) / leaf


def launched_result(cfg: Mapping[str, Any]) -> Path:
    """The ``result.json`` of ``cfg``'s run when a launcher ran it on another machine, whose device the caller
    does not know: of the folders for both resolved precisions (``trainer.precision: auto`` is bf16 on a GPU
    node, fp32 on a CPU one), the one written last (the fp32 one when neither exists).

    Args:
        cfg: the resolved plain config of the run.
    """
    results_dir = cfg.get("paths", {}).get("results_dir", "results")
    asked = (cfg.get("trainer") or {}).get("precision", "auto")
    precisions = ("fp32", "bf16") if asked == "auto" else (resolved_precision(asked, "cpu"),)
    paths = [run_dir(results_dir, cfg, config_hash(cfg, p)) / RESULT_FILE for p in precisions]
    found = [p for p in paths if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else paths[0]
