"""Export what a run trained in formats other tools load (``peftbench-export``).

* ``peft``: Hugging Face PEFT's adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``) for the
  LoRA family: ``lora`` / ``lora_qv`` (:meth:`~peftbench.methods.partial.reparam.lora.LoRA.peft_adapter`: the q and
  v pairs of ``lora_qv`` become one rank-2r pair with block-placed B, the same function) and the ``hf_*`` methods
  (their own PEFT config). The task head travels as PEFT's ``modules_to_save``.
  ``peft.PeftModel.from_pretrained(<the timm backbone with its weights>, DIR)`` gives the run's model.
* ``timm``: a plain timm checkpoint (``model.safetensors``, head included, plus timm's ``config.json``) of a run
  whose method merges into the backbone (reparameterisations) or never left it (``full``, ``linear``):
  ``timm.create_model(<timm name>, pretrained=True, pretrained_cfg_overlay=dict(file=<model.safetensors>,
  num_classes=<C>), **<model args>)`` loads it (``num_classes`` in the overlay keeps timm from dropping the head).

Before anything is written, the exported model is rebuilt in memory the way the target library will build it and
its logits are compared with the run's on one seeded batch; the difference is in ``peftbench_export.json``.
The folder is written beside its destination and renamed into place when complete; an existing non-empty
folder is never written into.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.apps.trained import TrainedRun, open_run, rebuild
from peftbench.assemble import Assembled, build_plain_backbone
from peftbench.atomic import write_json_atomic
from peftbench.errors import ConfigError, DataError, MethodNotSupportedError
from peftbench.methods.base import head_name
from peftbench.methods.partial.hf_peft.bridge import ADAPTER, import_peft
from peftbench.paths import WEIGHTS_NOT_FILES, weights_path

FORMATS = ("peft", "timm")
MANIFEST = "peftbench_export.json"
TIMM_WEIGHTS = "model.safetensors"
# exported logits must equal the run's to this (fp32, one seeded batch); merging reorders sums (timm format)
TOLERANCE = 1e-4
# pretrained_cfg keys that say where the original weights came from: not true of the exported file
_SOURCE_KEYS = ("url", "hf_hub_id", "hf_hub_filename", "file", "source", "state_dict", "tag", "origin_url",
                "paper_ids", "paper_name", "notes", "license")


def export_run(run: str | Path, fmt: str, out: str | Path) -> dict[str, Any]:
    """Write a finished run's trained model to ``out`` in format ``fmt``.

    Args:
        run: the run folder or its ``result.json``.
        fmt: ``peft`` or ``timm``.
        out: a new (or empty) folder.

    Returns:
        The manifest written as ``<out>/peftbench_export.json``: the run, the format, the files, the timm model
        to load it onto, and the measured largest logit difference.

    Raises:
        ConfigError / DataError / CheckpointError / MethodNotSupportedError: bad input; nothing is written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"--out {target} exists and is not an empty folder; choose a new folder (nothing was written)")
    trained = open_run(run)
    a = rebuild(trained, device="cpu")
    x = _probe_batch(a)
    with torch.inference_mode():
        expected = a.model(x).float()
    exported, write = as_peft(a) if fmt == "peft" else as_timm(a)
    with torch.inference_mode():
        diff = (exported(x).float() - expected).abs().max().item()
    if not diff <= TOLERANCE:
        raise MethodNotSupportedError(
            f"the {fmt} export of method {a.spec.method.label!r} does not reproduce the run's logits (largest "
            f"difference {diff:.3g} > {TOLERANCE}); nothing was written")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        files = write(staging)
        manifest = _manifest(trained, a, fmt, files, diff)
        write_json_atomic(staging / MANIFEST, manifest)
        if target.exists():
            target.rmdir()  # empty (checked above)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _probe_batch(a: Assembled) -> torch.Tensor:
    """Four seeded standard-normal images of the backbone's input size (about the range of normalised data)."""
    size = a.spec.backbone.img_size
    return torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))


def as_peft(a: Assembled) -> tuple[nn.Module, Callable[[Path], list[str]]]:
    """The run as a ``peft.PeftModel`` over a plain backbone (eval mode), and the writer of its adapter folder."""
    peft = import_peft(a.method.name)
    num_classes = a.spec.dataset.num_classes
    plain = build_plain_backbone(a.spec.backbone, num_classes, weights=False)
    config, converted = a.method.peft_adapter(a.model, build_plain_backbone(a.spec.backbone, num_classes, weights=False))
    head = head_name(plain)
    config.modules_to_save = [head]
    wrapped = peft.get_peft_model(plain, config, adapter_name=ADAPTER)
    inner = wrapped.base_model.model
    own = a.model.state_dict()
    state = {}
    for key in inner.state_dict():
        source = key.replace(f"{head}.modules_to_save.{ADAPTER}.", f"{head}.").replace(
            f"{head}.original_module.", f"{head}.")
        if key in converted:
            state[key] = converted[key]
        elif source in own:
            state[key] = own[source]
        else:  # a tensor of PEFT's model the run's model does not have: the mapping is wrong
            raise RuntimeError(f"PEFT export: {key} has no counterpart in the run's model")
    inner.load_state_dict(state, strict=True)
    wrapped.eval()

    def write(folder: Path) -> list[str]:
        wrapped.save_pretrained(str(folder))
        return sorted(p.name for p in folder.iterdir())

    return wrapped, write


def as_timm(a: Assembled) -> tuple[nn.Module, Callable[[Path], list[str]]]:
    """The run merged into a plain timm model and reloaded the way timm loads a file (eval mode), and the writer
    of its checkpoint folder."""
    import timm
    from safetensors.torch import save_file

    model = copy.deepcopy(a.model)
    if a.method.mergeable:
        model = a.method.merge(model)
    num_classes = a.spec.dataset.num_classes
    plain = build_plain_backbone(a.spec.backbone, num_classes, weights=False)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    if type(model) is not type(plain) or ours != theirs:
        extra = sorted(set(ours) - set(theirs))[:5]
        raise MethodNotSupportedError(
            f"method {a.spec.method.label!r} does not fold into a plain {a.spec.backbone.timm_name} (its trained model "
            f"keeps {', '.join(extra) or 'other modules'}): the timm format needs a mergeable method (lora, ssf, "
            "repadapter, fact_*, kadaptation, glora, hf_*) or one that trains the backbone itself (full, linear); "
            "--format peft exports the LoRA family as an adapter")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:  # reload through timm's own file loader, as a user will
        save_file(state, str(Path(tmp) / TIMM_WEIGHTS))
        reloaded = timm.create_model(
            a.spec.backbone.timm_name, pretrained=True, **_timm_kwargs(a),
            pretrained_cfg_overlay=dict(file=str(Path(tmp) / TIMM_WEIGHTS), num_classes=num_classes))
    reloaded.eval()

    def write(folder: Path) -> list[str]:
        save_file(state, str(folder / TIMM_WEIGHTS))
        write_json_atomic(folder / "config.json", _timm_config(a, reloaded))
        return [TIMM_WEIGHTS, "config.json"]

    return reloaded, write


def _timm_kwargs(a: Assembled) -> dict[str, Any]:
    """``timm.create_model`` keyword arguments that build the run's backbone with its head."""
    kwargs = dict(a.spec.backbone.model_kwargs)
    kwargs.setdefault("img_size", a.spec.backbone.img_size)
    return {**kwargs, "num_classes": a.spec.dataset.num_classes}


def _normalization(a: Assembled) -> dict[str, Any]:
    """The preprocessing the run's data had (``data.normalize`` / ``interpolation``, resolved)."""
    from peftbench.data.transforms import normalization

    return normalization(a.spec.data, tuple(a.data_config["mean"]), tuple(a.data_config["std"]))


def _timm_config(a: Assembled, model: nn.Module) -> dict[str, Any]:
    """timm's hub ``config.json`` for the export: architecture, model args, the run's preprocessing."""
    cfg = {k: v for k, v in dict(getattr(model, "pretrained_cfg", {}) or {}).items() if k not in _SOURCE_KEYS}
    norm = _normalization(a)
    cfg.update(num_classes=a.spec.dataset.num_classes, mean=norm["mean"], std=norm["std"],
               interpolation=norm["interpolation"], input_size=[3, norm["image_size"], norm["image_size"]])
    args = {k: v for k, v in _timm_kwargs(a).items() if k != "num_classes"}
    return {"architecture": a.spec.backbone.timm_name, "num_classes": a.spec.dataset.num_classes,
            "num_features": getattr(model, "num_features", None), "model_args": args, "pretrained_cfg": cfg}


def _manifest(trained: TrainedRun, a: Assembled, fmt: str, files: list[str], diff: float) -> dict[str, Any]:
    spec = a.spec
    weights = spec.backbone.weights
    if weights not in WEIGHTS_NOT_FILES:
        weights = str(weights_path(weights).resolve())  # package:... resolved to the file timm can open
    create = {"model_name": spec.backbone.timm_name, **_timm_kwargs(a)}
    if fmt == "peft":
        base = ("pretrained=True (timm's hub weights)" if weights == "hub" else
                f"pretrained=True, pretrained_cfg_overlay=dict(file={weights!r})" if weights != "none" else
                "pretrained=False (the run trained from random init: the base weights are not in the adapter)")
        load = (f"base = timm.create_model(**{json.dumps(create)}, {base}); "
                "model = peft.PeftModel.from_pretrained(base, <this folder>)")
    else:
        load = (f"model = timm.create_model(**{json.dumps(create)}, pretrained=True, "
                f"pretrained_cfg_overlay=dict(file=<this folder>/{TIMM_WEIGHTS}, num_classes={spec.dataset.num_classes})); "
                "or, with a timm that reads local folders: timm.create_model('local-dir:<this folder>', pretrained=True)")
    return {
        "format": fmt,
        "files": files,
        "run": str(trained.folder),
        "method": spec.method.label,
        "registered_method": a.method.name,
        "backbone": spec.backbone.name,
        "timm_create_model": create,
        "backbone_weights": weights,
        "backbone_weights_sha256": trained.record.identity.backbone_weights_sha256,
        "normalization": _normalization(a),
        "load": load,
        "max_abs_logit_diff": diff,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
